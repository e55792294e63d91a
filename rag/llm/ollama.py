"""The Ollama backend of the LLM box: list, show, warm, pull, residency and streamed chat over the official client.

Every Ollama-only concept (/api/show, /api/ps, num_ctx, keep_alive, ':latest', pulls) lives here; every failure of the
client or the transport becomes one of the errors of rag.core.errors, worded with Ollama's fix.
"""
from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Iterator

import httpx

from rag.llm.backend import (
    AnswerBudget,
    ChatOptions,
    ChatUsage,
    LoadedModel,
    ModelEntry,
    ModelInfo,
    PullProgress,
    Watchdog,
    tls_context,
)
from rag.core.errors import (
    ModelCannotChat,
    ModelNotFound,
    LLMBusy,
    LLMError,
    LLMTimeout,
    LLMUnavailable,
    StreamInterrupted,
    raised_within,
)
from rag.core.settings import Settings

BUSY_RETRIES = (0.5, 1.0, 2.0)  # seconds slept after each 503 before trying again; then LLMBusy
MODELS_NAMED_IN_ERRORS = 5
MAX_MODEL_NAME = 200  # longer names in /api/tags are not models anyone typed; they are left out
MISSING_MANIFEST = "file does not exist"  # what Ollama says when its library has no such model
EMBEDDING_FAMILIES = ("bert",)
WIRE_PACKAGES = ("ollama", "pydantic", "pydantic_core", "json")  # the code that reads Ollama's replies: its errors are the reply's  # model families that only embed (nomic-bert, bert): never offered for chat
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


_MODEL_INFO: dict[tuple[str, str], ModelInfo] = {}  # (server url, tagged model) -> info, for the whole process
_MODEL_INFO_LOCK = threading.Lock()


def forget_model_info() -> None:
    """Drop the per-process cache of /api/show answers (after a model is re-created or pulled)."""
    with _MODEL_INFO_LOCK:
        _MODEL_INFO.clear()


