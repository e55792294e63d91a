"""Builds the shared objects every entry point needs from the settings."""
from __future__ import annotations

from rag.embeddings import load_embedder
from rag.retrieval import Retriever
from rag.settings import Settings
from rag.store import LiveCollection, open_client, open_collection


def open_retriever(settings: Settings) -> Retriever:
    """A retriever over the configured collection with the configured embedder and search mode."""
    embedder = load_embedder(settings.embed_model)
    client = open_client(settings, create=False)
    collection = open_collection(settings, embedder.name, embedder.dimension, create=False, client=client)
    live = LiveCollection(collection, settings, client)
    return Retriever(collection, embedder, settings.retrieval_mode, settings.dense_weight, live=live)
