"""The OpenAI-compatible backend of the LLM box: vLLM, llama.cpp's llama-server, LocalAI, LM Studio, `transformers serve`.

Spoken over httpx (already a dependency, and it lets us read what real servers send: a stream that ends without
[DONE], usage on the last chunk or none, `{"detail": ...}` errors, an HTML page from a proxy) rather than the
`openai` SDK, whose retries and strict parsing would hide those differences. The API key is only ever a header.
"""
from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx

from rag.core.errors import (
    ContextTooLong,
    KeyRefused,
    LLMBusy,
    LLMError,
    LLMTimeout,
    LLMUnavailable,
    ModelCannotChat,
    ModelNotFound,
    StreamInterrupted,
)
from rag.core.settings import Settings
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
from rag.llm.reasoning import ThinkSplitter

BUSY_STATUSES = (429, 503)
BUSY_RETRIES = (0.5, 1.0, 2.0)  # seconds slept after each 429/503 before trying again; then LLMBusy
MODELS_NAMED_IN_ERRORS = 5
MAX_MODEL_NAME = 300
SERVER_TEXT_SHOWN = 160
CONTEXT_WORDS = ("maximum context length", "context length", "context window", "too many tokens", "exceeds the")
START_HINT = "Start it (e.g. `vllm serve MODEL`, `llama-server -m model.gguf`, `lms server start`), or set RAG_OPENAI_URL"

_INFO: dict[tuple[str, str], ModelInfo] = {}  # (server url, model) -> info, for the whole process
_INFO_LOCK = threading.Lock()


def server_text(text: object) -> str:
    """A server's error text, on one line and short enough to quote."""
    text = " ".join(str(text).split())
    if text[:9].lower().startswith(("<!doctype", "<html")):
        return "an HTML page"
    return text if len(text) <= SERVER_TEXT_SHOWN else text[: SERVER_TEXT_SHOWN - 1] + "…"


def error_message(response: httpx.Response) -> str:
    """The message of an error reply: OpenAI's {"error": {"message"}}, FastAPI's {"detail"}, or the body itself."""
    try:
        body = response.json()
    except ValueError:
        return server_text(response.text) or f"HTTP {response.status_code}"
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return server_text(error["message"])
        if isinstance(error, str):
            return server_text(error)
        if body.get("detail"):
            return server_text(body["detail"] if isinstance(body["detail"], str) else json.dumps(body["detail"]))
        if body.get("message"):
            return server_text(body["message"])
    return server_text(response.text)


