"""The Ollama client wrapper: list, show, warm, pull and stream chat, with every failure normalised."""
from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

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

BUSY_RETRIES = (0.5, 1.0, 2.0)  # seconds slept after each 503 before trying again; then OllamaBusy
MODELS_NAMED_IN_ERRORS = 5


def normalise_model(name: str) -> str:
    """Add ':latest' to an untagged model name, as Ollama lists it."""
    name = name.strip()
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def same_model(a: str, b: str) -> bool:
    """True when two names denote the same Ollama model (`llama3.2` == `llama3.2:latest`)."""
    return normalise_model(a) == normalise_model(b)


@dataclass
class ChatStats:
    """What Ollama reported at the end of a streamed answer."""

    prompt_eval_count: int = 0
    eval_count: int = 0
    eval_duration_ns: int = 0
    load_duration_ns: int = 0
    done_reason: str = ""
    prompt_eval_duration_ns: int = 0
    total_duration_ns: int = 0

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


@dataclass(frozen=True)
class ModelInfo:
    """What /api/show says about a model that matters here."""

    context_length: int | None
    capabilities: tuple[str, ...] = field(default=())

    @property
    def can_chat(self) -> bool:
        """False only when Ollama says the model cannot complete text (an embedding model)."""
        return not self.capabilities or "completion" in self.capabilities


_MODEL_INFO: dict[tuple[str, str], ModelInfo] = {}  # (server url, tagged model) -> info, for the whole process
_MODEL_INFO_LOCK = threading.Lock()


def forget_model_info() -> None:
    """Drop the per-process cache of /api/show answers (after a model is re-created or pulled)."""
    with _MODEL_INFO_LOCK:
        _MODEL_INFO.clear()


class Ollama:
    """One Ollama server, reached with fast connects and patient reads."""

    def __init__(self, settings: Settings):
        self.url = _parse_host(settings.ollama_host)
        self.keep_alive = settings.keep_alive
        self.read_timeout = settings.read_timeout
        self.connect_timeout = settings.connect_timeout
        self.busy_retries = BUSY_RETRIES

    @functools.cached_property
    def client(self) -> ollama.Client:
        """The HTTP client, made on first use (building its TLS context takes tens of milliseconds)."""
        return ollama.Client(host=self.url, timeout=httpx.Timeout(self.read_timeout, connect=self.connect_timeout))

    def list_models(self) -> list[str]:
        """Names of the installed models, tagged."""
        with self.translated(""):
            return sorted(normalise_model(m.model) for m in self.client.list().models if m.model)

    def has_model(self, model: str) -> bool:
        """True when the model is installed, whether or not its name carries a tag."""
        return normalise_model(model) in self.list_models()

    def model_info(self, model: str) -> ModelInfo:
        """The model's trained context length and capabilities, from /api/show, asked once per process."""
        key = (self.url, normalise_model(model))
        info = _MODEL_INFO.get(key)
        if info is None:
            with self.translated(model):
                shown = self.client.show(model)
            context = next(
                (int(v) for k, v in (shown.modelinfo or {}).items() if k.endswith(".context_length") and v), None
            )
            info = ModelInfo(context, tuple(shown.capabilities or ()))
            with _MODEL_INFO_LOCK:
                _MODEL_INFO[key] = info
        return info

    def context_length(self, model: str) -> int | None:
        """The model's trained context length, from /api/show."""
        return self.model_info(model).context_length

    def num_ctx(self, model: str, wanted: int) -> int:
        """The context window to run the model with: the wanted size, capped by what the model was trained on."""
        trained = self.model_info(model).context_length
        return min(wanted, trained) if trained else wanted

    def warm(self, model: str, num_ctx: int) -> None:
        """Load the model now (an empty chat), so the first question does not wait for it."""
        with self.translated(model):
            self.client.chat(model=model, messages=[], keep_alive=self.keep_alive, options={"num_ctx": num_ctx})

    def pull(self, model: str) -> Iterator[PullProgress]:
        """Pull a model, yielding its progress."""
        with self.translated(model, action="pull"):
            for step in self.client.pull(model, stream=True):
                yield PullProgress(step.status or "", step.completed or 0, step.total or 0)
        with _MODEL_INFO_LOCK:
            _MODEL_INFO.pop((self.url, normalise_model(model)), None)

    def stream_chat(self, model: str, messages: list[dict], options: dict, stats: ChatStats) -> Iterator[str]:
        """Stream the answer's text; stats is filled from the final chunk; 503s are retried before the first token."""
        for delay in (*self.busy_retries, None):
            started = False
            stream = None
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
                            record_stats(stats, chunk)
                    return
            except OllamaBusy:
                if delay is None:
                    raise
                time.sleep(delay)
            finally:
                if stream is not None:
                    stream.close()  # a reader that stops early also stops Ollama generating

    def cannot_chat(self, model: str) -> ModelCannotChat:
        """The error for an embedding-only model chosen for chat."""
        return ModelCannotChat(
            f"Model {model!r} cannot chat (it is an embedding model). Choose a chat model with --model or "
            f"RAG_MODEL{self.installed_hint(', e.g. ')}."
        )

    def installed_hint(self, lead: str = ", or choose one of: ") -> str:
        """A few installed chat model names to suggest, or nothing when they cannot be listed."""
        with contextlib.suppress(Exception):
            chat = [
                m.model for m in self.client.list().models
                if m.model and "embed" not in m.model and "bert" not in ((m.details and m.details.family) or "")
            ][:MODELS_NAMED_IN_ERRORS]
            if chat:
                return lead + ", ".join(chat)
        return ""

    def translated(self, model: str, partial=lambda: False, action: str = "chat"):
        """A context that turns client and transport errors into our errors."""
        return _Translate(self, model, partial, action)


