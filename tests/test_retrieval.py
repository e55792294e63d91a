"""Hybrid retrieval: dense + BM25 fused into distinct documents, filters, refresh, relevance floor."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from ingest.pipeline import IngestOptions, ingest
from rag import index_cache
from rag.chunk_index import ChunkIndex, matches
from rag.pipeline import open_retriever
from rag.retrieval import RetrievedChunk, fuse, is_relevant

ROOT = Path(__file__).resolve().parent.parent


def chunk(chunk_id, doc_id, similarity=None, keyword_score=0.0):
    return RetrievedChunk(chunk_id, f"text of {chunk_id}", {"doc_id": doc_id, "title": doc_id.upper()}, similarity, keyword_score)


def test_fuse_weights_dense_and_keyword_and_counts_each_document_once():
    dense = [chunk("a1", "a", 0.9), chunk("a2", "a", 0.5), chunk("b1", "b", 0.7)]
    keywords = [chunk("b1", "b", None, 1.0), chunk("c1", "c", None, 0.8)]
    docs = fuse(dense, keywords, 0.6)
    assert [d.doc_id for d in docs] == ["b", "a", "c"]
    assert [round(d.score, 4) for d in docs] == [0.82, 0.54, 0.32]
    assert [c.id for c in docs[1].chunks] == ["a1", "a2"]
    assert (docs[0].similarity, docs[2].similarity, docs[0].title) == (0.7, None, "B")


def test_dense_weight_one_ranks_by_similarity_only():
    docs = fuse([chunk("a1", "a", 0.3), chunk("b1", "b", 0.4)], [chunk("a1", "a", None, 1.0)], 1.0)
    assert [d.doc_id for d in docs] == ["b", "a"]


def test_metadata_filter_semantics_match_chroma_operators():
    meta = {"course": "ml", "year": 2024, "kind": "md"}
    assert matches(meta, {"course": "ml"})
    assert not matches(meta, {"course": "de"})
    assert matches(meta, {"$and": [{"course": {"$eq": "ml"}}, {"year": {"$gte": 2024}}]})
    assert matches(meta, {"$or": [{"course": "de"}, {"kind": {"$in": ["md", "txt"]}}]})
    assert not matches(meta, {"kind": {"$nin": ["md"]}})
    assert not matches(meta, {"missing": {"$gt": 1}})
    assert matches(meta, {"course": {"$ne": "de"}})


def small_index() -> ChunkIndex:
    return ChunkIndex(
        ["1", "2", "3"],
        ["Installing on Linux needs apt", "Windows installer steps", "Nothing relevant here"],
        [{"doc_id": "a", "os": "linux"}, {"doc_id": "b", "os": "windows"}, {"doc_id": "c", "os": "linux"}],
        np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]),
        (3, None),
    )


def test_keyword_search_finds_stemmed_words_and_respects_filters():
    index = small_index()
    assert sorted(i for i, _ in index.keywords("how to install", 10)) == [0, 1]
    assert [i for i, _ in index.keywords("install", 10, {"os": "windows"})] == [1]
    assert index.keywords("the and of", 10) == []


def test_nearest_is_exact_cosine_order_within_the_filter():
    index = small_index()
    assert [(i, round(s, 2)) for i, s in index.nearest([0.8, 0.6], 3)] == [(1, 0.96), (0, 0.8), (2, 0.6)]
    assert [i for i, _ in index.nearest([0.8, 0.6], 3, {"os": "linux"})] == [0, 2]
    assert index.nearest([0.8, 0.6], 3, {"os": "mac"}) == []


def test_hybrid_search_returns_distinct_documents_with_matched_chunks(sample_store):
    retriever = open_retriever(sample_store)
    docs = retriever.search("How do I pull a model with ollama?", 3)
    assert len(docs) == 3
    assert len({d.doc_id for d in docs}) == 3
    assert docs[0].doc_id == "troubleshooting.md"
    assert all(c.metadata["doc_id"] == d.doc_id for d in docs for c in d.chunks)
    assert docs[0].score >= docs[1].score >= docs[2].score


def test_keyword_mode_finds_an_exact_identifier(sample_store):
    retriever = open_retriever(sample_store.model_copy(update={"retrieval_mode": "keyword"}))
    docs = retriever.search("RAG_NUM_CTX", 1)
    assert [d.doc_id for d in docs] == ["configuration.md"]


def test_where_filter_restricts_both_dense_and_keyword_results(sample_store):
    retriever = open_retriever(sample_store)
    docs = retriever.search("How do I pull a model?", 5, {"doc_id": "configuration.md"})
    assert [d.doc_id for d in docs] == ["configuration.md"]


def test_keyword_index_sees_documents_ingested_after_it_was_built(sample_store, embedder, tmp_path, monkeypatch):
    monkeypatch.setattr(index_cache, "RECHECK_SECONDS", 0.0)
    retriever = open_retriever(sample_store.model_copy(update={"retrieval_mode": "keyword"}))
    assert retriever.search("zanzibar", 1) == []
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "travel.md").write_text("# Travel\n\nThe ferry to Zanzibar leaves at nine.\n")
    ingest([extra], sample_store, embedder, IngestOptions())
    assert [d.doc_id for d in retriever.search("zanzibar", 1)] == ["travel.md"]


def test_off_topic_question_falls_below_the_default_floor(sample_store):
    retriever = open_retriever(sample_store)
    assert not is_relevant(retriever.search("What is the boiling point of water on Mount Everest?", 5), sample_store.relevance_floor)
    assert is_relevant(retriever.search("How do I add my own documents?", 5), sample_store.relevance_floor)


def test_eval_reports_hit_rate_and_mrr_as_last_line(sample_store, tmp_path):
    truth = tmp_path / "truth.csv"
    truth.write_text(
        "question,document,kind\n"
        "How do I pull a model with ollama?,troubleshooting.md,x\n"
        "Which environment variable sets the context window?,configuration.md,x\n"
        "How do I add my own documents?,no-such-doc.md,x\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "rag.eval", str(truth), "--k", "3"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (result["questions"], result["hit_rate"]) == (3, 0.6667)
    assert 0.3333 < result["mrr"] <= 0.6667
    assert set(result) == {"questions", "hit_rate", "mrr", "p50_ms", "p95_ms"}


def test_eval_names_a_missing_column(sample_store, tmp_path):
    truth = tmp_path / "truth.csv"
    truth.write_text("question,doc\nq,d\n")
    done = subprocess.run(
        [sys.executable, "-m", "rag.eval", str(truth)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 1
    assert done.stderr.strip() == f"error: {truth} has no column 'document'; its columns are ['question', 'doc']."
