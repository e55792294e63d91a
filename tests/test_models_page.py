"""The Models page and the model facts, through AppTest against the stand-in Ollama and a real store."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import ollama
import pyarrow
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from rag.evaluation.cli import main as eval_main
from rag.llm.catalogue import GB, Machine, ModelFacts, fit, label
from tests.ollama_standin import UNRELATED_REPLY, OllamaStandin, _size, grounded_reply, unused_port
from tests.test_answer_eval import ON_TOPIC, write_truth
from tests.test_app import OUTSIDE, inert, plain

ROOT = Path(__file__).resolve().parent.parent
PAGE = str(ROOT / "pages" / "1_Models.py")
APP = str(ROOT / "app.py")


@pytest.fixture(autouse=True)
def fresh_caches():
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


@pytest.fixture
def server(monkeypatch, tmp_path):
    """A stand-in with a grounded and an unrelated model; the store folder under tmp_path."""
    standin = OllamaStandin(models=("grounded:latest", "unrelated:latest"))
    standin.model_replies.update({"grounded:latest": grounded_reply, "unrelated:latest": UNRELATED_REPLY})
    with standin:
        monkeypatch.setenv("OLLAMA_HOST", standin.host)
        yield standin


@pytest.fixture
def store(monkeypatch, guide_store, tmp_path) -> Path:
    """The shared guide store, read only; evaluations go to a folder of this test through a store copy's path."""
    monkeypatch.setenv("RAG_STORE_DIR", str(guide_store))
    return guide_store


def open_page() -> AppTest:
    return AppTest.from_file(PAGE, default_timeout=60).run()


def table(at: AppTest, which: str) -> list[dict]:
    """The rows of the installed-models table (it has a "fits" column) or of the results table."""
    for element in at.dataframe:
        rows = element.value.to_dict("records")
        if rows and ("fits" in rows[0]) == (which == "installed"):
            return rows
    return []


def test_installed_models_show_their_facts_and_fit(server, tmp_path, monkeypatch):
    monkeypatch.setenv("RAG_STORE_DIR", str(tmp_path / "store"))
    ollama.Client(host=server.url).chat(model="grounded", messages=[])  # load it, as a warm-up does

    at = open_page()

    assert not at.exception
    rows = table(at, "installed")
    assert [r["model"] for r in rows] == ["grounded:latest", "unrelated:latest"]  # the embedding model is left out
    grounded = rows[0]
    assert (grounded["parameters"], grounded["quantisation"], grounded["trained context"]) == ("3.2B", "Q4_K_M", 32768)
    assert grounded["size GB"] == round(_size("grounded:latest", embedding=False) / GB, 1)  # as the sidebar rounds it
    assert (grounded["loaded"], rows[1]["loaded"]) == (True, False)
    assert grounded["fits"] == "GPU" and "100% of it in GPU memory" in grounded["why"]
    assert rows[1]["fits"] in ("GPU", "CPU", "tight", "no") and "needs about" in rows[1]["why"]
    assert plain(at.caption[0].value).startswith("This machine: ")


def test_no_evaluation_yet_says_how_to_run_one(server, tmp_path, monkeypatch):
    monkeypatch.setenv("RAG_STORE_DIR", str(tmp_path / "store"))

    at = open_page()

    assert "python -m rag.eval QUESTIONS.csv --answers --models A,B" in at.info[0].value


def test_latest_results_show_as_a_table_and_a_chart(server, store, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "evaluations"
    truth = write_truth(tmp_path / "truth.csv", ON_TOPIC[:3])
    eval_main([str(truth), "--answers", "--models", "grounded,unrelated", "--out", str(folder / "truth-answers.jsonl")])
    capsys.readouterr()
    monkeypatch.setenv("RAG_STORE_DIR", str(tmp_path / "store"))
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "evaluations").symlink_to(folder)

    at = open_page()

    assert not at.exception
    results = table(at, "results")
    assert [r["model"] for r in results] == ["grounded", "unrelated"]
    assert results[0]["citation_hit"] > results[1]["citation_hit"] == 0.0
    assert results[0]["tokens_per_s"] == 50.0
    [shown] = [d for d in at.dataframe if "citation_hit" in d.value.columns]
    heads = {key: column.get("label") for key, column in json.loads(shown.proto.columns).items()}
    assert (heads["citation_hit"], heads["first_token_ms_p50"], heads["size"]) == ("Citation hit", "First token, ms", "Size, GB")
    assert results[0]["size"] is None or results[0]["size"] == round(results[0]["size"], 1)  # GB, as the sidebar
    charts = at.get("vega_lite_chart")
    assert len(charts) == 1
    assert "tokens per second" in charts[0].proto.spec and "Answer similarity" in charts[0].proto.spec
    at.radio(key="chart_metric").set_value("citation_hit").run()
    assert "Citation hit" in at.get("vega_lite_chart")[0].proto.spec