def record_stats(stats: ChatStats, chunk) -> None:
    """Copy the final chunk's counts and durations into stats."""
    stats.prompt_eval_count = chunk.prompt_eval_count or 0
    stats.eval_count = chunk.eval_count or 0
    stats.eval_duration_ns = chunk.eval_duration or 0
    stats.load_duration_ns = chunk.load_duration or 0
    stats.prompt_eval_duration_ns = chunk.prompt_eval_duration or 0
    stats.total_duration_ns = chunk.total_duration or 0
    stats.done_reason = chunk.done_reason or ""


class _Translate:
    """Maps ollama/httpx exceptions to domain errors with fix-it messages."""

    def __init__(self, llm: Ollama, model: str, partial, action: str):
        self.llm, self.model, self.partial, self.action = llm, model, partial, action

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None or isinstance(exc, (OllamaError, GeneratorExit)):
            return False
        translated = self.translate(exc)
        if translated is exc:
            return False
        raise translated from None

    def translate(self, exc: BaseException) -> BaseException:
        url, model = self.llm.url, self.model
        if isinstance(exc, ollama.ResponseError):
            message = exc.error or str(exc)
            if self.action == "pull":
                if exc.status_code == 503:
                    return OllamaBusy(f"Ollama at {url} is busy ({message}). Try again in a moment.")
                return OllamaError(f"Pulling {model!r} from Ollama at {url} failed: {message}")
            if exc.status_code == -1 or self.partial():
                return StreamInterrupted(
                    f"Ollama stopped in the middle of the answer ({message}); the text above is incomplete. Ask again."
                )
            if exc.status_code == 404 and not (model and message.startswith("model ")):
                return OllamaUnavailable(
                    f"The server at {url} is not Ollama (it answered 404: {message[:80]}). "
                    "Set OLLAMA_HOST to where Ollama runs (default 127.0.0.1:11434)."
                )
            if exc.status_code == 404:
                return ModelNotFound(
                    f"Model {model!r} is not installed in Ollama at {url}. Run `ollama pull {model}`"
                    f"{self.llm.installed_hint()}.",
                    model,
                )
            if exc.status_code == 400 and "does not support" in message:
                return self.llm.cannot_chat(model)
            if exc.status_code == 503:
                return OllamaBusy(
                    f"Ollama at {url} is still busy after {len(self.llm.busy_retries) + 1} tries ({message}). "
                    "Wait for other requests to finish, or raise OLLAMA_NUM_PARALLEL / OLLAMA_MAX_QUEUE, then try again."
                )
            return OllamaError(f"Ollama at {url} answered {exc.status_code}: {message}")
        if isinstance(exc, (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout)):
            return OllamaTimeout(
                f"Ollama at {url} sent nothing for {self.llm.read_timeout:g} s (a large model may still be loading). "
                "Try again, or raise RAG_READ_TIMEOUT."
            )
        if self.partial() and isinstance(exc, httpx.TransportError):
            return StreamInterrupted(
                f"The connection to Ollama at {url} broke in the middle of the answer ({type(exc).__name__}); "
                "the text above is incomplete. Ask again."
            )
        if isinstance(exc, httpx.ConnectTimeout):
            return OllamaUnavailable(
                f"Ollama at {url} did not accept a connection within {self.llm.connect_timeout:g} s. "
                "Check OLLAMA_HOST and that the host is up (Docker/WSL: publish port 11434 and bind 0.0.0.0)."
            )
        if isinstance(exc, (httpx.TransportError, ConnectionError)):
            return OllamaUnavailable(
                f"Cannot reach Ollama at {url}. Start it (`ollama serve` or the desktop app), "
                "or set OLLAMA_HOST to where it runs."
            )
        return exc
