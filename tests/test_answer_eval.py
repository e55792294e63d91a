"""`python -m rag.eval --answers`: whole turns against stand-in models over HTTP, on a real store of the guide."""
from __future__ import annotations

import csv
import json
import signal
import threading
from pathlib import Path

import pytest

from rag.core.settings import Settings
from rag.evaluation import background
from rag.evaluation.results import default_results_file, read_rows, summary_of_file
from rag.evaluation.cli import main
from tests.ollama_standin import RUNNER_FAILED, UNRELATED_REPLY, OllamaStandin, _size, grounded_reply, unused_port

ON_TOPIC = [
    ("Which file formats can I ingest?", "adding-documents.md"),
    ("Which variable sets the folder of the store?", "configuration.md"),
    ("How do I install Ollama and pull a model?", "getting-started.md"),
    ("What can I do when I cannot connect to Ollama?", "troubleshooting.md"),
    ("How do I ask questions from the terminal?", "asking-questions.md"),
]
OFF_TOPIC = ("What is the capital of Peru?", "getting-started.md")
REFUSAL = "The documents do not answer the question."


def write_truth(path: Path, rows: list[tuple[str, str]], reference: list[str] | None = None) -> Path:
    """A ground-truth CSV: question, document, and a reference column when given."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["question", "document"] + (["reference"] if reference is not None else []))
        for i, (question, document) in enumerate(rows):
            writer.writerow([question, document] + ([reference[i]] if reference is not None else []))
    return path


@pytest.fixture
def models(monkeypatch, guide_store, tmp_path):
    """A stand-in with a grounded model, an unrelated one and a refusing one, over a copy-free read of the guide."""
    server = OllamaStandin(models=("grounded:latest", "unrelated:latest", "refuser:latest", "broken:latest"))
    server.model_replies.update({"grounded:latest": grounded_reply, "unrelated:latest": UNRELATED_REPLY,
                                 "refuser:latest": REFUSAL, "broken:latest": grounded_reply})
    with server:
        monkeypatch.setenv("OLLAMA_HOST", server.host)
        monkeypatch.setenv("RAG_STORE_DIR", str(guide_store))
        yield server


def run_eval(capsys, *argv) -> tuple[int, dict, str, str]:
    """Run the CLI in-process; return the exit code, the last stdout line as JSON, stdout and stderr."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    return code, json.loads(lines[-1]) if lines else {}, out, err


def test_metrics_separate_a_grounded_model_from_an_unrelated_one(models, tmp_path, capsys):
    truth = write_truth(tmp_path / "truth.csv", ON_TOPIC)
    out = tmp_path / "results.jsonl"

    code, summary, stdout, _ = run_eval(capsys, truth, "--answers", "--models", "grounded,unrelated", "--out", out)

    assert code == 0
    grounded, unrelated = summary["models"]["grounded"], summary["models"]["unrelated"]
    assert summary["questions"] == 5
    assert grounded["citation_hit"] >= 0.8 and unrelated["citation_hit"] == 0.0
    assert grounded["grounded"] == 1.0 and unrelated["grounded"] == 0.0
    # the grounded model copies a context sentence with its [n]; the unrelated one writes two sentences found nowhere
    assert (grounded["wrong_citations"], grounded["found_nowhere"]) == (0.0, 0.0)
    assert (unrelated["wrong_citations"], unrelated["found_nowhere"]) == (0.0, 1.0)
    assert grounded["answer_similarity"] - unrelated["answer_similarity"] >= 0.3
    assert unrelated["answer_similarity"] < 0.2
    assert grounded["refusal_rate"] == unrelated["refusal_rate"] == 0.0
    assert grounded["errors"] == unrelated["errors"] == 0
    # the stand-in reports 20 ms per generated token and 1 ms per prompt token; /api/ps reports the model fully in VRAM
    assert grounded["tokens_per_s"] == 50.0
    assert grounded["load_ms"] == 1.0
    assert grounded["first_token_ms_p50"] > 100
    assert grounded["size"] == grounded["size_vram"] == _size("grounded:latest", embedding=False)
    assert stdout.splitlines()[0].split()[:6] == ["model", "similarity", "cit.hit", "grounded", "wrong", "cit."]
    assert len(read_rows(out)) == 10