class OpenAICompatible:
    """One OpenAI-compatible server at RAG_OPENAI_URL (its /v1 base), with fast connects and patient reads."""

    kind = "openai"

    def __init__(self, settings: Settings):
        self.url = settings.openai_url
        parts = urlsplit(self.url)
        self.label = parts.netloc
        self.root = self.url.removesuffix("/v1")
        self.max_models = settings.max_models
        self.read_timeout = settings.read_timeout
        self.connect_timeout = settings.connect_timeout
        self.busy_retries = BUSY_RETRIES
        self.has_key = settings.openai_api_key is not None and bool(settings.openai_api_key.get_secret_value())
        self.headers = {"Authorization": f"Bearer {settings.openai_api_key.get_secret_value()}"} if self.has_key else {}

    @functools.cached_property
    def client(self) -> httpx.Client:
        """The HTTP client for short requests, made on first use."""
        return self.new_client()

    def new_client(self) -> httpx.Client:
        """An HTTP client of its own (cheap: the TLS context is made once per process)."""
        return httpx.Client(
            headers=self.headers, timeout=httpx.Timeout(self.read_timeout, connect=self.connect_timeout),
            follow_redirects=False, verify=tls_context(),
        )

    # ---------- the protocol ----------

    def list_models(self) -> list[ModelEntry]:
        """The models the server serves (/v1/models), sorted, at most RAG_MAX_MODELS of them."""
        entries = self.served()
        return [ModelEntry(name) for name in sorted(entries)][: self.max_models]

    def model_info(self, model: str) -> ModelInfo:
        """The model's context length as the server exposes it (vLLM, llama.cpp, LM Studio), else unknown; asked once."""
        key = (self.url, model)
        info = _INFO.get(key)
        if info is None:
            served = self.served()
            if model not in served:
                raise self.not_installed(model, list(served))
            info = self.discover(model, served[model])
            with _INFO_LOCK:
                _INFO[key] = info
        return info

    def stream_chat(self, model: str, messages: list[dict], options: ChatOptions, usage: ChatUsage) -> Iterator[str]:
        """Stream the answer's text (reasoning kept apart in usage.reasoning); 429/503 are retried before the first token."""
        body = {"model": model, "messages": messages, "stream": True, "temperature": options.temperature,
                "stream_options": {"include_usage": True}}
        if options.max_tokens is not None:
            body["max_tokens"] = options.max_tokens
        for delay in (*self.busy_retries, None):
            try:
                yield from self.stream_once(model, body, options, usage)
                return
            except LLMBusy:
                if delay is None:
                    raise
                time.sleep(delay)

    def warm(self, model: str, context: int) -> None:
        """Nothing to do: an OpenAI-compatible server loads its models itself (LM Studio on the first request)."""

    def canonical(self, model: str) -> str:
        """Model ids are used as the server lists them."""
        return model.strip()

    def cannot_chat(self, model: str) -> ModelCannotChat:
        """The error for an embedding model chosen for chat."""
        return ModelCannotChat(
            f"Model {model!r} at {self.url} cannot chat (it is an embedding model). Choose a chat model with --model or "
            f"RAG_MODEL{self.served_hint(', e.g. ')}."
        )

    def not_installed(self, model: str, served: list[str] | None = None) -> ModelNotFound:
        """The error for a model the server does not serve, naming the ones it does."""
        return ModelNotFound(
            f"Model {model!r} is not served by the server at {self.url}. Load it there (e.g. `vllm serve {model}`), "
            f"or choose another model{self.served_hint(': ', served)}.",
            model,
        )

    def install_command(self, model: str) -> None:
        """An OpenAI-compatible server loads models when it starts (or from its own UI), not on our request."""
        return None

    def can_pull(self) -> bool:
        """No pull: the server's own command or UI loads models."""
        return False

    def pull(self, model: str) -> Iterator[PullProgress]:
        """Refused: say how such a server loads models instead."""
        raise LLMError(f"The server at {self.url} loads models itself: start it with the model (e.g. `vllm serve {model}`).")

    def loaded(self) -> list[LoadedModel]:
        """The server does not say what it holds in memory."""
        return []

    def box_of(self, model: str):
        """This box serves every model asked of it."""
        return self

    def down_boxes(self) -> list[str]:
        """One box: its failures are raised, not noted."""
        return []

    # ---------- the wire ----------

    def served(self) -> dict[str, dict]:
        """Model id -> its /v1/models entry."""
        response = self.request("GET", f"{self.url}/models")
        try:
            data = response.json()["data"]
            return {str(entry["id"]): entry for entry in data if entry.get("id") and len(str(entry["id"])) <= MAX_MODEL_NAME}
        except (ValueError, KeyError, TypeError, AttributeError):
            raise self.not_openai(f"its /v1/models is not a model list ({server_text(response.text)[:80]})") from None

    def served_hint(self, lead: str, served: list[str] | None = None) -> str:
        """A few served model ids to suggest, or nothing when they cannot be listed."""
        try:
            names = sorted(served if served is not None else self.served())[:MODELS_NAMED_IN_ERRORS]
        except LLMError:
            return ""
        return lead + ", ".join(names) if names else ""

    def discover(self, model: str, entry: dict) -> ModelInfo:
        """The context length from vLLM's max_model_len, llama.cpp's /props or LM Studio's /api/v0/models, else None."""
        context = positive(entry.get("max_model_len"))
        if context:
            return ModelInfo(context)
        props = self.optional_json(f"{self.root}/props")
        settings = props.get("default_generation_settings") if isinstance(props, dict) else None
        context = positive(settings.get("n_ctx")) if isinstance(settings, dict) else None
        if context:
            return ModelInfo(context)
        studio = self.optional_json(f"{self.root}/api/v0/models/{model}")
        if isinstance(studio, dict) and studio.get("id"):
            return ModelInfo(positive(studio.get("max_context_length")), studio.get("type") != "embeddings")
        return ModelInfo(None)

    def optional_json(self, url: str) -> object:
        """A JSON reply from an endpoint only some servers have; None when this one has not got it."""
        try:
            response = self.client.get(url)
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        try:
            return response.json()
        except ValueError:
            return None

    def request(self, method: str, url: str) -> httpx.Response:
        """A plain request whose failures become our errors."""
        try:
            response = self.client.request(method, url)
        except httpx.HTTPError as exc:
            raise self.transport_error(exc, started=False) from None
        if response.status_code != 200:
            raise self.status_error(response, "")
        return response

    def stream_once(self, model: str, body: dict, options: ChatOptions, usage: ChatUsage) -> Iterator[str]:
        """One streamed request: the answer's pieces, usage and reasoning filled in as they arrive."""
        answer = AnswerStream(options, usage)
        client = self.new_client()  # its own connection, which the watchdog may close
        watchdog = Watchdog(self.read_timeout, client.close)
        try:
            with client.stream("POST", f"{self.url}/chat/completions", json=body) as response:
                if response.status_code != 200:
                    response.read()
                    raise self.status_error(response, model)
                for chunk in events(response):
                    answer.started = True
                    if watchdog.fired:
                        raise self.silent()
                    if "error" in chunk and not chunk.get("choices"):
                        raise StreamInterrupted(
                            f"The server at {self.url} stopped in the middle of the answer ({error_text(chunk)}); "
                            "the text above is incomplete. Ask again."
                        )
                    for text in answer.read(chunk):
                        watchdog.saw_text()
                        yield text
                    if answer.budget.spent:
                        return
            yield from answer.rest()
        except httpx.HTTPError as exc:
            if watchdog.fired or isinstance(exc, httpx.ReadTimeout):
                raise self.silent() from None
            raise self.transport_error(exc, answer.started) from None
        except (json.JSONDecodeError, UnexpectedReply) as exc:
            if answer.started:
                raise StreamInterrupted(
                    f"The server at {self.url} sent something that is not an OpenAI stream in the middle of the answer "
                    f"({exc}); the text above is incomplete. Ask again."
                ) from None
            raise self.not_openai(f"it sent {exc}") from None
        finally:
            watchdog.end()
            client.close()
            answer.close()

    # ---------- failures in the user's words ----------

    def silent(self) -> LLMTimeout:
        """The error for a stream that showed no answer text for RAG_READ_TIMEOUT (empty pieces, only reasoning, a trickle)."""
        return LLMTimeout(
            f"The server at {self.url} sent no answer text for {self.read_timeout:g} s (a large model may still be "
            "loading). Try again, or raise RAG_READ_TIMEOUT."
        )

    def not_openai(self, what: str) -> LLMUnavailable:
        """The server does not speak the OpenAI API."""
        return LLMUnavailable(
            f"The server at {self.url} is not an OpenAI-compatible server ({what}). Set RAG_OPENAI_URL to its API "
            "base, e.g. http://host:8000/v1."
        )

    def transport_error(self, exc: httpx.HTTPError, started: bool) -> LLMError:
        """A connection that failed, timed out or broke off."""
        if isinstance(exc, (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout)):
            return LLMTimeout(
                f"The server at {self.url} sent nothing for {self.read_timeout:g} s (a large model may still be "
                "loading). Try again, or raise RAG_READ_TIMEOUT."
            )
        if started:
            return StreamInterrupted(
                f"The connection to the server at {self.url} broke in the middle of the answer ({type(exc).__name__}); "
                "the text above is incomplete. Ask again."
            )
        if isinstance(exc, httpx.ConnectTimeout):
            return LLMUnavailable(
                f"The server at {self.url} did not accept a connection within {self.connect_timeout:g} s. "
                "Check RAG_OPENAI_URL and that the host is up."
            )
        return LLMUnavailable(f"Cannot reach the model server at {self.url}. {START_HINT} to where it runs.")

    def status_error(self, response: httpx.Response, model: str) -> LLMError:
        """An error status as the error the user needs, with its fix."""
        status, message = response.status_code, error_message(response)
        if message == "an HTML page":
            return self.not_openai(f"it answered {status} with an HTML page")
        if status in (401, 403):
            key = "the key in RAG_OPENAI_API_KEY" if self.has_key else "no key (RAG_OPENAI_API_KEY is not set)"
            return KeyRefused(
                f"The server at {self.url} refused {key}: {status} {message}. Set RAG_OPENAI_API_KEY to a key it "
                "accepts (vLLM: the --api-key it was started with)."
            )
        if status in BUSY_STATUSES:
            return LLMBusy(
                f"The server at {self.url} is still busy after {len(self.busy_retries) + 1} tries ({status}: {message}). "
                "Wait for other requests to finish, then try again."
            )
        if status == 400 and any(words in message.lower() for words in CONTEXT_WORDS):
            return ContextTooLong(
                f"The question and its sources are longer than {model!r} can read ({message}). Lower top k "
                "(RAG_TOP_K) or RAG_NUM_CTX, or ask a shorter question."
            )
        if status == 404 and not model:
            return self.not_openai(f"it answered 404 to {response.request.url.path}")
        if status in (400, 404) and model and ("model" in message.lower() or "pinned" in message.lower()):
            served = None
            try:
                served = list(self.served())
            except LLMError:
                pass
            if served is not None and model not in served:
                return self.not_installed(model, served)
        return LLMError(f"The server at {self.url} answered {status}: {message}")


