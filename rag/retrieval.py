"""Search the store: exact cosine search and BM25 over an in-memory copy of Chroma's chunks, fused into documents."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from rag.embeddings import Embedder
from rag.errors import StoreError
from rag.store import LiveCollection

if TYPE_CHECKING:  # the index brings numpy, scipy and bm25s: imported when a retriever is made, not with this module
    from rag.chunk_index import ChunkIndex
    from rag.index_cache import ChunkIndexCache

Mode = Literal["dense", "keyword", "hybrid"]
CANDIDATE_CHUNKS = 60
BEST_SCORES_SHOWN = 3


@dataclass
class RetrievedChunk:
    """One chunk returned by a search, with its dense similarity (None when only keywords found it)."""

    id: str
    text: str
    metadata: dict
    similarity: float | None
    keyword: float = 0.0
    score: float = 0.0


@dataclass
class RetrievedDoc:
    """A distinct document in rank order, with its fused score and the chunks of it that matched."""

    doc_id: str
    title: str
    score: float
    similarity: float | None
    chunks: list[RetrievedChunk] = field(default_factory=list)

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
        from rag.index_cache import ChunkIndexCache

        self.index = index or ChunkIndexCache(self.live)

    @property
    def collection(self):
        """The collection as last opened."""
        return self.live.collection

    def search(self, query: str, k: int, where: dict | None = None) -> list[RetrievedDoc]:
        """The top k distinct documents for query, optionally restricted by a metadata filter."""
        try:
            index = self.index.get()
            dense = self.dense_chunks(index, query, where) if self.mode != "keyword" else []
            keyword = self.keyword_chunks(index, query, where) if self.mode != "dense" else []
        except Exception as exc:
            raise StoreError(f"Search failed: {self.live.describe_failure(exc)}") from None
        weight = {"dense": 1.0, "keyword": 0.0, "hybrid": self.dense_weight}[self.mode]
        return fuse(dense, keyword, weight)[:k]

    def dense_chunks(self, index: ChunkIndex, query: str, where: dict | None) -> list[RetrievedChunk]:
        """Nearest chunks by cosine similarity, computed exactly over the collection's vectors."""
        hits = index.nearest(self.embedder.embed_query(query), CANDIDATE_CHUNKS, where)
        return [RetrievedChunk(index.ids[i], index.texts[i], index.metadatas[i], score) for i, score in hits]

    def keyword_chunks(self, index: ChunkIndex, query: str, where: dict | None) -> list[RetrievedChunk]:
        """Best chunks by BM25, their scores scaled so the best is 1."""
        hits = index.keywords(query, CANDIDATE_CHUNKS, where)
        if not hits:
            return []
        best = hits[0][1]
        return [RetrievedChunk(index.ids[i], index.texts[i], index.metadatas[i], None, score / best) for i, score in hits]


def fuse(dense: list[RetrievedChunk], keyword: list[RetrievedChunk], dense_weight: float) -> list[RetrievedDoc]:
    """Documents ranked by dense_weight * best similarity + (1 - dense_weight) * best scaled BM25 score."""
    chunks: dict[str, RetrievedChunk] = {c.id: c for c in dense}
    for hit in keyword:
        if hit.id in chunks:
            chunks[hit.id].keyword = hit.keyword
        else:
            chunks[hit.id] = hit
    docs: dict[str, RetrievedDoc] = {}
    for chunk in chunks.values():
        doc_id = chunk.metadata["doc_id"]
        doc = docs.setdefault(doc_id, RetrievedDoc(doc_id, chunk.metadata.get("title", doc_id), 0.0, None))
        doc.chunks.append(chunk)
    for doc in docs.values():
        similarities = [c.similarity for c in doc.chunks if c.similarity is not None]
        doc.similarity = max(similarities) if similarities else None
        best_keyword = max(c.keyword for c in doc.chunks)
        doc.score = dense_weight * (doc.similarity or 0.0) + (1 - dense_weight) * best_keyword
        for chunk in doc.chunks:
            chunk.score = dense_weight * (chunk.similarity or 0.0) + (1 - dense_weight) * chunk.keyword
        doc.chunks.sort(key=lambda c: c.score, reverse=True)
    return sorted(docs.values(), key=lambda d: d.score, reverse=True)


def is_relevant(docs: list[RetrievedDoc], floor: float) -> bool:
    """True when the best dense similarity reaches the floor; keyword-only results pass when found."""
    similarities = [doc.similarity for doc in docs if doc.similarity is not None]
    return max(similarities) >= floor if similarities else bool(docs)


def relevance(doc: RetrievedDoc) -> float:
    """The score the relevance floor is compared with: the dense similarity when there is one."""
    return doc.score if doc.similarity is None else doc.similarity


def best_scores(docs: list[RetrievedDoc]) -> list[dict]:
    """The best few retrieved documents and their relevance, for an honest 'nothing relevant' answer."""
    ranked = sorted(docs, key=relevance, reverse=True)[:BEST_SCORES_SHOWN]
    return [{"title": d.title, "doc_id": d.doc_id, "score": round(relevance(d), 4)} for d in ranked]


def no_match_text(docs: list[RetrievedDoc], floor: float) -> str:
    """The answer given when nothing passes the relevance floor."""
    if not docs:
        return "Nothing in your documents matches this question: the search returned no passages."
    scores = ", ".join(f"{d['score']:.2f} ({d['title']})" for d in best_scores(docs))
    return (
        f"Nothing in your documents looks relevant to this question: no passage scored at or above the "
        f"relevance floor of {floor:.2f}. Best scores: {scores}."
    )