LABELLED = [  # the first two questions of ON_TOPIC, labelled as `rag.eval` documents it
    (ON_TOPIC[0][0], "asking-questions.md;adding-documents.md"),
    (ON_TOPIC[1][0], "configuration.md#Store settings"),
]


def test_a_cell_naming_several_documents_or_a_section_is_scored_like_its_plain_document(models, tmp_path, capsys):
    plain, labelled = write_truth(tmp_path / "plain.csv", ON_TOPIC[:2]), write_truth(tmp_path / "labelled.csv", LABELLED)

    for truth in (plain, labelled):
        run_eval(capsys, truth, "--answers", "--models", "grounded", "--out", tmp_path / f"{truth.stem}.jsonl")

    scored = {name: [(r["citation_hit"], r["similarity"]) for r in read_rows(tmp_path / f"{name}.jsonl")]
              for name in ("plain", "labelled")}
    assert [hit for hit, _ in scored["plain"]] == [True, True]
    assert scored["labelled"] == scored["plain"]


def test_with_ollama_down_a_labelled_cell_counts_as_a_retrieval_hit(guide_store, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{unused_port()}")
    monkeypatch.setenv("RAG_STORE_DIR", str(guide_store))
    truth = write_truth(tmp_path / "truth.csv", LABELLED)

    code, summary, _, _ = run_eval(capsys, truth, "--answers", "--models", "grounded", "--out", tmp_path / "r.jsonl")

    assert code == 4
    assert summary["retrieval"] == {"hit_rate": 1.0, "refusal_rate": 0.0}


def test_a_refusal_counts_as_one_whether_the_floor_or_the_model_refuses(models, tmp_path, capsys):
    truth = write_truth(tmp_path / "truth.csv", [ON_TOPIC[0], ON_TOPIC[1], OFF_TOPIC])

    code, summary, _, _ = run_eval(capsys, truth, "--answers", "--models", "refuser,grounded", "--out",
                                   tmp_path / "r.jsonl")

    assert code == 0
    assert summary["models"]["refuser"]["refusal_rate"] == 1.0
    assert summary["models"]["grounded"]["refusal_rate"] == round(1 / 3, 4)
    rows = {(r["model"], r["index"]): r for r in read_rows(tmp_path / "r.jsonl")}
    assert rows[("refuser", 0)]["refused"] == "model"
    assert rows[("grounded", 2)]["refused"] == "floor"
    assert summary["models"]["refuser"]["grounded"] is None  # a refusal states nothing to ground
    assert len(models.chat_requests()) == 4  # the off-topic question never reached either model


def test_resume_after_an_interruption_gives_the_same_totals(models, tmp_path, capsys):
    truth = write_truth(tmp_path / "truth.csv", ON_TOPIC + [OFF_TOPIC])
    argv = [truth, "--answers", "--models", "grounded,unrelated"]
    _, whole, _, _ = run_eval(capsys, *argv, "--out", tmp_path / "whole.jsonl")
    answered = []

    def interrupting(body: dict) -> str:
        answered.append(1)
        if len(answered) >= 3:  # Ctrl-C while the third answer streams, and again on the next, as a user would;
            # the terminal's signal reaches the main thread, waiting on the reply (os.kill may pick this thread,
            # and the main thread then sees it at a random point, even in a finalizer, where Python drops it)
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        return grounded_reply(body)

    models.model_replies["grounded:latest"] = interrupting
    resumed_out = tmp_path / "resumed.jsonl"
    code, _, _, err = run_eval(capsys, *argv, "--out", resumed_out)
    kept = len(read_rows(resumed_out))
    assert code == 130
    assert "run the same command again" in err
    assert 2 <= kept < 12

    models.model_replies["grounded:latest"] = grounded_reply
    before = len(models.chat_requests())
    code, resumed, _, _ = run_eval(capsys, *argv, "--out", resumed_out)

    assert code == 0
    assert resumed == whole
    asked_before = sum(r.get("refused") != "floor" for r in read_rows(resumed_out)[:kept])
    assert len(models.chat_requests()) - before == 10 - asked_before  # 5 on-topic questions x 2 models, once each


def test_a_model_failing_mid_run_is_reported_while_the_others_finish(models, tmp_path, capsys):
    models.failing_models["broken:latest"] = 2
    truth = write_truth(tmp_path / "truth.csv", ON_TOPIC)

    code, summary, stdout, _ = run_eval(capsys, truth, "--answers", "--models", "broken,grounded,missing",
                                        "--out", tmp_path / "r.jsonl")

    broken, grounded, missing = (summary["models"][m] for m in ("broken", "grounded", "missing"))
    assert code == 10
    assert broken["answered"] == 2 and broken["errors"] == 3
    assert RUNNER_FAILED in broken["error"]
    assert grounded["answered"] == 5 and grounded["errors"] == 0
    assert missing["errors"] == 5 and "ollama pull missing" in missing["error"]
    assert [line.split()[0] for line in stdout.splitlines()[1:4]] == ["broken", "grounded", "missing"]
    # after three failures in a row the model is not asked again: 2 answers + 3 failed requests at most
    assert sum(1 for b in models.chat_requests() if b["model"] == "broken") <= 5


def test_an_unknown_model_gets_one_line_and_its_row(models, tmp_path, capsys):
    truth = write_truth(tmp_path / "truth.csv", ON_TOPIC[:2])

    code, summary, _, err = run_eval(capsys, truth, "--answers", "--models", "nosuch:7b", "--out", tmp_path / "r.jsonl")

    assert code == 5
    assert err.strip().splitlines() == [
        f"error: Model 'nosuch:7b' is not installed in Ollama at {models.url}. Run `ollama pull nosuch:7b`, or choose "
        "one of: broken:latest, grounded:latest, refuser:latest, unrelated:latest."
    ]
    assert summary["models"]["nosuch:7b"]["errors"] == 2


def test_a_csv_without_the_columns_is_one_line(models, tmp_path, capsys):
    truth = tmp_path / "truth.csv"
    truth.write_text("question,course\nWhat?,x\n")

    code, _, stdout, err = run_eval(capsys, truth, "--answers", "--models", "grounded")

    assert code == 1
    assert stdout == ""
    assert err == f"error: {truth} has no column 'document'; its columns are ['question', 'course'].\n"


def test_an_empty_reference_column_is_one_line(models, tmp_path, capsys):
    truth = write_truth(tmp_path / "truth.csv", ON_TOPIC[:2], reference=["", "  "])

    code, _, _, err = run_eval(capsys, truth, "--answers", "--models", "grounded", "--reference-column", "reference")

    assert code == 1
    assert err.startswith(f"error: The column 'reference' of {truth} is empty in every row evaluated;")
    assert len(err.splitlines()) == 1


def test_the_reference_column_is_what_answers_are_compared_with(models, tmp_path, capsys):
    truth = write_truth(tmp_path / "truth.csv", ON_TOPIC[:3], reference=[UNRELATED_REPLY] * 3)

    _, summary, _, _ = run_eval(capsys, truth, "--answers", "--models", "grounded,unrelated",
                                "--reference-column", "reference", "--out", tmp_path / "r.jsonl")

    assert summary["models"]["unrelated"]["answer_similarity"] == 1.0
    assert summary["models"]["grounded"]["answer_similarity"] < 0.2


def test_without_out_the_rows_go_to_the_evaluations_folder_the_models_page_reads(
    models, guide_store, tmp_path, monkeypatch, capsys
):
    own_store = tmp_path / "store"
    own_store.mkdir()
    for part in guide_store.iterdir():  # the guide's chunks, read only, with this test's own evaluations folder
        (own_store / part.name).symlink_to(part)
    monkeypatch.setenv("RAG_STORE_DIR", str(own_store))
    truth = write_truth(tmp_path / "truth.csv", ON_TOPIC[:1])

    code, _, _, _ = run_eval(capsys, truth, "--answers", "--models", "grounded")

    settings = Settings()
    assert code == 0
    assert default_results_file(settings, truth) == background.evaluations_dir(settings) / "truth-answers.jsonl"
    assert len(read_rows(background.evaluations_dir(settings) / "truth-answers.jsonl")) == 1


def test_ollama_down_still_runs_retrieval_and_says_so(guide_store, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{unused_port()}")
    monkeypatch.setenv("RAG_STORE_DIR", str(guide_store))
    truth = write_truth(tmp_path / "truth.csv", ON_TOPIC + [OFF_TOPIC])

    code, summary, _, err = run_eval(capsys, truth, "--answers", "--models", "grounded", "--out", tmp_path / "r.jsonl")

    assert code == 4
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("error: Cannot reach Ollama at") and err.strip().endswith("retrieval alone follows.")
    assert summary["retrieval"] == {"hit_rate": 1.0, "refusal_rate": round(1 / 6, 4)}
    assert summary["models"]["grounded"]["errors"] == 6


def test_the_judge_labels_are_reported_as_shares(models, tmp_path, capsys):
    labels = iter(["RELEVANT\nIt answers.", "Verdict: PARTLY_RELEVANT, loosely.", "NON_RELEVANT", "I cannot say."])
    models.model_replies["refuser:latest"] = lambda body: next(labels)
    truth = write_truth(tmp_path / "truth.csv", ON_TOPIC[:4])

    code, summary, _, _ = run_eval(capsys, truth, "--answers", "--models", "grounded", "--judge", "refuser",
                                   "--out", tmp_path / "r.jsonl")

    assert code == 0
    assert summary["models"]["grounded"]["judge"] == {"RELEVANT": 0.25, "PARTLY_RELEVANT": 0.25, "NON_RELEVANT": 0.25}
    judged = [b for b in models.chat_requests() if b["model"] == "refuser"]
    assert len(judged) == 4 and judged[0]["options"]["temperature"] == 0.0


def test_progress_file_and_sample_pick_the_same_rows_every_time(models, tmp_path, capsys):
    truth = write_truth(tmp_path / "truth.csv", ON_TOPIC + [OFF_TOPIC])
    progress = tmp_path / "progress.json"
    argv = [truth, "--answers", "--models", "grounded", "--sample", "3", "--progress", progress]

    run_eval(capsys, *argv, "--out", tmp_path / "a.jsonl")
    run_eval(capsys, *argv, "--out", tmp_path / "b.jsonl")

    state = json.loads(progress.read_text())
    assert (state["state"], state["done"], state["total"]) == ("finished", 3, 3)
    picked = [[r["index"] for r in read_rows(tmp_path / name)] for name in ("a.jsonl", "b.jsonl")]
    assert picked[0] == picked[1] and len(set(picked[0])) == 3
    assert summary_of_file(tmp_path / "a.jsonl")["questions"] == 3


def test_an_answer_citing_a_4400_digit_number_is_scored_and_the_number_cites_nothing(models, tmp_path, capsys):
    huge = "[" + "9" * 4400 + "]"
    models.model_replies["grounded:latest"] = lambda body: f"{grounded_reply(body)} {huge}"
    truth = write_truth(tmp_path / "truth.csv", ON_TOPIC)
    out = tmp_path / "results.jsonl"

    code, summary, _, _ = run_eval(capsys, truth, "--answers", "--models", "grounded", "--out", out)

    assert code == 0
    grounded = summary["models"]["grounded"]
    assert (grounded["errors"], grounded["grounded"]) == (0, 1.0) and grounded["citation_hit"] >= 0.8
    assert [row["cited"] for row in read_rows(out) if len(row["cited"]) != 1] == []
