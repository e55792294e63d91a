"""`python -m rag.ask` end to end: a real store, the stand-in Ollama over HTTP, the CLI as a user runs it."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ingest.loaders import RecordFields
from ingest.pipeline import IngestOptions, ingest
from rag.chat.ask import main
from rag.core.settings import Settings
from tests.ollama_standin import OllamaStandin, unused_port

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "How do I add my own documents?"
REPLY = "Run the ingest command on your folder [1]. Then ask again [2]."
PIECES = ["Run", " the", " ingest", " command", " on", " your", " folder", " [1].", " Then", " ask", " again", " [2]."]
CONTEXT_TEXT = "python -m ingest"  # in the guide's adding-documents page, which this question retrieves


@pytest.fixture
def sample_store(settings, guide_store, monkeypatch):
    """Settings that talk to the stand-in and read the module's guide store, exported to the environment."""
    monkeypatch.setenv("RAG_STORE_DIR", str(guide_store))
    return settings.model_copy(update={"store_dir": guide_store})


def ask_env(settings, **extra) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAG_STORE_DIR": str(settings.store_dir), "OLLAMA_HOST": settings.ollama_host}
    env.update(extra)
    return env


def run_ask(settings, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rag.ask", QUESTION, *args],
        env=ask_env(settings, **extra_env), capture_output=True, text=True, timeout=180,
    )


def source_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("  [")]


def assert_fails_in_one_line(result, exit_code: int, message: str, before: tuple[str, ...] = ()) -> None:
    assert result.returncode == exit_code
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [*before, f"error: {message}"]
    assert "\nSources:\n" in result.stdout and source_lines(result.stdout), "the sources are still printed"


