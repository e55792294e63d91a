"""Search the store: dense vectors from Chroma, grouped into distinct documents with their matched chunks."""
from __future__ import annotations

from dataclasses import dataclass, field

from rag.embeddings import Embedder
from rag.errors import StoreError

CANDIDATES_PER_RESULT = 4
MIN_CANDIDATES = 20


@dataclass
class RetrievedChunk:
    """One chunk returned by a search, with its similarity score."""

    id: str
    text: str
    metadata: dict
    score: float


@dataclass
class RetrievedDoc:
    """A distinct document in rank order, with the chunks of it that matched."""

    doc_id: str
    title: str
    score: float
    chunks: list[RetrievedChunk] = field(default_factory=list)

    @property
    def metadata(self) -> dict:
        """The metadata of the best chunk."""
        return self.chunks[0].metadata


class Retriever:
    """Finds the documents that best match a question in one collection."""

    def __init__(self, collection, embedder: Embedder):
        self.collection = collection
        self.embedder = embedder

    def search(self, query: str, k: int, where: dict | None = None) -> list[RetrievedDoc]:
        """The top k distinct documents for query, optionally restricted by a metadata filter."""
        vector = self.embedder.embed([query])[0]
        try:
            result = self.collection.query(
                query_embeddings=[vector],
                n_results=max(MIN_CANDIDATES, k * CANDIDATES_PER_RESULT),
                where=where or None,
                include=["documents", "metadatas", "distances"],
            )
        except Exception as exc:
            raise StoreError(f"Search failed in the store: {exc}") from None
        chunks = [
            RetrievedChunk(chunk_id, text, meta, 1.0 - distance)
            for chunk_id, text, meta, distance in zip(
                result["ids"][0], result["documents"][0], result["metadatas"][0], result["distances"][0]
            )
        ]
        return group_by_document(chunks)[:k]


def group_by_document(chunks: list[RetrievedChunk]) -> list[RetrievedDoc]:
    """Distinct documents ranked by their best chunk, each keeping its chunks in rank order."""
    docs: dict[str, RetrievedDoc] = {}
    for chunk in sorted(chunks, key=lambda c: c.score, reverse=True):
        doc_id = chunk.metadata["doc_id"]
        if doc_id not in docs:
            docs[doc_id] = RetrievedDoc(doc_id, chunk.metadata.get("title", doc_id), chunk.score)
        docs[doc_id].chunks.append(chunk)
    return list(docs.values())


def is_relevant(docs: list[RetrievedDoc], floor: float) -> bool:
    """True when at least one document scores at or above the relevance floor."""
    return any(doc.score >= floor for doc in docs)
