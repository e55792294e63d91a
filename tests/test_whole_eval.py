"""`rag.eval --answers --scope-column`: whole-document questions with a reference summary, answered by reading the
scoped document whole (a stand-in model over HTTP, the real store of the guide), scored against the summary."""
from __future__ import annotations

import csv
import json

from rag.chat.whole_prompts import WHOLE_RULES
from rag.evaluation.cli import main
from rag.evaluation.results import read_rows
from tests.ollama_standin import UNRELATED_REPLY, OllamaStandin, grounded_reply

ROWS = [
    ("Summarise this page", "configuration.md",
     "The settings come from RAG_ environment variables or a .env file: the store folder, the model, the context window."),
    ("Give an outline of the page", "troubleshooting.md",
     "What to do when Ollama cannot be reached, a model is missing, or the store cannot be opened."),
]


def test_whole_document_questions_are_read_whole_and_scored_against_the_reference_summary(guide_store, tmp_path, monkeypatch, capsys):
    truth = tmp_path / "summaries.csv"
    with truth.open("w", newline="") as handle:
        csv.writer(handle).writerows([("question", "document", "reference"), *ROWS])
    out = tmp_path / "results.jsonl"
    server = OllamaStandin(models=("grounded:latest", "unrelated:latest"))
    server.model_replies.update({"grounded:latest": grounded_reply, "unrelated:latest": UNRELATED_REPLY})
    with server:
        monkeypatch.setenv("OLLAMA_HOST", server.host)
        monkeypatch.setenv("RAG_STORE_DIR", str(guide_store))
        code = main([str(truth), "--answers", "--models", "grounded,unrelated", "--reference-column", "reference",
                     "--scope-column", "document", "--out", str(out)])
        asked = [body for body in server.chat_requests() if body.get("messages")]
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = read_rows(out)
    assert code == 0 and len(rows) == 4 and len(asked) == 4
    assert {(row["mode"], row["parts"]) for row in rows} == {("whole", 1)}
    assert all(body["messages"][0]["content"] == WHOLE_RULES for body in asked)
    assert "RAG_TOP_K" in asked[0]["messages"][-1]["content"] and "Getting started" not in asked[0]["messages"][-1]["content"]
    grounded, unrelated = summary["models"]["grounded"], summary["models"]["unrelated"]
    assert grounded["citation_hit"] == 1.0 and unrelated["citation_hit"] == 0.0
    assert grounded["answer_similarity"] > unrelated["answer_similarity"]


def test_a_scope_naming_a_document_not_in_the_store_is_that_row_s_error(guide_store, tmp_path, monkeypatch, capsys):
    truth = tmp_path / "summaries.csv"
    with truth.open("w", newline="") as handle:
        csv.writer(handle).writerows([("question", "document", "reference"), ("Summarise it", "configuraton.md", "x")])
    with OllamaStandin() as server:
        monkeypatch.setenv("OLLAMA_HOST", server.host)
        monkeypatch.setenv("RAG_STORE_DIR", str(guide_store))
        code = main([str(truth), "--answers", "--reference-column", "reference", "--scope-column", "document",
                     "--out", str(tmp_path / "r.jsonl")])
    [row] = read_rows(tmp_path / "r.jsonl")
    assert code == 1
    assert row["error"] == "--scope-column document 'configuraton.md': no document in the store has this id; the closest: configuration.md."