def test_ollama_down_is_said_and_the_page_still_works(tmp_path, monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{unused_port()}")
    monkeypatch.setenv("RAG_STORE_DIR", str(tmp_path / "store"))

    at = open_page()

    assert not at.exception
    assert at.error[0].value.startswith("Cannot reach Ollama at")
    assert at.subheader[-1].value == "Evaluate on your questions"


def test_pull_from_the_page_installs_the_model(server, tmp_path, monkeypatch):
    monkeypatch.setenv("RAG_STORE_DIR", str(tmp_path / "store"))
    at = open_page()

    at.text_input(key="models_pull_name").set_value("tinyllama")
    at.button[0].click().run()

    assert plain(at.success[0].value) == "Pulled tinyllama:latest."
    assert "tinyllama:latest" in [r["model"] for r in table(at.run(), "installed")]


def test_a_hostile_pull_name_and_ollama_error_text_are_shown_as_text(tmp_path, monkeypatch):
    """Issue 14: the Models page renders the typed name and Ollama's error text literally; nothing can fetch."""
    error_text = f"![e]({OUTSIDE}/e.png) <b>boom</b>"

    class HostilePulls(OllamaStandin):
        """The stand-in, failing every pull with HTTP 500 and a hostile error text (this test's own behaviour)."""

        def _pull(self, body):
            return 500, {"error": error_text}

    name = f"![p]({OUTSIDE}/p.png)"
    with HostilePulls() as standin:
        monkeypatch.setenv("OLLAMA_HOST", standin.host)
        monkeypatch.setenv("RAG_STORE_DIR", str(tmp_path / "store"))
        at = open_page()
        at.text_input(key="models_pull_name").set_value(name)
        at.button[0].click().run()

    assert not at.exception
    shown = at.error[0].value  # addresses as inline code: shown as written, never a link or an image
    assert plain(shown) == (f"Pulling '![p](`{OUTSIDE}/p.png`)' from Ollama at `{standin.url}` failed: "
                            f"![e](`{OUTSIDE}/e.png`) <b>boom</b>")
    assert inert(re.sub(r"`[^`]*`", "", shown)), shown
    assert at.get("progress") == []  # the failed pull's bar is gone with it


def test_a_hostile_model_name_is_listed_with_its_controls_visible(tmp_path, monkeypatch):
    """A model name from Ollama carrying a right-to-left override and a newline is offered for evaluation as text."""
    hostile = "evil\u202elm.txt\nx:latest"
    with OllamaStandin(models=(hostile,)) as standin:
        monkeypatch.setenv("OLLAMA_HOST", standin.host)
        monkeypatch.setenv("RAG_STORE_DIR", str(tmp_path / "store"))
        at = open_page()

    assert not at.exception
    assert at.multiselect(key="eval_models").options == ["evil\\u202elm.txt x:latest"]


HOSTILE_NAMES = ("\u202egnp.exe:latest", "esc\x1b[31mred:latest", "zero\u200bwidth\u2060joined\ufeff:latest")
HOSTILE_SHOWN = ("\\u202egnp.exe:latest", "esc\\x1b[31mred:latest", "zero\\u200bwidth\\u2060joined\\ufeff:latest")


def write_results(path: Path, models: tuple[str, ...]) -> Path:
    """A results file as `rag.eval --answers` writes it: one answered question per model."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"model": model, "index": 0, "fingerprint": "setup", "question": "q", "error": None, "answer": "a [1]",
             "similarity": 0.5, "citation_hit": True, "supported": 1, "sentences": 1, "first_token_ms": 5.0,
             "load_ms": 1.0, "eval_count": 10, "eval_duration_ns": 10**9} for model in models]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def chart_models(at: AppTest) -> list[str]:
    """The model names the chart is drawn with (its legend and tooltips), from the data sent to the browser."""
    chart = at.get("vega_lite_chart")[0].proto
    data = pyarrow.ipc.open_stream(chart.datasets[0].data.data).read_all()
    return data.column("model").to_pylist()


def test_hostile_model_names_and_paths_are_shown_escaped_in_the_tables_the_chart_and_captions(tmp_path, monkeypatch):
    """A right-to-left override, an ESC and zero-width characters in model names and the store path are shown, not obeyed."""
    store = tmp_path / "store\u202e\u200b"
    results = write_results(store / "evaluations" / "truth-answers.jsonl", HOSTILE_NAMES)
    with OllamaStandin(models=HOSTILE_NAMES) as standin:
        monkeypatch.setenv("OLLAMA_HOST", standin.host)
        monkeypatch.setenv("RAG_STORE_DIR", str(store))
        at = open_page()

    assert not at.exception
    installed_models = [row["model"] for row in table(at, "installed")]
    assert installed_models == [HOSTILE_SHOWN[1], HOSTILE_SHOWN[2], HOSTILE_SHOWN[0]]  # sorted by the names themselves
    assert [row["model"] for row in table(at, "results")] == list(HOSTILE_SHOWN)
    assert chart_models(at) == list(HOSTILE_SHOWN)
    shown_path = str(results).replace("\u202e", "\\u202e").replace("\u200b", "\\u200b")
    assert plain(at.caption[1].value) == f"1 questions · {shown_path}"


def test_a_background_evaluation_runs_apart_and_its_progress_survives_a_reload(server, store, tmp_path, monkeypatch):
    own_store = tmp_path / "store"
    own_store.mkdir()
    for part in store.iterdir():  # the guide's chunks, read-only, with this test's own evaluations folder
        (own_store / part.name).symlink_to(part)
    monkeypatch.setenv("RAG_STORE_DIR", str(own_store))
    truth = write_truth(tmp_path / "truth.csv", ON_TOPIC)
    at = open_page()

    at.text_input(key="eval_truth").set_value(str(truth))
    at.multiselect(key="eval_models").set_value(["grounded:latest"])
    at.number_input(key="eval_sample").set_value(3)
    at.button[1].click().run()

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        reloaded = open_page()  # a fresh session, as after a page reload
        bars = [p for p in reloaded.get("progress")]
        if bars and "finished" in bars[0].proto.text:
            break
        time.sleep(1)
    assert bars and bars[0].proto.text == "Evaluation finished: 3 of 3 answers"
    assert [r["model"] for r in table(reloaded, "results")] == ["grounded:latest"]


def test_the_chat_page_links_to_the_models_page_and_shows_the_chosen_models_facts(server, store):
    at = AppTest.from_file(APP, default_timeout=60).run()

    assert [(link.proto.page, link.proto.label) for link in at.get("page_link")] == [
        ("", "Chat"), ("Models", "Models"), ("Models", "Compare models")]
    caption = re.sub(r"\\(.)", r"\1", at.sidebar.caption[0].value)  # model names are shown escaped, as text
    assert caption.startswith("grounded:latest · 3.2B · Q4_K_M · ") and caption.endswith("trained context 32,768 tokens")


def test_fit_says_where_a_model_runs_and_why():
    model = ModelFacts("m:1b", "1B", "Q4_K_M", int(2 * GB))
    no_gpu = Machine(int(16 * GB), int(8 * GB))
    assert fit(model, no_gpu) == ("CPU", "needs about 2.4 GB; 8.0 GB of RAM free (no GPU visible)")
    gpu = Machine(int(16 * GB), int(8 * GB), (("RTX 4060", int(8 * GB), int(6 * GB)),))
    assert fit(model, gpu) == ("GPU", "needs about 2.4 GB; RTX 4060 has 6.0 GB free")
    assert fit(model, Machine(int(4 * GB), int(1 * GB)))[0] == "tight"
    assert fit(model, Machine(int(2 * GB), int(1 * GB))) == ("no", "needs about 2.4 GB; this machine has 2.0 GB of RAM (no GPU visible)")
    cpu_loaded = ModelFacts("m:1b", "1B", "Q4_K_M", int(2 * GB), True, 0, int(3 * GB))
    assert fit(cpu_loaded, gpu) == ("CPU", "loaded now: 3.0 GB, 0% of it in GPU memory")
    assert label(cpu_loaded) == "m:1b · 1B · Q4_K_M · 2.0 GB · loaded"


def test_the_evaluation_form_comes_back_as_it_was_started_and_a_hand_edited_file_cannot_break_it(tmp_path):
    from rag.ui.evaluation_form import restore_form, save_form

    started = {"eval_truth": "/data/truth.csv", "eval_question_column": "q", "eval_id_column": "doc",
               "eval_filter_column": "course", "eval_sample": 50, "eval_models": ["a:1b", "gone:7b"], "other": 1}
    save_form(tmp_path, started)
    state: dict = {}
    restore_form(state, tmp_path, ["a:1b", "b:3b"])
    assert state == {**{k: v for k, v in started.items() if k != "other"}, "eval_models": ["a:1b"],
                     "eval_form_restored": True}

    (tmp_path / "form.json").write_text('{"eval_truth": 7, "eval_sample": 0, "eval_models": "a:1b"}')
    state = {}
    restore_form(state, tmp_path, ["a:1b", "b:3b"])
    assert state == {"eval_truth": "", "eval_question_column": "question", "eval_id_column": "document",
                     "eval_filter_column": "", "eval_sample": 20, "eval_models": ["a:1b", "b:3b"],
                     "eval_form_restored": True}