class Ollama:
    """One Ollama server, reached with fast connects and patient reads."""

    kind = "ollama"
    label = "Ollama"

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
        """The ollama.Client for short requests, made on first use."""
        return self.new_client()

    def new_client(self):
        """An ollama.Client of its own (cheap: the TLS context is made once per process)."""
        import ollama

        return ollama.Client(
            host=self.url, timeout=httpx.Timeout(self.read_timeout, connect=self.connect_timeout), verify=tls_context()
        )

    def list_models(self) -> list[ModelEntry]:
        """The installed models (/api/tags), tagged, sorted, at most RAG_MAX_MODELS of them."""
        with self.translated(""):
            listed = self.client.list().models
        entries = {}
        for model in listed:
            if not model.model or len(model.model) > MAX_MODEL_NAME:
                continue
            details = model.details
            family = (details.family if details else "") or ""
            name = normalise_model(model.model)
            entries[name] = ModelEntry(
                name, not any(kind in family for kind in EMBEDDING_FAMILIES), model.size,
                (details.parameter_size if details else "") or "", (details.quantization_level if details else "") or "",
            )
        return [entries[name] for name in sorted(entries)][: self.max_models]

    def canonical(self, model: str) -> str:
        """The name Ollama lists a model under: tagged, ':latest' when no tag is given."""
        return normalise_model(model)

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
            capabilities = tuple(shown.capabilities or ())
            info = ModelInfo(context, not capabilities or "completion" in capabilities)
            with _MODEL_INFO_LOCK:
                _MODEL_INFO[key] = info
        return info

    def warm(self, model: str, context: int) -> None:
        """Load the model now (an empty chat), so the first question does not wait for it."""
        with self.translated(model):
            self.client.chat(model=model, messages=[], keep_alive=self.keep_alive, options={"num_ctx": context})

    def can_pull(self) -> bool:
        """Ollama downloads models from its library on request."""
        return True

    def loaded(self) -> list[LoadedModel]:
        """The models Ollama holds in memory now (/api/ps), with how much of each is in GPU memory."""
        with self.translated(""):
            running = self.client.ps().models
        return [LoadedModel(normalise_model(m.model), m.size, m.size_vram) for m in running if m.model]

    def box_of(self, model: str):
        """This box serves every model asked of it."""
        return self

    def down_boxes(self) -> list[str]:
        """One box: its failures are raised, not noted."""
        return []

    def pull(self, model: str) -> Iterator[PullProgress]:
        """Pull a model from Ollama's library, yielding its progress; a pull that did not finish raises LLMError."""
        finished = False
        try:
            with self.translated(model, action="pull"):
                for step in self.client.pull(model, stream=True):
                    finished = finished or step.status == "success"
                    yield PullProgress(step.status or "", step.completed or 0, step.total or 0)
        except (LLMUnavailable, LLMBusy, LLMTimeout):
            raise
        except LLMError as exc:
            if MISSING_MANIFEST in str(exc) or "not found" in str(exc):
                raise LLMError(
                    f"Ollama has no model called {model!r}. Check the name and tag at https://ollama.com/library "
                    "(e.g. llama3.2:3b)."
                ) from None
            raise
        if not finished:
            raise LLMError(f"Pulling {model!r} stopped before it finished. Try again.")
        with _MODEL_INFO_LOCK:
            _MODEL_INFO.pop((self.url, normalise_model(model)), None)

    def stream_chat(self, model: str, messages: list[dict], options: ChatOptions, usage: ChatUsage) -> Iterator[str]:
        """Stream the answer's text; usage is filled from the final chunk; 503s are retried before the first token.

        The answer is cut at options.max_tokens pieces (Ollama sends a token per piece), or at CHARS_PER_TOKEN_MAX
        characters per token, even when the server ignores the limit: usage.finish_reason is then "length".
        """
        budget = AnswerBudget(options.max_tokens)
        wire = {"num_ctx": options.context, "temperature": options.temperature}
        if options.max_tokens is not None:
            wire["num_predict"] = options.max_tokens
        for delay in (*self.busy_retries, None):
            started = False
            stream = None
            client = self.new_client()  # its own connection, which the watchdog may close
            watchdog = Watchdog(self.read_timeout, client.close)
            try:
                with self.translated(model, partial=lambda: started, watchdog=watchdog):
                    stream = client.chat(
                        model=model, messages=messages, options=wire, keep_alive=self.keep_alive, stream=True
                    )
                    for chunk in stream:
                        started = True
                        if watchdog.fired:
                            raise self.silent()
                        if chunk.message and chunk.message.content:
                            text = budget.take(chunk.message.content)
                            if text:
                                watchdog.saw_text()
                                yield text
                            if budget.spent:
                                usage.finish_reason, usage.generated_tokens = "length", budget.pieces
                                return
                        if chunk.done:
                            record_usage(usage, chunk)
                    return
            except LLMBusy:
                if delay is None:
                    raise
                time.sleep(delay)
            finally:
                watchdog.end()
                if stream is not None:
                    stream.close()  # a reader that stops early also stops Ollama generating
                client.close()

    def cannot_chat(self, model: str) -> ModelCannotChat:
        """The error for an embedding-only model chosen for chat."""
        return ModelCannotChat(
            f"Model {model!r} cannot chat (it is an embedding model). Choose a chat model with --model or "
            f"RAG_MODEL{self.installed_hint(', e.g. ')}."
        )

    def not_installed(self, model: str) -> ModelNotFound:
        """The error for a model Ollama does not have, with the command that pulls it and models it has."""
        return ModelNotFound(
            f"Model {model!r} is not installed in Ollama at {self.url}. Run `{self.install_command(model)}`"
            f"{self.installed_hint()}.",
            model,
        )

    def install_command(self, model: str) -> str:
        """The command that downloads a model into Ollama."""
        return f"ollama pull {model}"

    def installed_hint(self, lead: str = ", or choose one of: ") -> str:
        """A few installed chat model names to suggest, or nothing when they cannot be listed."""
        with contextlib.suppress(LLMError):
            chat = [entry.name for entry in self.list_models() if entry.can_chat][:MODELS_NAMED_IN_ERRORS]
            if chat:
                return lead + ", ".join(chat)
        return ""

    def silent(self) -> LLMTimeout:
        """The error for a stream that showed no answer text for RAG_READ_TIMEOUT (empty pieces, only thinking, a trickle)."""
        return LLMTimeout(
            f"Ollama at {self.url} sent no answer text for {self.read_timeout:g} s (a large model may still be loading). "
            "Try again, or raise RAG_READ_TIMEOUT."
        )

    def translated(self, model: str, partial=lambda: False, action: str = "chat", watchdog: Watchdog | None = None):
        """A context that turns client and transport errors into our errors."""
        return _Translate(self, model, partial, action, watchdog)


