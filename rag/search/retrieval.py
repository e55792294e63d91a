"""Search the store: exact cosine search and BM25 over an in-memory copy of Chroma's chunks, fused into documents."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from rag.core.question_words import is_vague
from rag.search import general_knowledge
from rag.search.embeddings import Embedder
from rag.core.errors import StoreError
from rag.store.chroma import LiveCollection

if TYPE_CHECKING:  # the index brings numpy, scipy and bm25s: imported when a retriever is made, not with this module
    from rag.search.chunk_index import ChunkIndex
    from rag.search.index_cache import ChunkIndexCache

Mode = Literal["dense", "keyword", "hybrid"]
DOC_VECTOR_WEIGHT = 0.25
KEYWORD_SCALE_FLOOR = 0.3
CHUNKS_PER_DOC = 3
BACKGROUND_WEIGHT = 3.0
COVERAGE_WEIGHT = 0.25
KNOWN_WORDS_WEIGHT = 0.1
GENERAL_WEIGHT = 1.5
GENERAL_ALLOWED = 0.25
BEST_SCORES_SHOWN = 3
WEAK_SIMILARITY = 0.3
FEW_KEYWORDS = 0.15
UNRELATED_BACKGROUND = 0.03
EVERYDAY_QUESTION = 0.45
VAGUE_QUESTION = (
    "Your question names nothing to look for in your documents. Ask about something specific: a feature, a command, "
    "an error message or a topic they cover."
)


@dataclass
class RetrievedChunk:
    """One chunk returned by a search, with its dense similarity (None when only keywords found it)."""

    id: str
    text: str
    metadata: dict
    similarity: float | None
    keyword: float = 0.0
    score: float = 0.0


@dataclass(frozen=True)
class Evidence:
    """Why a document is taken to answer the question: compared with the relevance floor as one number."""

    similarity: float
    background: float
    coverage: float
    general: float = 0.0
    known: float = 0.0
    unrelated: float = 0.0
    vague: bool = False  # the question names nothing to search for ("stuff", "why?", "hello")

    @property
    def allowance(self) -> float:
        """How far the floor is lowered: more when the question resembles the whole store, its keywords are found and
        its words are the documents' own; less when it reads like an everyday general-knowledge question."""
        return (
            BACKGROUND_WEIGHT * self.background + COVERAGE_WEIGHT * self.coverage + KNOWN_WORDS_WEIGHT * self.known
            - GENERAL_WEIGHT * max(0.0, self.general - GENERAL_ALLOWED)
        )

    def needed(self, floor: float) -> float:
        """The similarity this document needs to count as relevant: the floor above what unrelated questions reach
        in the store, less the allowance."""
        return self.unrelated + floor - self.allowance

    def passes(self, floor: float) -> bool:
        """True when the question names something and the document's best similarity reaches the floor lowered by the
        allowance."""
        return not self.vague and self.similarity >= self.needed(floor)


@dataclass
class RetrievedDoc:
    """A distinct document in rank order, with its fused score and the chunks of it that matched."""

    doc_id: str
    title: str
    score: float
    similarity: float | None
    chunks: list[RetrievedChunk] = field(default_factory=list)
    evidence: Evidence | None = None

    @property
    def metadata(self) -> dict:
        """The metadata of the best chunk."""
        return self.chunks[0].metadata


class Retriever:
    """Finds the documents that best match a question in one collection."""

    def __init__(
        self, collection, embedder: Embedder, mode: Mode = "hybrid", dense_weight: float = 0.6,
        live: LiveCollection | None = None, index: ChunkIndexCache | None = None,
    ):
        self.live = live or LiveCollection(collection)
        self.embedder = embedder
        self.mode = mode
        self.dense_weight = dense_weight
        from rag.search.index_cache import ChunkIndexCache

        self.index = index or ChunkIndexCache(self.live)

    @property
    def collection(self):
        """The collection as last opened."""
        return self.live.collection

    def search(self, query: str, k: int, where: dict | None = None, chunks_per_doc: int = CHUNKS_PER_DOC) -> list[RetrievedDoc]:
        """The top k distinct documents for query (each with its best chunks), optionally restricted by a metadata filter."""
        try:
            index = self.index.get()
        except StoreError as exc:  # the store could not be read; an error in scoring below is a bug, raised as it is
            raise StoreError(f"Search failed: {exc}") from None
        vector = self.embedder.embed_query(query) if self.mode != "keyword" else None
        reference = general_knowledge.vectors(self.embedder) if vector is not None else None
        scores = score_chunks(index, vector, query, where, reference)
        weight = {"dense": 1.0, "keyword": 0.0, "hybrid": self.dense_weight}[self.mode]
        return rank_documents(index, scores, weight, k, chunks_per_doc)


