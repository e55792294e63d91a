"""Builds the shared objects every entry point needs from the settings."""
from __future__ import annotations

import threading

from rag.search.embeddings import embedder_options, load_embedder_in_background, variant_of
from rag.core.errors import StoreError
from rag.search.index_cache import ChunkIndexCache, read_ahead
from rag.search.index_file import index_path
from rag.search.retrieval import Retriever
from rag.core.settings import Settings, index_folder
from rag.store.chroma import LiveCollection, check_embedder, chroma_call, open_client, open_collection, store_location


def open_index(settings: Settings) -> tuple[object, LiveCollection, ChunkIndexCache]:
    """The collection and its chunk index cache, the saved index being read while Chroma is imported and opened."""
    path = index_path(index_folder(settings), store_location(settings), settings.collection)
    preread = read_ahead(path)
    client = open_client(settings, create=False)
    collection = open_collection(settings, settings.embed_model, None, create=False, client=client,
                                 variant=variant_of(settings.embed_runtime))
    live = LiveCollection(collection, settings, client)
    try:  # Chroma's first read of a large store is slow (0.3 s at 100,000 chunks): paid here, while the file loads
        with chroma_call():
            collection.count()
    except Exception as exc:  # a damaged database may make Chroma's core panic here
        raise StoreError(live.describe_failure(exc)) from None
    return collection, live, ChunkIndexCache(live, path, preread)


class RetrieverLoader:
    """Opens the store while the embedder loads; then loads the chunk index, still in parallel with the embedder."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.embedder = load_embedder_in_background(settings.embed_model, **embedder_options(settings))
        self.collection, self.live, self.index = open_index(settings)

    @property
    def embedder_loading(self) -> bool:
        """True while the embedder is still loading."""
        return not self.embedder.done()

    def load(self) -> Retriever:
        """The retriever, once the embedder and the chunk index are both ready."""
        failure: list[BaseException] = []

        def load_index():
            try:
                self.index.get()
            except BaseException as exc:  # re-raised below, in the caller's thread
                failure.append(exc)

        indexing = threading.Thread(target=load_index, name="load-chunk-index")
        indexing.start()
        embedder = self.embedder.result()
        try:
            with chroma_call():  # it reads a vector: a damaged database may make Chroma's core panic here
                check_embedder(self.collection, embedder.name, embedder.dimension, embedder.variant)
        finally:
            indexing.join()
        if failure:
            raise failure[0]
        settings = self.settings
        return Retriever(self.collection, embedder, settings.retrieval_mode, settings.dense_weight, live=self.live, index=self.index)


def open_retriever(settings: Settings) -> Retriever:
    """A retriever over the configured collection with the configured embedder and search mode, its index loaded."""
    return RetrieverLoader(settings).load()
