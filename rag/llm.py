"""The Ollama client wrapper: list, show, warm, pull and stream chat, with every failure normalised."""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import ollama
from ollama._client import _parse_host

from rag.errors import (
    ModelCannotChat,
    ModelNotFound,
    OllamaBusy,
    OllamaError,
    OllamaTimeout,
    OllamaUnavailable,
    StreamInterrupted,
)
from rag.settings import Settings

BUSY_RETRIES = (0.5, 1.0, 2.0)


def normalise_model(name: str) -> str:
    """Add ':latest' to an untagged model name, as Ollama lists it."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


@dataclass
class ChatStats:
    """What Ollama reported at the end of a streamed answer."""

    prompt_eval_count: int = 0
    eval_count: int = 0
    eval_duration_ns: int = 0
    load_duration_ns: int = 0
    done_reason: str = ""

    @property
    def tokens_per_second(self) -> float:
        """Generation speed."""
        return self.eval_count / self.eval_duration_ns * 1e9 if self.eval_duration_ns else 0.0


@dataclass
class PullProgress:
    """One step of a model pull."""

    status: str
    completed: int = 0
    total: int = 0


class Ollama:
    """One Ollama server, reached with fast connects and patient reads."""

    def __init__(self, settings: Settings):
        self.url = _parse_host(settings.ollama_host)
        self.keep_alive = settings.keep_alive
        self.read_timeout = settings.read_timeout
        self.client = ollama.Client(
            host=self.url, timeout=httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout)
        )

    def list_models(self) -> list[str]:
        """Names of the installed models, tagged."""
        with self.translated(""):
            return sorted(normalise_model(m.model) for m in self.client.list().models if m.model)

    def context_length(self, model: str) -> int | None:
        """The model's trained context length, from /api/show."""
        with self.translated(model):
            info = self.client.show(model).modelinfo or {}
        return next((int(v) for k, v in info.items() if k.endswith(".context_length")), None)

    def warm(self, model: str, num_ctx: int) -> None:
        """Load the model now (an empty chat), so the first question does not wait for it."""
        with self.translated(model):
            self.client.chat(model=model, messages=[], keep_alive=self.keep_alive, options={"num_ctx": num_ctx})

    def pull(self, model: str) -> Iterator[PullProgress]:
        """Pull a model, yielding its progress."""
        with self.translated(model):
            for step in self.client.pull(model, stream=True):
                yield PullProgress(step.status or "", step.completed or 0, step.total or 0)

    def stream_chat(self, model: str, messages: list[dict], options: dict, stats: ChatStats) -> Iterator[str]:
        """Stream the answer's text; stats is filled from the final chunk; 503s are retried before the first token."""
        for delay in (*BUSY_RETRIES, None):
            started = False
            try:
                with self.translated(model, partial=lambda: started):
                    stream = self.client.chat(
                        model=model, messages=messages, options=options, keep_alive=self.keep_alive, stream=True
                    )
                    for chunk in stream:
                        started = True
                        if chunk.message and chunk.message.content:
                            yield chunk.message.content
                        if chunk.done:
                            stats.prompt_eval_count = chunk.prompt_eval_count or 0
                            stats.eval_count = chunk.eval_count or 0
                            stats.eval_duration_ns = chunk.eval_duration or 0
                            stats.load_duration_ns = chunk.load_duration or 0
                            stats.done_reason = chunk.done_reason or ""
                    return
            except OllamaBusy:
                if delay is None:
                    raise
                time.sleep(delay)

    def translated(self, model: str, partial=lambda: False):
        """A context that turns client and transport errors into our errors."""
        return _Translate(self, model, partial)


class _Translate:
    """Maps ollama/httpx exceptions to domain errors with fix-it messages."""

    def __init__(self, llm: Ollama, model: str, partial):
        self.llm, self.model, self.partial = llm, model, partial

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None or isinstance(exc, (OllamaError, GeneratorExit)):
            return False
        raise self.translate(exc) from None

    def translate(self, exc: BaseException) -> Exception:
        url, model = self.llm.url, self.model
        if isinstance(exc, ollama.ResponseError):
            message = exc.error or str(exc)
            if exc.status_code == -1 or self.partial():
                return StreamInterrupted(f"Ollama stopped in the middle of the answer: {message}")
            if exc.status_code == 404:
                return ModelNotFound(
                    f"Model {model!r} is not installed in Ollama at {url}. Run `ollama pull {model}` "
                    "or choose an installed model.",
                    model,
                )
            if exc.status_code == 400 and "does not support" in message:
                return ModelCannotChat(f"Model {model!r} cannot chat (it is an embedding model). Choose a chat model.")
            if exc.status_code == 503:
                return OllamaBusy(f"Ollama at {url} is busy ({message}). Try again in a moment.")
            return OllamaError(f"Ollama at {url} answered {exc.status_code}: {message}")
        if isinstance(exc, (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout)):
            return OllamaTimeout(
                f"Ollama at {url} did not answer within {self.llm.read_timeout:.0f} s (a large model may still be "
                "loading). Try again, or raise RAG_READ_TIMEOUT."
            )
        if self.partial() and isinstance(exc, httpx.TransportError):
            return StreamInterrupted(f"The connection to Ollama at {url} broke in the middle of the answer ({exc}).")
        if isinstance(exc, (httpx.TransportError, ConnectionError)):
            return OllamaUnavailable(
                f"Cannot reach Ollama at {url}. Start it (`ollama serve` or the desktop app), "
                "or set OLLAMA_HOST to where it runs."
            )
        return exc