@dataclass
class ChunkScores:
    """Per-chunk arrays for one question (cosine similarity, dense score with the document's vector, keyword share)
    and the question's own figures (background similarity, likeness to everyday questions, share of known words,
    and how close everyday questions come to the chunks searched)."""

    similarity: np.ndarray | None
    dense: np.ndarray | None
    keyword: np.ndarray
    coverage: np.ndarray
    background: float
    allowed: np.ndarray
    general: float = 0.0
    known: float = 0.0
    unrelated: float = 0.0
    vague: bool = False


def score_chunks(
    index: ChunkIndex, vector: list[float] | None, query: str, where: dict | None, reference: np.ndarray | None = None,
) -> ChunkScores:
    """Score every chunk that passes the filter, densely (when a query vector is given) and by keywords; with the
    everyday reference questions' vectors, also how much the question reads like one of them."""
    keyword, reachable = index.keyword_scores(query, where)
    mask = index.mask(where)
    allowed = np.ones(len(index.ids), bool) if mask is None else mask
    coverage = keyword / reachable if reachable > 0 else keyword
    scale = max(float(keyword.max(initial=0.0)), KEYWORD_SCALE_FLOOR * reachable)
    scaled = keyword / scale if scale > 0 else keyword
    if vector is None or not index.ids:
        return ChunkScores(None, None, scaled, coverage, 0.0, allowed)
    similarity = index.similarities(vector, where)
    documents = index.derived.doc_vectors @ np.asarray(vector, dtype=np.float32)
    dense = (similarity + DOC_VECTOR_WEIGHT * documents[index.derived.doc_of]) / (1 + DOC_VECTOR_WEIGHT)
    background = float((similarity if mask is None else similarity[mask]).mean()) if allowed.any() else 0.0
    general = general_knowledge.generality(reference, vector) if reference is not None else 0.0
    unrelated = index.unrelated_similarity(reference, where) if reference is not None else 0.0
    known = index.known_share(query)
    return ChunkScores(similarity, dense, scaled, coverage, background, allowed, general, known, unrelated, is_vague(query))


def rank_documents(
    index: ChunkIndex, scores: ChunkScores, dense_weight: float, k: int, chunks_per_doc: int = CHUNKS_PER_DOC
) -> list[RetrievedDoc]:
    """Documents ranked by their best chunk's fused score, each with its best few chunks."""
    if scores.dense is None:
        fused, candidates = scores.keyword, scores.allowed & (scores.keyword > 0)
    else:
        fused, candidates = (1 - dense_weight) * scores.keyword, scores.allowed
        if dense_weight:  # a weight of 0 times a filtered chunk's -inf would be NaN
            fused = fused + dense_weight * scores.dense
    derived = index.derived
    best = derived.best_of_each(np.where(candidates, fused, -np.inf))
    docs = []
    for d in top_documents(best, k):
        chunks = derived.chunks_of(d)
        matched = chunks[candidates[chunks]]
        picked = matched[np.argsort(-fused[matched], kind="stable")][:chunks_per_doc]
        found = [chunk_at(index, scores, fused, i) for i in picked]
        metadata = found[0].metadata
        doc = RetrievedDoc(metadata["doc_id"], metadata.get("title", metadata["doc_id"]), float(best[d]), None, found)
        if scores.similarity is not None:
            searched = chunks[scores.allowed[chunks]]
            doc.evidence = Evidence(
                float(scores.similarity[searched].max()), scores.background,
                float(scores.coverage[searched].max(initial=0.0)), scores.general, scores.known, scores.unrelated,
                scores.vague,
            )
            doc.similarity = doc.evidence.similarity
        docs.append(doc)
    return docs


