"""Builds the shared objects every entry point needs from the settings."""
from __future__ import annotations

from rag.embeddings import load_embedder
from rag.retrieval import Retriever
from rag.settings import Settings
from rag.store import open_collection


def open_retriever(settings: Settings) -> Retriever:
    """A retriever over the configured collection with the configured embedder."""
    embedder = load_embedder(settings.embed_model)
    collection = open_collection(settings, embedder.name, embedder.dimension, create=False)
    return Retriever(collection, embedder)
