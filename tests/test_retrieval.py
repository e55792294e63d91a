"""Hybrid retrieval: dense + BM25 fused into distinct documents, filters, refresh, relevance floor."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ingest.pipeline import IngestOptions, ingest
from rag.search import general_knowledge
from rag.search import index_cache
from rag.search.chunk_index import ChunkIndex, matches
from rag.search.loader import open_retriever
from rag.search.retrieval import EVERYDAY_QUESTION, Evidence, is_relevant, no_match_text, rank_documents, score_chunks, top_documents

ROOT = Path(__file__).resolve().parent.parent


def small_index() -> ChunkIndex:
    return ChunkIndex(
        ["1", "2", "3", "4"],
        ["Installing on Linux needs apt", "Windows installer steps", "Nothing relevant here", "More on apt sources"],
        [{"doc_id": "a", "os": "linux"}, {"doc_id": "b", "os": "windows"}, {"doc_id": "c", "os": "linux"}, {"doc_id": "a", "os": "linux"}],
        np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.0, 1.0]]),
        (4, None),
    )


def test_document_vectors_are_the_normalised_mean_of_their_chunks():
    derived = small_index().derived
    assert derived.doc_ids == ["a", "b", "c"]
    assert derived.doc_of.tolist() == [0, 1, 2, 0]
    assert np.allclose(derived.doc_vectors, [[0.5 ** 0.5, 0.5 ** 0.5], [0.6, 0.8], [0.0, 1.0]])
    assert not derived.in_order
    assert [derived.chunks_of(d).tolist() for d in range(3)] == [[0, 3], [1], [2]]
    assert derived.best_of_each(np.array([0.1, 0.5, 0.2, 0.7])).tolist() == [0.7, 0.5, 0.2]


def test_the_top_documents_are_chosen_by_best_score_with_ties_in_document_order():
    best = np.array([0.2, -np.inf, 0.5, 0.2, 0.9, 0.2])
    assert top_documents(best, 3) == [4, 2, 0]
    assert top_documents(best, 4) == [4, 2, 0, 3]
    assert top_documents(best, 10) == [4, 2, 0, 3, 5]
    assert top_documents(best, 0) == []


def test_every_document_is_ranked_by_its_best_chunk_with_dense_and_keyword_evidence():
    index = small_index()
    scores = score_chunks(index, [0.8, 0.6], "apt", None)
    docs = rank_documents(index, scores, 0.6, 10)
    assert [d.doc_id for d in docs] == ["a", "b", "c"]
    first, second = docs[0].chunks
    assert (first.id, second.id) == ("1", "4")
    assert second.keyword > first.keyword > 0  # the shorter chunk has the better BM25 score
    # chunk 1: cosine 0.8, blended with its document's vector (cosine 0.98995) at 0.25, then fused 0.6 / 0.4
    assert np.isclose(first.score, 0.6 * (0.8 + 0.25 * 0.98995) / 1.25 + 0.4 * first.keyword, atol=1e-4)
    assert docs[0].score == first.score > second.score
    assert np.allclose([docs[0].similarity, docs[1].similarity], [0.8, 0.96])
    assert docs[0].evidence.background == docs[1].evidence.background == np.float32(np.mean([0.8, 0.96, 0.6, 0.6]))
    assert docs[1].evidence.coverage == 0.0 < docs[0].evidence.coverage


def test_dense_weight_one_ranks_by_similarity_and_document_vector_only():
    index = small_index()
    docs = rank_documents(index, score_chunks(index, [0.8, 0.6], "apt", None), 1.0, 10)
    assert [d.doc_id for d in docs] == ["b", "a", "c"]


def test_dense_weight_zero_with_a_filter_ranks_by_keywords_without_nan():
    index = small_index()
    with np.errstate(all="raise"):
        docs = rank_documents(index, score_chunks(index, [0.8, 0.6], "apt", {"os": "linux"}), 0.0, 10)
    assert [(d.doc_id, [c.id for c in d.chunks]) for d in docs] == [("a", ["4", "1"]), ("c", ["3"])]
    assert docs[1].score == 0.0 and docs[0].score == docs[0].chunks[0].keyword > 0


def test_an_empty_collection_finds_nothing():
    index = ChunkIndex([], [], [], np.zeros((0, 0)), (0, None))
    assert rank_documents(index, score_chunks(index, [0.6, 0.8], "install", None), 0.6, 5) == []


def test_keyword_mode_returns_only_documents_sharing_a_word():
    index = small_index()
    docs = rank_documents(index, score_chunks(index, None, "apt", None), 0.0, 10)
    assert [(d.doc_id, [c.id for c in d.chunks], d.evidence) for d in docs] == [("a", ["4", "1"], None)]


def test_metadata_filter_semantics_match_chroma_operators():
    meta = {"course": "ml", "year": 2024, "kind": "md"}
    assert matches(meta, {"course": "ml"})
    assert not matches(meta, {"course": "de"})
    assert matches(meta, {"$and": [{"course": {"$eq": "ml"}}, {"year": {"$gte": 2024}}]})
    assert matches(meta, {"$or": [{"course": "de"}, {"kind": {"$in": ["md", "txt"]}}]})
    assert not matches(meta, {"kind": {"$nin": ["md"]}})
    assert not matches(meta, {"missing": {"$gt": 1}})
    assert matches(meta, {"course": {"$ne": "de"}})


def test_keyword_scores_find_stemmed_words_respect_filters_and_know_the_best_reachable_score():
    index = small_index()
    scores, reachable = index.keyword_scores("how to install", None)
    assert np.flatnonzero(scores).tolist() == [0, 1]
    assert scores.max() < reachable
    assert np.flatnonzero(index.keyword_scores("install", {"os": "windows"})[0]).tolist() == [1]
    assert index.keyword_scores("the and of", None)[1] == 0.0


def test_similarities_are_exact_cosines_within_the_filter():
    index = small_index()
    assert np.allclose(index.similarities([0.8, 0.6]), [0.8, 0.96, 0.6, 0.6])
    assert index.similarities([0.8, 0.6], {"os": "mac"}).tolist() == [-np.inf] * 4


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


def test_an_error_in_scoring_is_raised_as_it_is_not_called_a_failed_search(sample_store):
    retriever = open_retriever(sample_store)

    with pytest.raises(TypeError) as caught:
        retriever.search("How do I pull a model?", 5, {"$and": 5})  # $and takes a list: matching it fails in our code

    assert str(caught.value) == "'int' object is not iterable"


def test_keyword_index_sees_documents_ingested_after_it_was_built(sample_store, embedder, tmp_path, monkeypatch):
    monkeypatch.setattr(index_cache, "RECHECK_SECONDS", 0.0)
    retriever = open_retriever(sample_store.model_copy(update={"retrieval_mode": "keyword"}))
    assert retriever.search("zanzibar", 1) == []
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "travel.md").write_text("# Travel\n\nThe ferry to Zanzibar leaves at nine.\n")
    ingest([extra], sample_store, embedder, IngestOptions())
    assert [d.doc_id for d in retriever.search("zanzibar", 1)] == ["travel.md"]


OFF_TOPIC = [
    "What is the boiling point of water on Mount Everest?", "Who won the 2018 World Cup?", "recipe for chicken curry",
    "how do I get rid of hiccups", "what is the capital of Canada", "how do I file my taxes",
]
GUIDE = [
    "What formats can I ingest?", "How do I add my own documents?", "can it read pdfs", "cannot connect to ollama",
    "see what would change first", "what should I try first", "what about pictures", "top k", "how do I get started",
    "is my data private", "does the model make things up", "preview changes",
]


def test_short_questions_about_the_guide_pass_the_floor_and_off_topic_ones_do_not(sample_store):
    retriever = open_retriever(sample_store)
    floor = sample_store.relevance_floor
    assert [q for q in GUIDE if not is_relevant(retriever.search(q, 5), floor)] == []
    assert [q for q in OFF_TOPIC if is_relevant(retriever.search(q, 5), floor)] == []


VAGUE = ["stuff", "something", "help", "hello", "info", "why?", "tell me more", "question1", "4", "un truc ?"]


def test_a_question_that_names_nothing_is_refused_and_asked_to_be_specific(sample_store):
    retriever = open_retriever(sample_store)
    floor = sample_store.relevance_floor

    answers = {q: None if is_relevant(docs := retriever.search(q, 5), floor) else no_match_text(docs, floor) for q in VAGUE}

    assert answers == dict.fromkeys(VAGUE, (
        "Your question names nothing to look for in your documents. Ask about something specific: a feature, a command, "
        "an error message or a topic they cover."
    ))


def test_an_everyday_question_is_refused_for_reading_like_one(sample_store):
    docs = open_retriever(sample_store).search("recipe for chicken curry", 5)
    evidence = docs[0].evidence
    assert evidence.general >= EVERYDAY_QUESTION and evidence.known == 0.0
    assert "it reads like an everyday general-knowledge question" in no_match_text(docs, sample_store.relevance_floor)


def test_the_floor_weighs_background_keywords_known_words_and_likeness_to_everyday_questions():
    evidence = Evidence(similarity=0.2, background=0.05, coverage=0.4, general=0.55, known=0.5, unrelated=0.21)
    assert np.isclose(evidence.allowance, 3.0 * 0.05 + 0.25 * 0.4 + 0.1 * 0.5 - 1.5 * (0.55 - 0.25))
    assert np.isclose(evidence.needed(0.07), 0.21 + 0.07 - evidence.allowance)
    assert Evidence(0.2, 0.05, 0.4, general=0.1, known=0.5).allowance == Evidence(0.2, 0.05, 0.4, 0.25, 0.5).allowance


def test_formats_question_ranks_the_supported_formats_section_first(sample_store):
    docs = open_retriever(sample_store).search("What formats can I ingest?", 5)
    assert (docs[0].doc_id, docs[0].chunks[0].metadata["headings"]) == ("adding-documents.md", "Supported formats")


def test_refusal_shows_the_similarities_compared_and_says_why_in_words(sample_store):
    docs = open_retriever(sample_store).search(OFF_TOPIC[0], 5)
    text = no_match_text(docs, 0.07)
    best = max(docs, key=lambda d: d.evidence.similarity - d.evidence.needed(0.07)).evidence
    assert text.startswith("Nothing in your documents looks relevant to this question: ")
    assert f"{best.similarity:.2f} of {best.needed(0.07):.2f} needed (" in text
    assert text.endswith(
        f"It needed 0.07 (the relevance floor) above the {best.unrelated:.2f} that everyday questions reach in your "
        f"documents, lowered by 3 x the question's average similarity to your documents "
        f"({best.background:.2f}), 0.25 x the share of its keywords found ({best.coverage:.0%}) and 0.1 x the share "
        f"of its words your documents use ({best.known:.0%}), and raised by 1.5 x its likeness to everyday "
        f"general-knowledge questions above 0.25 ({best.general:.2f})."
    )
    assert "no passage is close to it in meaning" in text


def test_shipped_everyday_question_vectors_are_the_default_embedders_own(embedder):
    shipped = general_knowledge.vectors(embedder)
    questions = general_knowledge.questions()
    assert shipped.shape == (len(questions), embedder.dimension) and len(questions) >= 500
    sample = list(range(0, len(questions), 25))
    fresh = np.asarray(embedder.embed([questions[i] for i in sample]), dtype=np.float32)
    assert np.abs(shipped[sample] - fresh).max() < 2e-3


def test_search_returns_as_many_documents_as_asked_when_the_store_holds_them(sample_store):
    retriever = open_retriever(sample_store)
    assert len(retriever.search("zanzibar ferry timetable", 100)) == 5
    assert len(retriever.search("How do I add my own documents?", 2)) == 2


def run_eval(tmp_path, rows: str, *args: str) -> dict:
    truth = tmp_path / "truth.csv"
    truth.write_text(rows)
    done = subprocess.run(
        [sys.executable, "-m", "rag.eval", str(truth), *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_eval_reports_quality_refusals_and_latency_as_last_line(sample_store, tmp_path):
    result = run_eval(
        tmp_path,
        "question,document,kind\n"
        "How do I pull a model with ollama?,troubleshooting.md,x\n"
        "Which environment variable sets the context window?,configuration.md,x\n"
        "How do I add my own documents?,no-such-doc.md,x\n"
        "Who won the 2018 World Cup?,,x\n",
        "--k", "3",
    )
    assert (result["questions"], result["labelled"], result["hit_rate"], result["recall@3"]) == (4, 3, 0.6667, 0.6667)
    assert 0.3333 < result["mrr"] <= 0.6667
    assert 0.3333 < result["ndcg@10"] <= 0.6667
    assert result["refusal_rate"] == 0.25
    assert set(result) == {"questions", "labelled", "hit_rate", "mrr", "ndcg@10", "recall@3", "refusal_rate", "p50_ms", "p95_ms"}


def test_eval_merges_rows_of_one_question_and_counts_recall_over_all_relevant_documents(sample_store, tmp_path):
    result = run_eval(
        tmp_path,
        "question,document\n"
        "change the embedding model,configuration.md;troubleshooting.md\n"
        "change the embedding model,no-such-doc.md\n",
        "--k", "50",  # the most --k takes (TOP_K_MAX), past the 5 documents of the guide
    )
    assert (result["questions"], result["hit_rate"], result["recall@50"]) == (1, 1.0, 0.6667)
    assert result["ndcg@10"] < 1.0


def test_eval_by_section_scores_the_heading_of_the_chunks_found(sample_store, tmp_path):
    rows = (
        "question,document\n"
        "What formats can I ingest?,adding-documents.md#Supported formats\n"
        "What formats can I ingest?,adding-documents.md#running IT again\n"
    )
    by_section = run_eval(tmp_path, rows, "--by-section", "--k", "1")
    by_document = run_eval(tmp_path, rows, "--k", "1")
    assert (by_section["hit_rate"], by_section["mrr"], by_section["recall@1"]) == (1.0, 1.0, 0.5)
    assert (by_document["hit_rate"], by_document["recall@1"], by_document["ndcg@10"]) == (1.0, 1.0, 1.0)


def test_eval_names_a_missing_column(sample_store, tmp_path):
    truth = tmp_path / "truth.csv"
    truth.write_text("question,doc\nq,d\n")
    done = subprocess.run(
        [sys.executable, "-m", "rag.eval", str(truth)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 1
    assert done.stderr.strip() == f"error: {truth} has no column 'document'; its columns are ['question', 'doc']."


def test_what_unrelated_questions_reach_is_measured_on_the_chunks_the_filter_passes():
    reference = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.8, 0.6], [-1.0, 0.0]], dtype=np.float32)
    index = small_index()  # chunk vectors [1, 0], [0.6, 0.8], [0, 1], [0, 1]
    # every 4th reference question: [1, 0] and [-1, 0]; their best cosines 1.0 and 0.0 over all chunks
    assert index.unrelated_similarity(reference) == 0.5
    # windows only: the chunk [0.6, 0.8] gives 0.6 and -0.6
    assert np.isclose(index.unrelated_similarity(reference, {"os": "windows"}), 0.0)
    assert general_knowledge.unrelated_similarity(reference, np.zeros((0, 2), np.float32)) == 0.0
