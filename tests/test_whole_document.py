"""Whole-document questions end to end: the real store and embedder, `rag.ask` in-process, the Ollama stand-in logging
every request it receives."""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ingest.pipeline import IngestOptions, ingest
from rag.chat.ask import main
from rag.chat.prompt import estimate_messages
from rag.chat.whole import WholeReader
from rag.core.settings import Settings
from rag.llm.boxes import open_backend
from rag.search.loader import open_retriever
from tests.fixtures.ingest_files import make_pdf
from tests.ollama_standin import estimate_prompt_tokens

ROOT = Path(__file__).resolve().parent.parent
TOPICS = ["harbour", "lantern", "orchard", "glacier", "meadow", "quarry", "vineyard", "canyon", "marsh", "summit",
          "bakery", "foundry"]
BLOCK = re.compile(r"^\[(\d+)\][^\n]*\n", re.MULTILINE)


def long_markdown(name: str, sections: int = 12, sentences: int = 14) -> str:
    """A document of distinct sentences under numbered headings, far longer than a 1,024-token context."""
    lines = [f"# {name.title()} handbook", ""]
    for s in range(sections):
        lines += [f"## Chapter {s + 1}: the {TOPICS[s % len(TOPICS)]}", ""]
        lines += [f"Fact {name} {s + 1}.{i + 1}: the {TOPICS[(s + i) % len(TOPICS)]} keeps record {s * 100 + i} safe." for i in range(sentences)]
        lines.append("")
    return "\n".join(lines)


def notes_reply(body: dict) -> str:
    """A stand-in model: notes name the first fact of each section shown; answers cite the first number they see."""
    system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
    if system.startswith("You take notes"):
        return "\n".join(f"- {re.search(r'Fact [^:]+', user[m.end():]).group()} [{m.group(1)}]" for m in BLOCK.finditer(user))
    first = re.search(r"\[(\d+)\]", user)
    return f"The handbook covers its chapters [{first.group(1) if first else 1}]."


def asked(standin) -> list[dict]:
    """The chat requests that asked something (a warm-up request carries no message)."""
    return [body for body in standin.chat_requests() if body.get("messages")]


def chunks_of(settings: Settings, doc_id: str) -> list[str]:
    """The texts of a stored document's chunks in reading order, read from the store's own index."""
    index = open_retriever(settings).index.get()
    found = [(m["chunk_index"], t) for t, m in zip(index.texts, index.metadatas) if m["doc_id"] == doc_id]
    return [text for _, text in sorted(found)]


