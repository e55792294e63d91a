"""The Ollama client wrapper: list, show, warm, pull and stream chat, with every failure normalised."""
from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx

from rag.core.errors import (
    ModelCannotChat,
    ModelNotFound,
    OllamaBusy,
    OllamaError,
    OllamaTimeout,
    OllamaUnavailable,
    StreamInterrupted,
)
from rag.core.settings import Settings

BUSY_RETRIES = (0.5, 1.0, 2.0)  # seconds slept after each 503 before trying again; then OllamaBusy
MODELS_NAMED_IN_ERRORS = 5
MAX_MODEL_NAME = 200  # longer names in /api/tags are not models anyone typed; they are left out
CHARS_PER_TOKEN_MAX = 32  # an answer longer than num_predict x this many characters is cut, whatever the server says
SERVER_TEXT_SHOWN = 160  # characters of a server's error text or reply quoted in a message
# Importing the ollama package builds a default client from the OLLAMA_HOST environment variable (and raises on a bad
# one), so it is imported on first use, after Settings has checked OLLAMA_HOST.


def server_text(text: object) -> str:
    """A server's error text or reply, on one line and short enough to quote."""
    text = " ".join(str(text).split())
    if text[:9].lower().startswith(("<!doctype", "<html")):
        return "an HTML page"
    return text if len(text) <= SERVER_TEXT_SHOWN else text[: SERVER_TEXT_SHOWN - 1] + "…"


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
        from ollama._client import _parse_host

        self.url = _parse_host(settings.ollama_host)
        self.max_models = settings.max_models
        self.keep_alive = settings.keep_alive
        self.read_timeout = settings.read_timeout
        self.connect_timeout = settings.connect_timeout
        self.busy_retries = BUSY_RETRIES

    @functools.cached_property
    def client(self):
        """The ollama.Client, made on first use (building its TLS context takes tens of milliseconds)."""
        import ollama

        return ollama.Client(host=self.url, timeout=httpx.Timeout(self.read_timeout, connect=self.connect_timeout))

    def installed(self) -> set[str]:
        """Names of every installed model, tagged."""
        with self.translated(""):
            listed = self.client.list().models
        return {normalise_model(m.model) for m in listed if m.model and len(m.model) <= MAX_MODEL_NAME}

    def list_models(self) -> list[str]:
        """Names of the installed models, tagged, sorted, at most RAG_MAX_MODELS of them."""
        return sorted(self.installed())[: self.max_models]

    def has_model(self, model: str) -> bool:
        """True when the model is installed, whether or not its name carries a tag."""
        return normalise_model(model) in self.installed()

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
        """Stream the answer's text; stats is filled from the final chunk; 503s are retried before the first token.

        The answer is cut at options["num_predict"] pieces (Ollama sends a token per piece), or at CHARS_PER_TOKEN_MAX
        characters per token, even when the server ignores the limit: stats.done_reason is then "length".
        """
        budget = AnswerBudget(options.get("num_predict"))
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
                            text = budget.take(chunk.message.content)
                            if text:
                                yield text
                            if budget.spent:
                                stats.done_reason, stats.eval_count = "length", budget.pieces
                                return
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


class AnswerBudget:
    """How much of an answer may still be taken: num_predict pieces and CHARS_PER_TOKEN_MAX characters a token."""

    def __init__(self, num_predict: int | None):
        self.pieces_left = num_predict if num_predict is not None and num_predict >= 0 else None
        self.chars_left = None if self.pieces_left is None else self.pieces_left * CHARS_PER_TOKEN_MAX
        self.pieces = 0
        self.spent = False

    def take(self, text: str) -> str:
        """The part of a piece that fits; spent turns True once a piece went over the limit."""
        if self.pieces_left is None:
            return text
        if self.pieces_left == 0:
            self.spent = True
            return ""
        self.pieces_left -= 1
        self.pieces += 1
        if len(text) > self.chars_left:
            text, self.spent = text[: self.chars_left], True
        self.chars_left -= len(text)
        return text


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
        import ollama

        url, model = self.llm.url, self.model
        if isinstance(exc, ollama.ResponseError):
            message = server_text(exc.error or str(exc))
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
        if isinstance(exc, (ValueError, TypeError, AttributeError)):  # not JSON, or JSON not shaped as Ollama's
            return self.not_ollama(exc)
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

    def not_ollama(self, exc: BaseException) -> OllamaError:
        """A reply that is not Ollama's JSON: mid-answer it broke the answer off, before it the server is not Ollama."""
        sent = getattr(exc, "doc", None)
        shown = server_text(sent) if sent else ""
        what = shown if shown in ("", "an HTML page") else repr(shown)
        what = what or f"a reply shaped unlike Ollama's, {type(exc).__name__}"
        if self.partial():
            return StreamInterrupted(
                f"Ollama's reply broke off in the middle of the answer: it sent something that is not Ollama's JSON "
                f"({what}); the text above is incomplete. Ask again."
            )
        return OllamaUnavailable(
            f"The server at {self.llm.url} did not answer as Ollama does (it sent {what}). "
            "Set OLLAMA_HOST to where Ollama runs (default 127.0.0.1:11434)."
        )
