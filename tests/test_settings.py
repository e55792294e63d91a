"""Settings come from RAG_ variables, .env and OLLAMA_HOST; bad values give one line naming the variable."""
import subprocess
import sys
from pathlib import Path

import pytest

from rag.core.errors import SettingsError
from rag.core.settings import load_settings
from rag.store.changelog import log_name

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_when_nothing_is_set():
    settings = load_settings()
    assert (settings.store_dir, settings.collection, settings.top_k, settings.chroma_url) == (Path("store"), "docs", 5, None)
    assert settings.ollama_host == "http://127.0.0.1:11434"
    assert settings.embed_model == "all-MiniLM-L6-v2"


def test_environment_overrides_and_ollama_host_is_honoured(monkeypatch):
    monkeypatch.setenv("RAG_TOP_K", "7")
    monkeypatch.setenv("RAG_COLLECTION", "notes")
    monkeypatch.setenv("OLLAMA_HOST", "10.0.0.5:11434")
    settings = load_settings()
    assert (settings.top_k, settings.collection, settings.ollama_host) == (7, "notes", "10.0.0.5:11434")


def test_dotenv_file_in_the_working_folder_is_read(tmp_path):
    (tmp_path / ".env").write_text("RAG_MODEL=llama3.2\nRAG_STORE_DIR=/data/store\n")
    settings = load_settings()
    assert (settings.model, settings.store_dir) == ("llama3.2", Path("/data/store"))


def test_bad_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("RAG_TOP_K", "zero")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value).startswith("RAG_TOP_K='zero' is not valid:")


@pytest.mark.parametrize("module", ["rag.ask", "rag.eval", "ingest"])
def test_cli_reports_bad_setting_in_one_line_without_traceback(module, tmp_path):
    args = {"rag.ask": ["question"], "rag.eval": [str(tmp_path / "gt.csv")], "ingest": []}[module]
    (tmp_path / "gt.csv").write_text("question,document\nq,d\n")
    env = {"PATH": "/usr/bin:/bin", "RAG_TOP_K": "zero", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: RAG_TOP_K='zero' is not valid:")


@pytest.mark.parametrize(
    ("host", "kept"),
    [("", "http://127.0.0.1:11434"), ("gpu-box", "gpu-box"), (":11500", ":11500"), ("https://[::1]:8080/x", "https://[::1]:8080/x")],
)
def test_ollama_host_forms_that_ollama_accepts_are_kept(monkeypatch, host, kept):
    monkeypatch.setenv("OLLAMA_HOST", host)

    assert load_settings().ollama_host == kept


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("http://[::1", " (Invalid IPv6 URL)"),
        ("box:99999", " (Port out of range 0-65535)"),
        ("box:abc", " (Port could not be cast to integer value as 'abc')"),
        ("ftp://box", ""),
        ("http://", ""),
    ],
)
def test_ollama_host_that_is_not_an_address_names_the_variable(monkeypatch, host, why):
    monkeypatch.setenv("OLLAMA_HOST", host)

    with pytest.raises(SettingsError) as raised:
        load_settings()

    assert str(raised.value) == (
        f"OLLAMA_HOST={host!r} is not valid: not an address like 127.0.0.1:11434 or http://host:11434{why}. "
        "Fix it in the environment or .env."
    )


COLLECTION_RULE = (
    "a collection name has 3 to 502 characters from a-z, A-Z, 0-9, '.', '_' and '-', starts and ends with a letter "
    "or digit, has no '..' and is not an IP address"
)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("g", "1 character"),
        ("ab", "2 characters"),
        ("x" * 503, "503 characters"),  # 512 is Chroma's limit, less the 10 of the change log's `.changelog`
        ("my notes", "it holds ' '"),
        ("café", "it holds 'é'"),
        ("-notes", "it starts with '-'"),
        ("notes.", "it ends with '.'"),
        ("my..notes", "two periods in a row"),
        ("10.0.0.1", "an IP address"),
    ],
)
def test_a_collection_name_chroma_would_refuse_is_one_line_naming_the_variable(monkeypatch, name, why):
    monkeypatch.setenv("RAG_COLLECTION", name)

    with pytest.raises(SettingsError) as raised:
        load_settings()

    assert str(raised.value) == f"RAG_COLLECTION={name!r} is not valid: {why}; {COLLECTION_RULE}. Fix it in the environment or .env."


@pytest.mark.parametrize("name", ["abc", "my_notes.v2", "Team-Docs-2024", "999.1.1.1", "x" * 502])
def test_every_collection_name_the_settings_take_chroma_takes_with_its_change_log(tmp_path, monkeypatch, name):
    import chromadb

    monkeypatch.setenv("RAG_COLLECTION", name)
    settings = load_settings()
    client = chromadb.PersistentClient(path=str(tmp_path / "chroma"), settings=chromadb.Settings(anonymized_telemetry=False))

    created = [client.create_collection(n, embedding_function=None).name for n in (name, log_name(name))]

    assert created == [name, f"{name}.changelog"] and settings.collection == name


def test_a_bad_collection_name_stops_ingest_before_chroma_says_it_in_its_own_words(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "RAG_COLLECTION": "g", "RAG_STORE_DIR": str(tmp_path / "store"), "PYTHONPATH": str(ROOT)}

    done = subprocess.run([sys.executable, "-m", "ingest"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)

    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"error: RAG_COLLECTION='g' is not valid: 1 character; {COLLECTION_RULE}. Fix it in the environment or .env.\n"
