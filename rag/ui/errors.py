"""Errors as the page says them: what happened and what to do in the user's words, the technical text apart."""
from __future__ import annotations

from dataclasses import dataclass

from rag.llm.backend import Backend
from rag.core.errors import (
    ModelCannotChat,
    ModelNotFound,
    LLMBusy,
    LLMError,
    LLMTimeout,
    LLMUnavailable,
    RagError,
    StreamInterrupted,
)


@dataclass(frozen=True)
class Explained:
    """A headline for the page and, when it adds anything, the full technical message for a collapsed details line."""

    headline: str
    details: str | None = None


def explain(exc: RagError, llm: Backend, model: str) -> Explained:
    """The user's words for an error; the exception's own text (which may quote the model server) becomes the details."""
    box, url = llm.label, llm.url
    if isinstance(exc, StreamInterrupted):
        headline = f"{box} stopped in the middle of the answer; the text above is incomplete. Ask again."
    elif isinstance(exc, ModelNotFound):
        headline = f"The model {exc.model} is not installed in {box}. {get_it(llm, exc.model)}"
    elif isinstance(exc, ModelCannotChat):
        headline = f"The model {model} is an embedding model and cannot chat. Choose a chat model in the sidebar."
    elif isinstance(exc, LLMBusy):
        headline = f"{box} at {url} is busy with other requests. Try again in a moment."
    elif isinstance(exc, LLMTimeout):
        headline = f"{box} at {url} did not answer in time; a large model may still be loading. Try again, or raise RAG_READ_TIMEOUT."
    elif isinstance(exc, LLMUnavailable):
        headline = str(exc)  # the backend's own words: where it looked, and how to start it or point to it
    elif isinstance(exc, LLMError):
        headline = f"{box} at {url} could not answer. Try again; the details say what it reported."
    else:
        headline = str(exc)
    details = str(exc)
    return Explained(headline, None if details == headline else details)


def get_it(llm: Backend, model: str) -> str:
    """How to get a missing model, in the box's own words: the pull button and command, or where to load it."""
    command = llm.install_command(model)
    if llm.can_pull():
        return f"Pull it with the button below, or run `{command}`." if command else "Pull it with the button below."
    return f"Run `{command}`." if command else f"Load it in the server at {llm.url}, or choose another model."