class AnswerStream:
    """One streamed answer as its chunks arrive: the text within its budget, reasoning kept apart, usage filled in."""

    def __init__(self, options: ChatOptions, usage: ChatUsage):
        self.budget, self.splitter, self.usage = AnswerBudget(options.max_tokens), ThinkSplitter(), usage
        self.reasoning: list[str] = []
        self.started = False
        self.first: float | None = None
        self.counted = 0

    def read(self, chunk: dict) -> Iterator[str]:
        """The answer text in one chunk (none once the budget is spent); its usage, reasoning and finish reason noted."""
        record_usage(self.usage, chunk.get("usage"))
        for choice in choices(chunk):
            delta = choice.get("delta") or {}
            thought = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(thought, str):
                self.reasoning.append(thought)
            content = delta.get("content")
            if isinstance(content, str) and content and not self.budget.spent:
                self.first = self.first or time.perf_counter()
                self.counted += 1
                text, thought = self.splitter.feed(content)
                self.reasoning.append(thought)
                text = self.budget.take(text) if text else ""
                if text:
                    yield text
                if self.budget.spent:
                    self.usage.finish_reason, self.usage.generated_tokens = "length", self.budget.pieces
                    return
            if choice.get("finish_reason"):
                self.usage.finish_reason = str(choice["finish_reason"])

    def rest(self) -> Iterator[str]:
        """What the reasoning splitter still held when the stream ended."""
        text, thought = self.splitter.flush()
        self.reasoning.append(thought)
        if text and not self.budget.spent:
            yield self.budget.take(text)

    def close(self) -> None:
        """Fill in what only the end tells: the reasoning, the generation time, a token count if none was reported."""
        self.usage.reasoning = "".join(self.reasoning).strip()
        if self.first is not None:
            self.usage.generation_seconds = time.perf_counter() - self.first
        if not self.usage.generated_tokens:
            self.usage.generated_tokens = self.counted