def ask_json(capsys, *args: str) -> tuple[int, dict]:
    """Run `rag.ask --json` in-process; its exit code and JSON object."""
    code = main([*args, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


@pytest.fixture
def handbook(settings, embedder, tmp_path, standin):
    """A store holding a long handbook.md, a short note.md and a second long document, answered by notes_reply."""
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "handbook.md").write_text(long_markdown("alpha"))
    (folder / "rival.md").write_text(long_markdown("beta", sections=6))
    (folder / "note.md").write_text("# Short note\n\nThe kettle is in the left cupboard. The tea is beside it.\n")
    ingest([folder], settings, embedder, IngestOptions())
    standin.reply = notes_reply
    return folder


def test_a_document_larger_than_the_context_reaches_the_model_chunk_by_chunk_in_reading_order(handbook, standin, capsys, monkeypatch):
    monkeypatch.setenv("RAG_NUM_CTX", "1024")
    code, result = ask_json(capsys, "summarise handbook.md")
    chunks = chunks_of(Settings(), "handbook.md")
    requests = asked(standin)
    notes = [r for r in requests if r["messages"][0]["content"].startswith("You take notes")]
    assert (code, result["mode"], result["scope"], result["parts"]) == (0, "parts", ["handbook.md"], len(notes))
    assert len(notes) >= 4 and len(requests) == len(notes) + 1  # the notes, then one answer over them
    places = []
    for chunk in chunks:
        found = [(n, r["messages"][-1]["content"].find(chunk)) for n, r in enumerate(notes) if chunk in r["messages"][-1]["content"]]
        assert found, f"chunk never sent: {chunk[:60]!r}"
        places.append(found[0])
    assert places == sorted(places)
    for body in requests:
        room = body["options"]["num_predict"]
        assert body["options"]["num_ctx"] == 1024
        assert estimate_messages(body["messages"]) + room <= 1024
        assert estimate_prompt_tokens(body["messages"]) + room <= 1024
    assert "Fact alpha 12.1" in requests[-1]["messages"][-1]["content"]  # the answer reads the last part's notes


def test_a_document_that_fits_is_sent_whole_in_one_request(handbook, standin, capsys, monkeypatch):
    monkeypatch.setenv("RAG_NUM_CTX", "32768")
    code, result = ask_json(capsys, "--doc", "handbook.md", "What are the main points?")
    requests = asked(standin)
    assert (code, result["mode"], result["parts"], len(requests)) == (0, "whole", 1, 1)
    sent = requests[0]["messages"][-1]["content"]
    chunks = chunks_of(Settings(), "handbook.md")
    assert all(chunk.splitlines()[-1] in sent for chunk in chunks)
    positions = [sent.find(chunk.splitlines()[-1]) for chunk in chunks]
    assert positions == sorted(positions)
    numbers = [int(n) for n in BLOCK.findall(sent)]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 12  # every section numbered for citation
    cited = result["sources"][0]
    assert (cited["number"], cited["doc_id"], cited["location"]) == (1, "handbook.md", "Chapter 1: the harbour")
    assert result["answer"] == "The handbook covers its chapters [1]."


def test_a_second_question_over_the_same_document_re_reads_nothing(handbook, standin, capsys, monkeypatch):
    monkeypatch.setenv("RAG_NUM_CTX", "1024")
    first_code, first = ask_json(capsys, "--doc", "handbook.md", "--mode", "parts", "Give an outline")
    read = len(asked(standin))
    second_code, second = ask_json(capsys, "--doc", "handbook.md", "--mode", "parts", "List every fact about the bakery")
    again = asked(standin)[read:]
    assert (first_code, second_code, second["parts"]) == (0, 0, first["parts"])
    assert len(again) == 1 and again[0]["messages"][0]["content"].startswith("You answer a question about long documents")
    assert "Fact alpha 1.1 [" in again[0]["messages"][-1]["content"]
    assert not any(chunk in again[0]["messages"][-1]["content"] for chunk in chunks_of(Settings(), "handbook.md"))


def test_stop_keeps_the_notes_so_far_and_a_later_question_reads_only_the_rest(handbook, standin, settings, monkeypatch):
    monkeypatch.setenv("RAG_NUM_CTX", "1024")
    settings = Settings()
    stop = threading.Event()
    seen = []

    def stop_after_two(number: int, total: int) -> None:
        seen.append((number, total))
        if number == 2:
            stop.set()

    index = open_retriever(settings).index.get()
    llm = open_backend(settings)
    turn = WholeReader(settings, llm, settings.model, progress=stop_after_two, stop=stop).prepare("summarise", index, ["handbook.md"])
    total = turn.reading.parts
    assert seen == [(1, total), (2, total)]
    assert (turn.reading.stopped, turn.reading.covered) == (True, 2)
    assert turn.reading.summary() == f"read in {total} parts; stopped: the answer covers parts 1-2 of {total}"
    assert "Fact alpha 1.1" in turn.answer and "part 2 of" in turn.answer and "part 3 of" not in turn.answer
    assert len(asked(standin)) == 2
    rest = []
    later = WholeReader(settings, llm, settings.model, progress=lambda n, t: rest.append(n)).prepare("outline", index, ["handbook.md"])
    assert rest == list(range(3, total + 1))
    assert (later.reading.stopped, later.reading.cached, later.reading.requests) == (False, 2, total - 2)


def test_a_document_changed_during_a_reading_in_parts_is_read_as_it_was_when_it_started(handbook, standin, settings, embedder, monkeypatch):
    monkeypatch.setenv("RAG_NUM_CTX", "1024")
    settings = Settings()
    changed = threading.Event()

    def rewrite_then_note(body: dict) -> str:
        if not changed.is_set():
            (handbook / "handbook.md").write_text(long_markdown("gamma"))
            ingest([handbook], settings, embedder, IngestOptions())
            changed.set()
        return notes_reply(body)

    standin.reply = rewrite_then_note
    retriever = open_retriever(settings)
    turn = WholeReader(settings, open_backend(settings), settings.model).prepare("summarise", retriever.index.get(), ["handbook.md"], force_parts=True)
    sent = "\n".join(body["messages"][-1]["content"] for body in asked(standin))
    assert changed.is_set() and turn.reading.parts == turn.reading.requests > 1
    assert "Fact alpha 12.14" in sent and "gamma" not in sent
    assert "gamma" in " ".join(retriever.index.get(recheck=True).texts)  # the store did change meanwhile


def test_a_comparison_takes_notes_on_each_document_apart_then_merges_them(handbook, standin, capsys, monkeypatch):
    monkeypatch.setenv("RAG_NUM_CTX", "1024")
    code, result = ask_json(capsys, "compare handbook.md and rival.md")
    requests = asked(standin)
    assert (code, result["mode"], result["scope"]) == (0, "parts", ["handbook.md", "rival.md"])
    for body in requests[:-1]:
        text = body["messages"][-1]["content"]
        assert ("alpha" in text) != ("beta" in text)  # no notes request mixes the two documents
    final = requests[-1]["messages"][-1]["content"]
    assert "Compare the documents" in final and "Notes on 'Alpha handbook'" in final and "Notes on 'Beta handbook'" in final


def test_a_document_over_the_ceiling_is_refused_with_the_figure(handbook, standin, capsys, monkeypatch):
    monkeypatch.setenv("RAG_MAX_WHOLE_TOKENS", "1000")
    code = main(["summarise handbook.md"])
    error = capsys.readouterr().err
    assert code == 1 and asked(standin) == []
    assert re.fullmatch(
        r"error: handbook\.md holds about [\d,]+ tokens, over RAG_MAX_WHOLE_TOKENS \(1,000\): it is not read whole\. "
        r"Ask about something specific in it \(--mode search\), scope a smaller document, or raise RAG_MAX_WHOLE_TOKENS\.\n",
        error,
    )


def test_a_doc_not_in_the_store_is_exit_1_listing_close_matches(handbook, capsys):
    code = main(["--doc", "handbok.md", "summarise it"])
    assert code == 1
    assert capsys.readouterr().err == "error: --doc 'handbok.md': no document in the store has this id; the closest: handbook.md.\n"


def test_an_ambiguous_name_in_the_question_lists_the_candidates(settings, embedder, tmp_path, standin, capsys):
    for folder in ("2023", "2024"):
        (tmp_path / "docs" / folder).mkdir(parents=True)
        (tmp_path / "docs" / folder / "contract.md").write_text(f"# Contract {folder}\n\nThe fee is {folder} euros.\n")
    ingest([tmp_path / "docs"], settings, embedder, IngestOptions())
    code = main(["summarise contract.md"])
    assert code == 1 and asked(standin) == []
    assert capsys.readouterr().err == (
        "error: 'contract.md' names 2 documents: 2023/contract.md, 2024/contract.md. Say which one (by its id).\n"
    )


def test_a_question_about_one_thing_in_a_named_document_searches_only_that_document(handbook, standin, capsys):
    code, result = ask_json(capsys, "what does note.md say about the kettle?")
    assert (code, result["mode"], result["scope"], result["parts"]) == (0, "search", ["note.md"], 0)
    assert {source["doc_id"] for source in result["sources"]} == {"note.md"}


def test_the_terminal_shows_the_parts_on_stderr_and_how_the_answer_was_read(handbook, standin, capsys, monkeypatch):
    monkeypatch.setenv("RAG_NUM_CTX", "1024")
    code = main(["--doc", "rival.md", "--mode", "parts", "summarise"])
    out, err = capsys.readouterr()
    total = len(asked(standin)) - 1
    assert code == 0
    assert err == "".join(f"reading part {n} of {total}\n" for n in range(1, total + 1))
    assert out.startswith(f"The handbook covers its chapters [1].\n\n(read in {total} parts)\nSources:\n  [1] rival.md: Beta handbook (Chapter 1: the harbour)\n")


def test_an_empty_file_named_with_doc_says_it_is_empty(handbook, standin, capsys, tmp_path, monkeypatch):
    (tmp_path / "blank.md").write_text("\n  \n")
    monkeypatch.chdir(tmp_path)
    code = main(["--doc", "blank.md", "summarise it"])
    assert code == 1 and asked(standin) == []
    assert capsys.readouterr().err == (
        "error: --doc 'blank.md' is empty: it has no text to read (ingest skips empty files). Add text to it and ingest it.\n"
    )


def test_ctrl_c_while_reading_in_parts_prints_the_notes_so_far_and_says_which_parts_they_cover(handbook, standin, monkeypatch):
    monkeypatch.setenv("RAG_NUM_CTX", "1024")
    standin.token_delay = 0.05  # each part's notes take a few seconds to stream
    process = subprocess.Popen([sys.executable, "-m", "rag.ask", "--doc", "handbook.md", "summarise"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in process.stderr:
        seen.append(line)
        if line.startswith("reading part 3 of"):
            break
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    total = int(seen[-1].split()[-1])
    assert process.returncode == 130
    assert "Notes on 'Alpha handbook', part 1 of" in out and "part 2 of" in out and "part 3 of" not in out
    assert f"(read in {total} parts; stopped: the answer covers parts 1-2 of {total})" in out
    assert err == "interrupted: the notes so far are kept; ask again to read only the rest\n"
    notes = [b for b in asked(standin) if b["messages"][0]["content"].startswith("You take notes")]
    # part 3's request may or may not have left before Ctrl-C; no answer was asked for
    assert len(notes) in (2, 3) and not any(b["messages"][0]["content"].startswith("You answer") for b in asked(standin))


def test_a_misspelt_file_name_in_a_whole_document_question_names_the_closest(handbook, standin, capsys):
    code = main(["summarise handbok.md"])
    assert code == 1 and asked(standin) == []
    assert capsys.readouterr().err == "error: 'handbok.md' names no document in the store; the closest: handbook.md.\n"


def test_a_title_counts_as_a_name_only_when_the_question_speaks_of_a_document(handbook, standin, capsys):
    _, named = ask_json(capsys, "what does the Short note page say about the kettle?")
    _, unnamed = ask_json(capsys, "where is the kettle in the short note?")
    assert (named["scope"], unnamed["scope"]) == (["note.md"], [])


def test_whole_document_citations_point_at_pages_and_rows(settings, embedder, tmp_path, standin, capsys):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "otters.pdf").write_bytes(make_pdf(["Otters live in rivers.", "Otters eat fish and crabs."], title="Otter facts"))
    (folder / "sightings.csv").write_text("place,count\n" + "".join(f"river {n},{n}\n" for n in range(1, 4)))
    ingest([folder], settings, embedder, IngestOptions())
    standin.reply = "Otters eat fish [2] and live in rivers [1]; three rivers are listed [3]."
    code, result = ask_json(capsys, "--doc", "otters.pdf", "--doc", "sightings.csv", "summarise them")
    sent = asked(standin)[0]["messages"][-1]["content"]
    assert (code, result["mode"]) == (0, "whole")
    assert "[1] Otter facts (page 1)\nOtters live in rivers." in sent and "[2] Otter facts (page 2)\n" in sent
    assert [(s["number"], s["doc_id"], s["location"]) for s in result["sources"]] == [
        (1, "otters.pdf", "page 1"), (2, "otters.pdf", "page 2"), (3, "sightings.csv", "rows 2-4"),
    ]
