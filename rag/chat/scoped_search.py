"""Search restricted to the scoped documents, with its own top k: the k best passages of the scope, not k documents."""
from __future__ import annotations

from rag.search.retrieval import RetrievedDoc, Retriever


def scope_filter(scope: list[str], where: dict | None) -> dict:
    """The metadata filter that keeps the scoped documents' chunks (and what where asks besides)."""
    within = {"doc_id": {"$in": list(scope)}}
    return within if not where else {"$and": [within, where]}


def search_within(retriever: Retriever, query: str, scope: list[str], k: int, where: dict | None = None) -> list[RetrievedDoc]:
    """The k best passages of the scoped documents, each as its own numbered source, best first."""
    docs = retriever.search(query, len(scope), scope_filter(scope, where), chunks_per_doc=k)
    ranked = sorted(((doc, chunk) for doc in docs for chunk in doc.chunks), key=lambda pair: -pair[1].score)[:k]
    return [RetrievedDoc(doc.doc_id, doc.title, chunk.score, doc.similarity, [chunk], doc.evidence) for doc, chunk in ranked]