class UnexpectedReply(ValueError):
    """A stream event that is not a JSON object."""


def events(response: httpx.Response) -> Iterator[dict]:
    """The JSON objects of a server-sent event stream; the end of the body (or `data: [DONE]`) ends it."""
    for line in response.iter_lines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        if not data:
            continue
        chunk = json.loads(data)
        if not isinstance(chunk, dict):
            raise UnexpectedReply(f"an event that is not a JSON object: {server_text(data)[:60]}")
        yield chunk


def choices(chunk: dict) -> list[dict]:
    """The choices of a stream chunk, each with a delta object; anything shaped otherwise is not an OpenAI stream."""
    found = chunk.get("choices") or []
    if not isinstance(found, list) or not all(
        isinstance(choice, dict) and isinstance(choice.get("delta") or {}, dict) for choice in found
    ):
        raise UnexpectedReply(f"a chunk shaped unlike OpenAI's: {server_text(json.dumps(chunk))[:60]}")
    return found


def error_text(chunk: dict) -> str:
    """The message of an error event sent in the stream."""
    error = chunk.get("error")
    return server_text(error.get("message", error) if isinstance(error, dict) else error)


def record_usage(usage: ChatUsage, reported: object) -> None:
    """Copy a usage object (on its own chunk, or on the last one) into usage."""
    if isinstance(reported, dict):
        usage.prompt_tokens = positive(reported.get("prompt_tokens")) or 0
        usage.generated_tokens = positive(reported.get("completion_tokens")) or 0


def positive(value: object) -> int | None:
    """A positive integer from a reply, or None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def forget_model_info() -> None:
    """Drop the per-process cache of model facts (after the server was restarted with other models)."""
    with _INFO_LOCK:
        _INFO.clear()
