"""Opens the Chroma collection, embedded on disk or on a Chroma server, and guards its embedder."""
from __future__ import annotations

import os
from urllib.parse import urlparse

from rag.errors import EmbedderMismatch, StoreError
from rag.settings import Settings

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


def open_client(settings: Settings):
    """A Chroma client for the configured folder or server, with telemetry off."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if settings.chroma_url:
        url = urlparse(settings.chroma_url if "://" in settings.chroma_url else f"http://{settings.chroma_url}")
        try:
            return chromadb.HttpClient(
                host=url.hostname or "127.0.0.1",
                port=url.port or (443 if url.scheme == "https" else 8000),
                ssl=url.scheme == "https",
                settings=chroma_settings,
            )
        except Exception as exc:
            raise StoreError(
                f"Cannot reach the Chroma server at {settings.chroma_url} ({exc}). "
                f"Start it with `chroma run --path DIR --port {url.port or 8000}` or unset RAG_CHROMA_URL."
            ) from None
    try:
        settings.store_dir.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(settings.store_dir), settings=chroma_settings)
    except Exception as exc:
        raise StoreError(f"Cannot open the store folder {settings.store_dir} ({exc}). Check RAG_STORE_DIR.") from None


def store_location(settings: Settings) -> str:
    """Where the store lives, for messages."""
    return settings.chroma_url or str(settings.store_dir)


def open_collection(settings: Settings, embedder_name: str, dimension: int, *, create: bool, client=None):
    """The collection, created if asked, refusing one built with another embedder."""
    client = client or open_client(settings)
    try:
        if create:
            collection = client.get_or_create_collection(
                settings.collection,
                embedding_function=None,
                metadata={"embedder": embedder_name, "dimension": dimension, "hnsw:space": "cosine"},
            )
        else:
            collection = client.get_collection(settings.collection, embedding_function=None)
    except Exception as exc:
        message = str(exc).lower()
        if not create and ("does not exist" in message or "not found" in message):
            raise StoreError(
                f"The store at {store_location(settings)} has no collection {settings.collection!r}. "
                "Run `python -m ingest` first (or `python -m ingest PATH` for your documents)."
            ) from None
        raise StoreError(f"Cannot use the store at {store_location(settings)}: {exc}") from None
    check_embedder(collection, embedder_name, dimension)
    return collection


def check_embedder(collection, embedder_name: str, dimension: int) -> None:
    """Raise if the collection was built with a different embedder or dimension."""
    meta = collection.metadata or {}
    stored_name, stored_dim = meta.get("embedder"), meta.get("dimension")
    if stored_name is None:
        return
    if stored_name != embedder_name or int(stored_dim) != dimension:
        raise EmbedderMismatch(
            f"The store was built with embedder {stored_name!r} ({stored_dim} dims) but RAG_EMBED_MODEL is "
            f"{embedder_name!r} ({dimension} dims). Rebuild it: `python -m ingest --reset PATH ...`, "
            f"or set RAG_EMBED_MODEL={stored_name}."
        )


class LiveCollection:
    """A collection whose view can be renewed: an embedded Chroma keeps a stale view of files another process changed."""

    def __init__(self, collection, settings: Settings | None = None, client=None):
        self.collection, self.settings, self.client = collection, settings, client

    def fresh(self):
        """The collection with its count and metadata read anew (enough to notice a change)."""
        return self.client.get_collection(self.collection.name, embedding_function=None) if self.client else self.collection

    def describe_failure(self, exc: Exception) -> str:
        """What went wrong with the store, and how to fix it when it is a server that is down."""
        if self.settings is not None and self.settings.chroma_url:
            return (
                f"the Chroma server at {self.settings.chroma_url} did not answer ({type(exc).__name__}). "
                "Check that it runs (`chroma run --path DIR --port PORT`) and that RAG_CHROMA_URL points at it."
            )
        return f"the store did not answer ({exc})."

    def reopen(self):
        """Drop this process's cached view of an embedded store and open the collection again."""
        if self.settings is not None and not self.settings.chroma_url:
            from chromadb.api.shared_system_client import SharedSystemClient

            SharedSystemClient.clear_system_cache()
            self.client = open_client(self.settings)
        self.collection = self.fresh()
        return self.collection


def batched(items: list, size: int):
    """Yield consecutive slices of at most size items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
