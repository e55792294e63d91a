"""Retrieval-augmented chat over local documents, answered by a model served by Ollama."""
