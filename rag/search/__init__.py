"""From a question to ranked passages: the embedder, BM25, the in-memory chunk index and the retriever."""
