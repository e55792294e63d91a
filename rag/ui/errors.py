"""Errors as the page says them: what happened and what to do in the user's words, the technical text apart."""
from __future__ import annotations

from dataclasses import dataclass

from rag.core.errors import (
    ModelCannotChat,
    ModelNotFound,
    OllamaBusy,
    OllamaError,
    OllamaTimeout,
    OllamaUnavailable,
    RagError,
    StreamInterrupted,
)


@dataclass(frozen=True)
class Explained:
    """A headline for the page and, when it adds anything, the full technical message for a collapsed details line."""

    headline: str
    details: str | None = None


def explain(exc: RagError, ollama_url: str, model: str) -> Explained:
    """The user's words for an error; the exception's own text (which may quote Ollama) becomes the details."""
    if isinstance(exc, StreamInterrupted):
        headline = "Ollama stopped in the middle of the answer; the text above is incomplete. Ask again."
    elif isinstance(exc, ModelNotFound):
        headline = f"The model {exc.model} is not installed in Ollama. Pull it with the button below, or run `ollama pull {exc.model}`."
    elif isinstance(exc, ModelCannotChat):
        headline = f"The model {model} is an embedding model and cannot chat. Choose a chat model in the sidebar."
    elif isinstance(exc, OllamaBusy):
        headline = f"Ollama at {ollama_url} is busy with other requests. Try again in a moment."
    elif isinstance(exc, OllamaTimeout):
        headline = f"Ollama at {ollama_url} did not answer in time; a large model may still be loading. Try again, or raise RAG_READ_TIMEOUT."
    elif isinstance(exc, OllamaUnavailable) and str(exc).startswith("Cannot reach Ollama"):
        headline = str(exc)
    elif isinstance(exc, OllamaUnavailable):
        headline = f"Ollama does not answer at {ollama_url}. Check that it runs there, or set OLLAMA_HOST to where it runs."
    elif isinstance(exc, OllamaError):
        headline = f"Ollama at {ollama_url} could not answer. Try again; the details say what it reported."
    else:
        headline = str(exc)
    details = str(exc)
    return Explained(headline, None if details == headline else details)
