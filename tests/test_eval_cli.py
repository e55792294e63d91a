"""`python -m rag.eval`'s questions file and command line: a CSV as Excel saves it is read, and a count out of range
is refused in one line before any work (as `python -m rag.ask --k` is, tests/test_hostile_state.py)."""
from __future__ import annotations

import json

import pytest

from rag.evaluation.cli import main as eval_main
from rag.evaluation.cli import read_rows
from tests.ollama_standin import unused_port

QUESTIONS = "question,document\nCafé crème: how do I add my own documents?,adding-documents.md\n"
ROWS = [{"question": "Café crème: how do I add my own documents?", "document": "adding-documents.md"}]


@pytest.fixture
def guide(guide_store, monkeypatch):
    """The shared store of the bundled guide, read only, as RAG_STORE_DIR."""
    monkeypatch.setenv("RAG_STORE_DIR", str(guide_store))
    return guide_store


def run_eval(capsys, *argv: str) -> tuple[int, dict, str]:
    """Run rag.eval in-process: the exit code, its last stdout line as JSON, and stderr."""
    code = eval_main(list(argv))
    out, err = capsys.readouterr()
    return code, json.loads(out.splitlines()[-1]), err


def test_a_latin1_questions_file_is_read_as_cp1252_with_a_one_line_warning(guide, tmp_path, capsys):
    truth = tmp_path / "latin1.csv"
    truth.write_bytes(QUESTIONS.encode("latin-1"))

    code, result, err = run_eval(capsys, str(truth))

    assert (code, result["questions"], result["hit_rate"]) == (0, 1, 1.0)
    assert err == (f"warning: {truth}: not UTF-8 (byte 21); decoded as cp1252. If a question reads wrong, "
                   "save the file as UTF-8.\n")
    assert read_rows(truth, ["question", "document"]) == ROWS


def test_a_utf8_questions_file_with_a_byte_order_mark_is_read_without_a_word(guide, tmp_path, capsys):
    truth = tmp_path / "excel-utf8.csv"
    truth.write_bytes(b"\xef\xbb\xbf" + QUESTIONS.encode("utf-8"))

    code, result, err = run_eval(capsys, str(truth))

    assert (code, result["questions"], result["hit_rate"], err) == (0, 1, 1.0, "")
    assert read_rows(truth, ["question", "document"]) == ROWS


def test_a_csv_the_reader_cannot_parse_is_one_line_naming_the_file_and_the_line(guide, tmp_path, capsys):
    truth = tmp_path / "huge-cell.csv"
    truth.write_text("question,document\nok,a.md\n" + "x" * 200_000 + ",b.md\n")

    code = eval_main([str(truth)])
    out, err = capsys.readouterr()

    assert (code, out) == (1, "")
    assert err == f"error: {truth} is not a CSV file that can be read: field larger than field limit (131072) (at line 3).\n"


@pytest.mark.parametrize("k", ["0", "-3", "51", "five"])
@pytest.mark.parametrize("answers", [[], ["--answers"]], ids=["retrieval", "answers"])
def test_eval_refuses_k_outside_1_to_the_top_k_limit_in_one_line_before_any_work(tmp_path, monkeypatch, capsys, k, answers):
    monkeypatch.setenv("RAG_STORE_DIR", str(tmp_path / "no-store"))

    with pytest.raises(SystemExit) as exited:
        eval_main([str(tmp_path / "no-such.csv"), "--k", k, *answers])
    out, err = capsys.readouterr()

    assert (exited.value.code, out) == (1, "")
    assert err == f"error: argument --k: '{k}' is not a number of documents from 1 to 50 (see python -m rag.eval --help)\n"
    assert not (tmp_path / "no-store").exists()


@pytest.mark.parametrize("option", ["--limit", "--sample"])
@pytest.mark.parametrize("count", ["0", "-3"])
def test_eval_refuses_a_row_count_below_1_in_one_line(tmp_path, capsys, option, count):
    with pytest.raises(SystemExit) as exited:
        eval_main([str(tmp_path / "no-such.csv"), "--answers", option, count])
    out, err = capsys.readouterr()

    assert (exited.value.code, out) == (1, "")
    assert err == f"error: argument {option}: '{count}' is not a whole number of 1 or more (see python -m rag.eval --help)\n"


SAMPLED = (  # rows 0, 3 and 5 are the fixed sample of 3 (seed 0): their labels are right, the others' wrong
    "question,document\n"
    "How do I add my own documents?,adding-documents.md\n"
    "What formats can I ingest?,no-such-doc.md\n"
    "cannot connect to ollama,no-such-doc.md\n"
    "Which environment variable sets the context window?,configuration.md\n"
    "is my data private,no-such-doc.md\n"
    "How do I pull a model with ollama?,troubleshooting.md\n"
)


def test_sample_without_answers_scores_the_same_fixed_rows_as_the_answer_evaluation(guide, tmp_path, capsys, monkeypatch):
    truth = tmp_path / "truth.csv"
    truth.write_text(SAMPLED)
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{unused_port()}")  # the answer evaluation then scores retrieval alone

    code, retrieval, err = run_eval(capsys, str(truth), "--sample", "3")
    answers_code, answers, _ = run_eval(capsys, str(truth), "--sample", "3", "--answers", "--out", str(tmp_path / "a.jsonl"))
    _, whole, _ = run_eval(capsys, str(truth))

    assert (code, err, retrieval["questions"], retrieval["hit_rate"]) == (0, "", 3, 1.0)
    assert (answers_code, answers["questions"], answers["retrieval"]["hit_rate"]) == (4, 3, 1.0)
    assert (whole["questions"], whole["hit_rate"]) == (6, 0.5)


@pytest.mark.parametrize("given", [
    ["--models", "qwen2.5:3b"], ["--judge", "qwen2.5:7b"], ["--reference-column", "answer"], ["--out", "a.jsonl"],
    ["--progress", "p.json"],
])
def test_an_answer_evaluation_option_without_answers_is_refused_in_one_line_not_ignored(tmp_path, capsys, given):
    with pytest.raises(SystemExit) as exited:
        eval_main([str(tmp_path / "no-such.csv"), *given])
    out, err = capsys.readouterr()

    assert (exited.value.code, out) == (1, "")
    assert err == f"error: {given[0]} applies only with --answers (see python -m rag.eval --help)\n"


def test_by_section_with_answers_is_refused_in_one_line_not_ignored(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        eval_main([str(tmp_path / "no-such.csv"), "--answers", "--by-section"])

    assert exited.value.code == 1
    assert capsys.readouterr().err == "error: --by-section applies only without --answers (see python -m rag.eval --help)\n"


@pytest.mark.parametrize("floor", ["-0.1", "1.5", "high"])
def test_eval_refuses_a_floor_outside_0_to_1_in_one_line(tmp_path, capsys, floor):
    with pytest.raises(SystemExit) as exited:
        eval_main([str(tmp_path / "no-such.csv"), "--floor", floor])

    assert exited.value.code == 1
    assert capsys.readouterr().err == f"error: argument --floor: '{floor}' is not a number from 0 to 1 (see python -m rag.eval --help)\n"