def test_answer_streams_to_stdout_in_order_then_the_sources(sample_store, standin):
    standin.reply = REPLY
    standin.token_delay = 0.15
    process = subprocess.Popen(
        [sys.executable, "-m", "rag.ask", QUESTION], env=ask_env(sample_store),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    arrivals: list[tuple[float, str]] = []
    while chunk := os.read(process.stdout.fileno(), 4096):
        arrivals.append((time.monotonic(), chunk.decode()))
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 0, stderr

    stdout = "".join(text for _, text in arrivals)
    answer, sources = stdout.split("\n\nSources:\n")
    assert answer == REPLY
    seen, shown_at = "", []
    for at, text in arrivals:
        seen += text
        shown_at += [at] * (sum(1 for i in range(len(PIECES)) if seen.startswith("".join(PIECES[: i + 1]))) - len(shown_at))
    assert len(shown_at) == len(PIECES) and shown_at == sorted(shown_at)
    assert shown_at[-1] - shown_at[0] >= 0.15 * (len(PIECES) - 2), "pieces are printed as they arrive, not at the end"
    assert len({at for at in shown_at}) >= len(PIECES) // 2
    assert sources.splitlines()[0].startswith("  [1] ") and "adding-documents.md" in sources
    assert stderr == ""

    chats = standin.chat_requests()
    answer_request = next(body for body in chats if body["messages"])
    assert CONTEXT_TEXT in answer_request["messages"][-1]["content"]
    assert re.match(r'<documents key="([a-z][0-9]){6}">\n\[1\] ', answer_request["messages"][-1]["content"])
    assert all(body["options"]["num_ctx"] == 8192 and body["keep_alive"] == "30m" for body in chats)
    assert answer_request["options"] == {"num_ctx": 8192, "temperature": 0.1, "num_predict": 1024}


def test_ollama_not_running_says_how_to_start_it_and_exits_4(sample_store):
    port = unused_port()

    result = run_ask(sample_store, OLLAMA_HOST=f"127.0.0.1:{port}")

    assert_fails_in_one_line(
        result, 4,
        f"Cannot reach Ollama at http://127.0.0.1:{port}. Start it (`ollama serve` or the desktop app), "
        "or set OLLAMA_HOST to where it runs.",
    )
    assert result.stdout.startswith("\nSources:\n")


def test_unknown_model_offers_ollama_pull_and_exits_5(sample_store, standin):
    result = run_ask(sample_store, "--model", "mistral")

    assert_fails_in_one_line(
        result, 5,
        f"Model 'mistral' is not installed in Ollama at {standin.url}. Run `ollama pull mistral`, "
        "or choose one of: llama3.2:latest, qwen2.5:3b.",
    )
    assert all(not body["messages"] or body["model"] != "mistral" for body in standin.chat_requests())


def test_busy_ollama_is_retried_then_exits_6(sample_store, standin):
    standin.busy_responses = 100

    started = time.monotonic()
    result = run_ask(sample_store)

    assert time.monotonic() - started >= 3.5  # the backoff: 0.5 + 1 + 2 s
    assert_fails_in_one_line(
        result, 6,
        f"Ollama at {standin.url} is still busy after 4 tries (server busy, please try again. maximum pending "
        "requests exceeded). Wait for other requests to finish, or raise OLLAMA_NUM_PARALLEL / OLLAMA_MAX_QUEUE, "
        "then try again.",
        before=(f"Waiting for qwen2.5:3b at {standin.url} (loading a model can take a minute; giving up after "
                "600 s, RAG_READ_TIMEOUT)...",),
    )
    assert len([body for body in standin.chat_requests() if body["messages"]]) == 4


def test_error_mid_stream_keeps_the_partial_answer_and_exits_8(sample_store, standin):
    standin.reply = REPLY
    standin.fail_after_chunks = 4

    result = run_ask(sample_store)

    assert_fails_in_one_line(
        result, 8,
        "Ollama stopped in the middle of the answer (an error was encountered while running the model: "
        "unexpected EOF); the text above is incomplete. Ask again.",
    )
    assert result.stdout.startswith("Run the ingest command\n\nSources:\n")


# The same CLI in-process (the embedder stays loaded), for the cases beyond the bar.

def ask(capsys, *args: str) -> tuple[int, str, str]:
    code = main([QUESTION, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_prints_one_object_with_answer_sources_timings_and_context(sample_store, standin, capsys):
    code, out, err = ask(capsys, "--json")

    result = json.loads(out)
    assert (code, err) == (0, "")
    assert set(result) >= {"answer", "sources", "model", "timings", "error"}
    assert (result["answer"], result["model"], result["error"], result["exit_code"]) == ("The answer is 42 [1].", "qwen2.5:3b", None, 0)
    assert {"doc_id", "title", "text", "score", "metadata"} <= set(result["sources"][0])
    assert set(result["timings"]) == {"retrieve_ms", "first_token_ms", "total_ms"}
    assert result["context"]["num_ctx"] == 8192 and result["context"]["truncated"] is False
    assert result["context"]["prompt_eval_count"] > 0


def test_json_on_failure_still_carries_the_sources_and_the_error(sample_store, standin, capsys):
    standin.fail_after_chunks = 2

    code, out, err = ask(capsys, "--json")

    result = json.loads(out)
    assert code == 8 and result["exit_code"] == 8
    assert result["answer"] == "The answer" and result["sources"]
    assert result["error"].startswith("Ollama stopped in the middle of the answer")
    assert err == f"error: {result['error']}\n"


def test_embedding_only_model_exits_9(sample_store, standin, capsys):
    code, out, err = ask(capsys, "--model", "nomic-embed-text")

    assert code == 9
    assert err == (
        "error: Model 'nomic-embed-text' cannot chat (it is an embedding model). Choose a chat model with --model "
        "or RAG_MODEL, e.g. llama3.2:latest, qwen2.5:3b.\n"
    )
    assert source_lines(out)


def test_read_timeout_exits_7_naming_the_setting(sample_store, standin, capsys, monkeypatch):
    monkeypatch.setenv("RAG_READ_TIMEOUT", "0.3")
    standin.first_token_delay = 1.0

    code, out, err = ask(capsys)

    assert code == 7
    assert err == (
        f"error: Ollama at {standin.url} sent no answer text for 0.3 s (a large model may still be loading). "
        "Try again, or raise RAG_READ_TIMEOUT.\n"
    )
    assert source_lines(out)


def test_a_slow_first_token_is_announced_while_waiting(sample_store, standin, capsys):
    standin.first_token_delay = 1.5

    code, out, err = ask(capsys)

    assert code == 0 and out.startswith("The answer is 42 [1].\n")
    assert err == (
        f"Waiting for qwen2.5:3b at {standin.url} (loading a model can take a minute; giving up after 600 s, "
        "RAG_READ_TIMEOUT)...\n"
    )


def test_the_model_is_warmed_while_the_store_opens(sample_store, standin, capsys):
    code, _out, _err = ask(capsys)

    deadline = time.monotonic() + 30  # the warm-up runs in a thread of its own; on a loaded machine it may land last
    while not any(not body["messages"] for body in standin.chat_requests()) and time.monotonic() < deadline:
        time.sleep(0.05)
    warm = [body for body in standin.chat_requests() if not body["messages"]]
    assert code == 0
    assert warm == [{"model": "qwen2.5:3b", "messages": [], "tools": [], "stream": False,
                     "options": {"num_ctx": 8192}, "keep_alive": "30m"}]


def test_truncated_prompt_is_reported_as_a_warning(sample_store, capsys, monkeypatch):
    with OllamaStandin(context_length=1024) as small:  # a model trained on 1024 tokens whose /api/show does not say so
        small.show_context_length = False
        monkeypatch.setenv("OLLAMA_HOST", small.host)

        code, _out, err = ask(capsys, "--k", "10")

    assert code == 0
    assert err.startswith("warning: The model read only 512 prompt tokens of about ")
    assert "the prompt was cut to fit a context window smaller than the 8,192 tokens asked for" in err


def test_bad_where_exits_1_before_any_request(sample_store, standin, capsys):
    code, out, err = ask(capsys, "--where", "course")

    assert (code, out) == (1, "")
    assert err == "error: --where 'course' must look like FIELD=VALUE.\n"
    assert standin.requests == []


def test_missing_store_exits_3(settings, standin, capsys):
    code, _out, err = ask(capsys)

    assert code == 3
    assert err.startswith("error: ") and "python -m ingest" in err


OFF_TOPIC = "What is the boiling point of water on Mount Everest?"


def test_off_topic_question_is_refused_with_best_scores_and_no_chat_request(sample_store, standin, capsys):
    code = main([OFF_TOPIC, "--json"])
    out, err = capsys.readouterr()

    result = json.loads(out)
    assert (code, err, result["relevant"], result["error"]) == (0, "", False, None)
    assert result["answer"].startswith("Nothing in your documents looks relevant to this question: no passage is close "
                                       "to it in meaning")
    assert "It needed 0.07 (the relevance floor) above the " in result["answer"]
    assert "that everyday questions reach in your documents, lowered by 3 x the question's" in result["answer"]
    assert result["sources"]
    assert all(not r["messages"] for r in standin.chat_requests())  # at most the warm-up, which sends none


def test_anyway_asks_the_model_even_below_the_floor(sample_store, standin, capsys):
    code = main([OFF_TOPIC, "--json", "--anyway"])
    result = json.loads(capsys.readouterr().out)

    assert (code, result["relevant"], result["answer"]) == (0, True, "The answer is 42 [1].")
    assert any(r["messages"] for r in standin.chat_requests())


# --where against what the store holds: a field or value it lacks is a bad command line (exit 1), said with what it has.

RECORDS = [
    {"id": f"r{n}", "team": team, "year": year, "room": f"room {n}", "question": f"Where does the {team} team meet in {year}?",
     "text": f"In {year} the {team} team meets on Mondays in room {n} of the north building."}
    for n, (team, year) in enumerate([("alpha", 2023), ("alpha", 2024), ("beta", 2024)] + [("gamma", 2020)] * 12)
]


@pytest.fixture
def records_store(settings, embedder, tmp_path, monkeypatch):
    """A store of JSON records with their own fields: team (text), year (a number), room (15 values)."""
    records = tmp_path / "teams.json"
    records.write_text(json.dumps(RECORDS))
    ingest([records], settings, embedder, IngestOptions(RecordFields(title_field="question")))
    return settings


def ask_where(capsys, where: str, question: str = "Where does the alpha team meet?") -> tuple[int, str, str]:
    code = main(["--where", where, question])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_where_field_the_documents_lack_exits_1_naming_it_and_the_fields_they_have(records_store, capsys):
    assert ask_where(capsys, "taem=alpha") == (1, "", (
        "error: --where taem=alpha: the documents have no field 'taem'; their fields are room, team, year "
        "(and doc_id, title, source, headings).\n"
    ))


def test_a_where_field_is_named_in_a_store_of_files_without_fields_of_their_own(sample_store, capsys):
    assert ask_where(capsys, "course=mlops", QUESTION) == (1, "", (
        "error: --where course=mlops: the documents have no field 'course'; they have only the fields every document "
        "has: doc_id, title, source, headings.\n"
    ))


def test_a_where_value_no_document_has_exits_1_listing_the_values_the_field_takes(records_store, capsys):
    assert ask_where(capsys, "team=delta") == (1, "", (
        "error: --where team=delta: no document has team = 'delta'; its values are alpha, beta, gamma.\n"
    ))


def test_a_field_of_many_values_lists_those_closest_to_the_value_given(records_store, capsys):
    assert ask_where(capsys, "room=Room 1") == (1, "", (
        "error: --where room=Room 1: no document has room = 'Room 1'; it has 15 values; the closest: "
        "room 1, room 10, room 11, room 12, room 13, room 14, room 0, room 2, room 3, room 4, room 5, room 6.\n"
    ))


def test_a_where_value_matches_a_number_the_store_holds(records_store, standin, capsys):
    code, out, err = ask_where(capsys, "year=2024", "Where does the team meet?")

    assert (code, err) == (0, "")
    assert {line.split(":")[0] for line in source_lines(out)} == {"  [1] r1", "  [2] r2"}


FAQ = ROOT.parent / "shared" / "data" / "faq"
README_WHERE_EXAMPLE = re.compile(r'^python -m rag\.ask --where (\S+)=(\S+) "([^"]+)"$', re.MULTILINE)


@pytest.mark.skipif(not FAQ.exists(), reason="shared/data/faq is not beside the repository")
def test_the_readmes_filtered_example_is_answered_over_the_faq(tmp_path, embedder, standin):
    """The README's `--where` example, run as written over the FAQ it names (its course whole, and part of the others)."""
    [(field, value, question)] = README_WHERE_EXAMPLE.findall((ROOT / "README.md").read_text())
    records = json.loads((FAQ / "documents-with-ids.json").read_text())
    kept = [r for r in records if r[field] == value]
    kept += [r for course in sorted({r[field] for r in records} - {value}) for r in records if r[field] == course][::8]
    corpus = tmp_path / "faq.json"
    corpus.write_text(json.dumps(kept))
    settings = Settings(store_dir=tmp_path / "store", ollama_host=standin.host)
    ingest([corpus], settings, embedder, IngestOptions(fields=RecordFields(title_field="question")))
    standin.reply = "Yes: the certificate needs the projects, not every homework [1]."

    result = subprocess.run([sys.executable, "-m", "rag.ask", "--json", "--where", f"{field}={value}", question],
                            env=ask_env(settings), capture_output=True, text=True, timeout=180)
    answer = json.loads(result.stdout)
    assert (result.returncode, answer["relevant"], answer["answer"]) == (0, True, standin.reply), result.stderr
    assert {source["metadata"][field] for source in answer["sources"]} == {value}
