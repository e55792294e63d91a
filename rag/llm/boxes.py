"""The LLM box the settings name: today Ollama at OLLAMA_HOST."""
from __future__ import annotations

from rag.core.settings import Settings
from rag.llm.backend import Backend


def open_backend(settings: Settings) -> Backend:
    """The backend that serves the chat models (no request is made until it is used)."""
    from rag.llm.ollama import Ollama

    return Ollama(settings)