def record_usage(usage: ChatUsage, chunk) -> None:
    """Copy the final chunk's counts and durations (nanoseconds) into usage."""
    usage.prompt_tokens = chunk.prompt_eval_count or 0
    usage.generated_tokens = chunk.eval_count or 0
    usage.finish_reason = chunk.done_reason or ""
    usage.load_seconds = seconds(chunk.load_duration)
    usage.prompt_seconds = seconds(chunk.prompt_eval_duration)
    usage.generation_seconds = seconds(chunk.eval_duration)


def seconds(nanoseconds: int | None) -> float | None:
    """A duration Ollama gave in nanoseconds, in seconds; None when it gave none."""
    return nanoseconds / 1e9 if nanoseconds else None


class _Translate:
    """Maps ollama/httpx exceptions to domain errors with fix-it messages."""

    def __init__(self, llm: Ollama, model: str, partial, action: str, watchdog: Watchdog | None):
        self.llm, self.model, self.partial, self.action, self.watchdog = llm, model, partial, action, watchdog

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None or isinstance(exc, (LLMError, GeneratorExit)):
            return False
        translated = self.translate(exc)
        if translated is exc:
            return False
        raise translated from None

    def translate(self, exc: BaseException) -> BaseException:
        import ollama

        url, model = self.llm.url, self.model
        if self.watchdog is not None and (self.watchdog.fired or isinstance(exc, httpx.ReadTimeout)):
            return self.llm.silent()  # the deadline passed (the watchdog's, or httpx's own while nothing came)
        if isinstance(exc, ollama.ResponseError):
            message = server_text(exc.error or str(exc))
            if self.action == "pull":
                if exc.status_code == 503:
                    return LLMBusy(f"Ollama at {url} is busy ({message}). Try again in a moment.")
                return LLMError(f"Pulling {model!r} from Ollama at {url} failed: {message}")
            if exc.status_code == -1 or self.partial():
                return StreamInterrupted(
                    f"Ollama stopped in the middle of the answer ({message}); the text above is incomplete. Ask again."
                )
            if exc.status_code == 404 and not (model and message.startswith("model ")):
                return LLMUnavailable(
                    f"The server at {url} is not Ollama (it answered 404: {message[:80]}). "
                    "Set OLLAMA_HOST to where Ollama runs (default 127.0.0.1:11434)."
                )
            if exc.status_code == 404:
                return self.llm.not_installed(model)
            if exc.status_code == 400 and "does not support" in message:
                return self.llm.cannot_chat(model)
            if exc.status_code == 503:
                return LLMBusy(
                    f"Ollama at {url} is still busy after {len(self.llm.busy_retries) + 1} tries ({message}). "
                    "Wait for other requests to finish, or raise OLLAMA_NUM_PARALLEL / OLLAMA_MAX_QUEUE, then try again."
                )
            return LLMError(f"Ollama at {url} answered {exc.status_code}: {message}")
        if isinstance(exc, (ValueError, TypeError, AttributeError)) and raised_within(exc, WIRE_PACKAGES):
            return self.not_ollama(exc)  # not JSON, or JSON not shaped as Ollama's
        if isinstance(exc, (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout)):
            return LLMTimeout(
                f"Ollama at {url} sent nothing for {self.llm.read_timeout:g} s (a large model may still be loading). "
                "Try again, or raise RAG_READ_TIMEOUT."
            )
        if self.partial() and isinstance(exc, httpx.TransportError):
            return StreamInterrupted(
                f"The connection to Ollama at {url} broke in the middle of the answer ({type(exc).__name__}); "
                "the text above is incomplete. Ask again."
            )
        if isinstance(exc, httpx.ConnectTimeout):
            return LLMUnavailable(
                f"Ollama at {url} did not accept a connection within {self.llm.connect_timeout:g} s. "
                "Check OLLAMA_HOST and that the host is up (Docker/WSL: publish port 11434 and bind 0.0.0.0)."
            )
        if isinstance(exc, (httpx.TransportError, ConnectionError)):
            return LLMUnavailable(
                f"Cannot reach Ollama at {url}. Start it (`ollama serve` or the desktop app), "
                "or set OLLAMA_HOST to where it runs."
            )
        return exc

    def not_ollama(self, exc: BaseException) -> LLMError:
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
        return LLMUnavailable(
            f"The server at {self.llm.url} did not answer as Ollama does (it sent {what}). "
            "Set OLLAMA_HOST to where Ollama runs (default 127.0.0.1:11434)."
        )