def top_documents(best: np.ndarray, k: int) -> list[int]:
    """The k documents with the highest best score above -inf, ties in document order, without sorting them all."""
    if k <= 0:
        return []
    if np.count_nonzero(best > -np.inf) <= k:
        contenders = np.flatnonzero(best > -np.inf)
    else:
        contenders = np.flatnonzero(best >= np.partition(best, len(best) - k)[len(best) - k])
    return contenders[np.argsort(-best[contenders], kind="stable")][:k].tolist()


def chunk_at(index: ChunkIndex, scores: ChunkScores, fused: np.ndarray, i: int) -> RetrievedChunk:
    """One chunk of the index with its scores for this question."""
    similarity = None if scores.similarity is None else float(scores.similarity[i])
    return RetrievedChunk(index.ids[i], index.texts[i], index.metadatas[i], similarity, float(scores.keyword[i]), float(fused[i]))


def is_relevant(docs: list[RetrievedDoc], floor: float) -> bool:
    """True when a document's similarity reaches its lowered floor; keyword-only results pass when found."""
    judged = [doc.evidence for doc in docs if doc.evidence is not None]
    return any(e.passes(floor) for e in judged) if judged else bool(docs)


def margin(doc: RetrievedDoc, floor: float) -> float:
    """How far a document's similarity is above (or below) what it needs; its keyword score when it has no vector."""
    return doc.score if doc.evidence is None else doc.evidence.similarity - doc.evidence.needed(floor)


def best_scores(docs: list[RetrievedDoc], floor: float) -> list[dict]:
    """The few documents closest to passing, with the figures the floor was compared with."""
    ranked = sorted(docs, key=lambda d: margin(d, floor), reverse=True)[:BEST_SCORES_SHOWN]
    return [
        {"title": d.title, "doc_id": d.doc_id, "score": round(d.score, 4)}
        | ({} if d.evidence is None else {
            "similarity": round(d.evidence.similarity, 4),
            "needed": round(d.evidence.needed(floor), 4),
            "background": round(d.evidence.background, 4),
            "keywords_found": round(d.evidence.coverage, 4),
            "known_words": round(d.evidence.known, 4),
            "general": round(d.evidence.general, 4),
            "unrelated": round(d.evidence.unrelated, 4),
        })
        for d in ranked
    ]


def no_match_text(docs: list[RetrievedDoc], floor: float) -> str:
    """The answer given when nothing passes the relevance floor: the figures compared, and why in words."""
    if not docs:
        return "Nothing in your documents matches this question: the search returned no passages."
    if any(doc.evidence is not None and doc.evidence.vague for doc in docs):
        return VAGUE_QUESTION
    shown = best_scores(docs, floor)
    if "similarity" not in shown[0]:
        return "Nothing in your documents looks relevant to this question."
    lines = ", ".join(f"{s['similarity']:.2f} of {s['needed']:.2f} needed ({' '.join(s['title'].split())})" for s in shown)
    best = shown[0]
    return (
        f"Nothing in your documents looks relevant to this question: {why(best)}. "
        f"Best passage similarity against the similarity it needed: {lines}. It needed {floor:.2f} (the relevance "
        f"floor) above the {best['unrelated']:.2f} that everyday questions reach in your documents, lowered by "
        f"{BACKGROUND_WEIGHT:g} x the question's average similarity to your documents "
        f"({best['background']:.2f}), {COVERAGE_WEIGHT:g} x the share of its keywords found "
        f"({best['keywords_found']:.0%}) and {KNOWN_WORDS_WEIGHT:g} x the share of its words your documents use "
        f"({best['known_words']:.0%}), and raised by {GENERAL_WEIGHT:g} x its likeness to everyday general-knowledge "
        f"questions above {GENERAL_ALLOWED:g} ({best['general']:.2f})."
    )


def why(best: dict) -> str:
    """The reasons, in words, that the closest document fell short."""
    reasons = []
    if best["similarity"] < WEAK_SIMILARITY:
        reasons.append("no passage is close to it in meaning")
    if best["keywords_found"] < FEW_KEYWORDS:
        reasons.append("few of its words occur in them")
    if best["background"] < UNRELATED_BACKGROUND:
        reasons.append("it is far from what your documents are about")
    if best["general"] >= EVERYDAY_QUESTION:
        reasons.append("it reads like an everyday general-knowledge question")
    return " and ".join(reasons) or "the closest passages match it only partly"
