"""A stand-in OpenAI-compatible model server (vLLM, llama.cpp, LM Studio flavours) on 127.0.0.1, for tests."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from urllib.parse import unquote, urlsplit

from tests.ollama_standin import split_reply
from tests.standin_server import Served, StandinServer

DEFAULT_MODELS = ("Qwen/Qwen2.5-3B-Instruct", "llama-3.2-3b")
REPLY = "The answer is 42 [1]."
REASONING = "The user wants the answer. Document [1] says 42."
FLAVOURS = ("vllm", "llamacpp", "lmstudio", "plain")
OWNERS = {"vllm": "vllm", "llamacpp": "llamacpp", "lmstudio": "organization_owner", "plain": "system"}
CREATED = 1_750_000_000
TOKENS_PER_MESSAGE = 4  # the chat template's markers around each message
CONTEXT_MESSAGE = ("This model's maximum context length is {limit} tokens. However, you requested {total} tokens "
                   "({prompt} in the messages, {completion} in the completion). "
                   "Please reduce the length of the messages or completion.")
MID_STREAM_ERROR = "An error occurred while generating: the engine's KV cache ran out of blocks."
HTML_PAGE = ("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1>"
             "</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
ERRORS = {
    400: {"message": CONTEXT_MESSAGE.format(limit=4096, total=9000, prompt=8000, completion=1000),
          "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"},
    401: {"message": "Invalid API key", "type": "invalid_request_error", "param": None, "code": "invalid_api_key"},
    403: {"message": "You are not allowed to use this model.", "type": "invalid_request_error", "param": None,
          "code": "permission_denied"},
    429: {"message": "Too many requests: the server's queue is full. Please retry later.", "type": "rate_limit_error",
          "param": None, "code": "rate_limit_exceeded"},
    503: {"message": "Loading model", "type": "unavailable_error", "param": None, "code": 503},
}
DONE = "[DONE]"
CUT = object()  # in an event stream: close the socket here, mid-answer


def estimate_prompt_tokens(messages: list[dict]) -> int:
    """Return the stand-in's token count for the messages: their words plus TOKENS_PER_MESSAGE each."""
    return sum(len(_text(m.get("content")).split()) + TOKENS_PER_MESSAGE for m in messages if isinstance(m, dict))


def model_not_found(model: str) -> dict:
    """Return the error object for a model the server does not serve (vLLM's wording)."""
    return {"message": f"The model `{model}` does not exist.", "type": "NotFoundError", "param": "model", "code": 404}


def _text(content: object) -> str:
    """Return a message's text, whether its content is a string or a list of parts."""
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


def _error_object(status: int, model: str | None) -> dict:
    """Return the canonical error object for a status; a 404 names the model when there is one."""
    if status == 404:
        return model_not_found(model) if model else {"message": "Not Found", "type": "NotFoundError",
                                                     "param": None, "code": 404}
    if status in ERRORS:
        return ERRORS[status]
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return {"message": HTTPStatus(status).phrase, "type": kind, "param": None, "code": status}


@dataclass(frozen=True)
class Recorded:
    """One request as the stand-in received it; header names are lower-case."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict | None


@dataclass(frozen=True)
class Answer:
    """A complete HTTP answer."""

    status: int
    body: dict | str
    headers: tuple[tuple[str, str], ...] = ()


class OpenAIStandin(Served):
    """An OpenAI-compatible model server on 127.0.0.1 whose answers and failures tests control."""

    def __init__(self, models=DEFAULT_MODELS, *, flavour="vllm", reply=REPLY, port=0, context_length=32768,
                 embedding_models=(), api_key=None):
        if flavour not in FLAVOURS:
            raise ValueError(f"flavour must be one of {FLAVOURS}, not {flavour!r}")
        self.flavour = flavour
        self.models = list(models)
        self.embedding_models = list(embedding_models)
        self.reply: str | list[str] | Callable[[dict], str] = reply  # a string is split into word-ish pieces
        self.port = port
        self.context_length = context_length  # enforced in every flavour; exposed by all but "plain"
        self.api_key: str | None = api_key  # set: 401 unless "Authorization: Bearer <api_key>"
        # Stream shape.
        self.send_done = True  # False: no "data: [DONE]" at the end (transformers serve)
        self.usage_style = "stream_options"  # or "final_chunk" (always, on the finish_reason chunk) or "never"
        self.finish_alone = False  # True: finish_reason arrives on its own chunk with an empty delta (OpenAI)
        self.reasoning: str | list[str] | None = None  # thinking streamed before the reply
        self.reasoning_style = "reasoning_content"  # or "reasoning" (delta field) or "inline" (<think> in content)
        self.ignore_max_tokens = False
        self.token_delay = 0.0  # seconds between pieces
        self.first_byte_delay = 0.0  # seconds before a chat answer's first byte (a model loading)
        # Failures.
        self.chat_status: int | None = None  # answer every chat request with this status and its error body
        self.models_status: int | None = None  # the same for the model listing and model information routes
        self.busy_responses = 0  # the next N chat requests are answered with busy_status
        self.busy_status = 429
        self.retry_after: str | None = None  # a Retry-After header on busy answers
        self.error_style = "openai"  # or "detail": errors as FastAPI's {"detail": message}
        self.html_page: str | None = None  # answer every request with this page, as a proxy in front would
        self.html_status = 502
        self.cut_after: int | None = None  # close the socket after this many streamed pieces
        self.error_after: int | None = None  # after this many pieces send data: {"error": ...} and end the stream
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._loaded: set[str] = set()  # LM Studio: models loaded by a first chat
        self._ids = itertools.count(1)
        self._server: StandinServer | None = None

    @property
    def url(self) -> str:
        """Return the server's root, "http://127.0.0.1:PORT"."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """Return the OpenAI base URL, "http://127.0.0.1:PORT/v1"."""
        return f"{self.url}/v1"

    def chat_requests(self) -> list[dict | None]:
        """Return the bodies of the chat completion requests received so far."""
        return [r.body for r in self.requests if r.path == "/v1/chat/completions"]

    def handle(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> Answer | Iterator:
        """Record a request; return an Answer or an iterator of stream events (chunks, DONE, CUT)."""
        body = _parse_object(raw)
        with self._lock:
            self.requests.append(Recorded(method, path, headers, body))
        if self.html_page is not None:
            return Answer(self.html_status, self.html_page)
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            return self._error(401)
        if method == "GET" and path == "/v1/models":
            return self._error(self.models_status) if self.models_status else self._list_models()
        if method == "GET" and path == "/props" and self.flavour == "llamacpp":
            return self._error(self.models_status) if self.models_status else self._props()
        if method == "GET" and path == "/health" and self.flavour == "llamacpp":
            return Answer(200, {"status": "ok"})
        if method == "GET" and path.startswith("/api/v0/models") and self.flavour == "lmstudio":
            return self._error(self.models_status) if self.models_status else self._lmstudio(path)
        if method == "POST" and path == "/v1/chat/completions":
            return self._chat(body, raw)
        return Answer(404, {"detail": "Not Found"})

    def _error(self, status: int, model: str | None = None, error: dict | None = None,
               headers: tuple[tuple[str, str], ...] = ()) -> Answer:
        """Return an error answer in the configured style."""
        error = error or _error_object(status, model)
        body = {"detail": error["message"]} if self.error_style == "detail" else {"error": error}
        return Answer(status, body, headers)

    def _take_busy(self) -> bool:
        """Count down the busy answers; True while some are left."""
        with self._lock:
            if self.busy_responses <= 0:
                return False
            self.busy_responses -= 1
            return True

    def _list_models(self) -> Answer:
        """GET /v1/models: every served model, with max_model_len in the vLLM flavour."""
        extra = {"max_model_len": self.context_length} if self.flavour == "vllm" else {}
        owner = OWNERS[self.flavour]
        data = [{"id": name, "object": "model", "created": CREATED, "owned_by": owner, **extra}
                for name in self.models + self.embedding_models]
        return Answer(200, {"object": "list", "data": data})

    def _props(self) -> Answer:
        """GET /props (llama.cpp): the server's context size among its generation settings."""
        first = self.models[0] if self.models else ""
        return Answer(200, {
            "default_generation_settings": {"n_ctx": self.context_length, "is_processing": False,
                                            "params": {"n_predict": -1, "temperature": 0.8}},
            "total_slots": 1,
            "model_path": f"/models/{first}.gguf",
        })

    def _lmstudio(self, path: str) -> Answer:
        """GET /api/v0/models and /api/v0/models/{id} (LM Studio): type, state, quantization and context."""
        if path == "/api/v0/models":
            return Answer(200, {"object": "list", "data": [self._lmstudio_model(n)
                                                           for n in self.models + self.embedding_models]})
        name = unquote(path.removeprefix("/api/v0/models/"))
        if not path.startswith("/api/v0/models/") or name not in self.models + self.embedding_models:
            return self._error(404, name)
        return Answer(200, self._lmstudio_model(name))

    def _lmstudio_model(self, name: str) -> dict:
        """Return LM Studio's description of one model."""
        embedding = name in self.embedding_models
        with self._lock:
            loaded = name in self._loaded
        return {
            "id": name,
            "object": "model",
            "type": "embeddings" if embedding else "llm",
            "publisher": name.split("/")[0] if "/" in name else "lmstudio-community",
            "arch": "nomic-bert" if embedding else "qwen2",
            "compatibility_type": "gguf",
            "quantization": "Q8_0" if embedding else "Q4_K_M",
            "state": "loaded" if loaded else "not-loaded",
            "max_context_length": 2048 if embedding else self.context_length,
        }

    def _chat(self, body: dict | None, raw: bytes) -> Answer | Iterator:
        """POST /v1/chat/completions: a streamed or whole reply, or one of the configured errors."""
        if body is None:
            message = "Expecting value: the request body is not a JSON object" if raw else "Request body is missing"
            return self._error(400, error={"message": message, "type": "invalid_request_error", "param": None,
                                           "code": 400})
        model = body.get("model") or (self.models[0] if self.models else "")
        if self.chat_status:
            return self._error(self.chat_status, model)
        if self._take_busy():
            headers = (("Retry-After", self.retry_after),) if self.retry_after is not None else ()
            return self._error(self.busy_status, headers=headers)
        if model in self.embedding_models:
            return self._error(400, error={"message": f"The model `{model}` does not support Chat Completions API",
                                           "type": "invalid_request_error", "param": "model", "code": 400})
        if model not in self.models:
            return self._error(404, model)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return self._error(400, error={"message": "messages must be a non-empty list",
                                           "type": "invalid_request_error", "param": "messages", "code": 400})
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        if limit is not None and (type(limit) is not int or limit < 0):
            return self._error(400, error={"message": "max_tokens must be a non-negative integer",
                                           "type": "invalid_request_error", "param": "max_tokens", "code": 400})
        prompt_tokens = estimate_prompt_tokens(messages)
        if self.context_length is not None and prompt_tokens + (limit or 0) > self.context_length:
            message = CONTEXT_MESSAGE.format(limit=self.context_length, total=prompt_tokens + (limit or 0),
                                             prompt=prompt_tokens, completion=limit or 0)
            return self._error(400, error={**ERRORS[400], "message": message})
        with self._lock:
            self._loaded.add(model)
        pieces, finish = self._pieces(body)
        if limit is not None and not self.ignore_max_tokens and limit < len(pieces):
            pieces, finish = pieces[:limit], "length"
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(pieces),
                 "total_tokens": prompt_tokens + len(pieces)}
        reply = _Reply(f"chatcmpl-{next(self._ids):08x}", int(time.time()), model, pieces, finish, usage)
        time.sleep(self.first_byte_delay)
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return self._stream(reply, include_usage)
        if self.error_after is not None:
            return self._error(500, error={"message": MID_STREAM_ERROR, "type": "server_error", "param": None,
                                           "code": 500})
        return Answer(200, reply.completion(self.usage_style != "never"))

    def _pieces(self, body: dict) -> tuple[list[tuple[str, str]], str]:
        """Return the (delta field, text) pieces of the whole answer, thinking first, and the finish reason."""
        reply = self.reply(body) if callable(self.reply) else self.reply
        content = split_reply(reply) if isinstance(reply, str) else list(reply)
        thinking = split_reply(self.reasoning) if isinstance(self.reasoning, str) else list(self.reasoning or [])
        if thinking and self.reasoning_style == "inline":
            return [("content", p) for p in ["<thi", "nk>\n", *thinking, "\n</th", "ink>\n\n", *content]], "stop"
        return [(self.reasoning_style, p) for p in thinking] + [("content", p) for p in content], "stop"

    def _stream(self, reply: _Reply, include_usage: bool) -> Iterator:
        """Yield the stream's events: role, pieces (the last with finish_reason), usage, [DONE]; or a failure."""
        yield reply.chunk({"role": "assistant", "content": ""})
        final_usage = reply.usage if self.usage_style == "final_chunk" else None
        for index, (field, text) in enumerate(reply.pieces):
            if index == self.cut_after:
                yield CUT
                return
            if index == self.error_after:
                yield {"error": {"message": MID_STREAM_ERROR, "type": "InternalServerError", "param": None,
                                 "code": 500}}
                break
            if index:
                time.sleep(self.token_delay)
            last = index == len(reply.pieces) - 1 and not self.finish_alone
            yield reply.chunk({field: text}, reply.finish if last else None, final_usage if last else None)
        else:
            if self.cut_after is not None and self.cut_after >= len(reply.pieces):
                yield CUT
                return
            if self.finish_alone or not reply.pieces:
                yield reply.chunk({}, reply.finish, final_usage)
            if include_usage and self.usage_style == "stream_options":
                yield {**reply.chunk({}), "choices": [], "usage": reply.usage}
        if self.send_done:
            yield DONE


@dataclass(frozen=True)
class _Reply:
    """One answer being sent: its id, time, model, pieces, finish reason and usage."""

    id: str
    created: int
    model: str
    pieces: list[tuple[str, str]]
    finish: str
    usage: dict

    def chunk(self, delta: dict, finish: str | None = None, usage: dict | None = None) -> dict:
        """Return one chat.completion.chunk."""
        chunk = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                 "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        return {**chunk, "usage": usage} if usage else chunk

    def completion(self, with_usage: bool) -> dict:
        """Return the whole answer as one chat.completion."""
        message = {"role": "assistant", "content": ""}
        for field, text in self.pieces:
            message[field] = message.get(field, "") + text
        completion = {"id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                      "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": self.finish}]}
        return {**completion, "usage": self.usage} if with_usage else completion


def _parse_object(raw: bytes) -> dict | None:
    """Return the request body as a JSON object, or None when it is empty or not an object."""
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


class _Handler(BaseHTTPRequestHandler):
    """Turns HTTP requests into OpenAIStandin.handle calls and writes the answers."""

    protocol_version = "HTTP/1.1"
    server: StandinServer

    def log_message(self, format, *args):
        """Keep test output quiet."""

    def do_GET(self):
        """Serve a GET."""
        self._serve()

    def do_POST(self):
        """Serve a POST."""
        self._serve()

    def _serve(self) -> None:
        """Read the body, dispatch, and write a whole answer or a server-sent event stream."""
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        answer = self.server.standin.handle(self.command, urlsplit(self.path).path, headers, raw)
        if isinstance(answer, Answer):
            self._send(answer)
        else:
            self._stream(answer)

    def _send(self, answer: Answer) -> None:
        """Write a complete answer with a Content-Length."""
        if isinstance(answer.body, str):
            content_type, data = "text/html; charset=utf-8", answer.body.encode()
        else:
            content_type, data = "application/json", _encode(answer.body)
        self.send_response(answer.status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in answer.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, events: Iterator) -> None:
        """Write server-sent events with chunked transfer encoding, one flushed HTTP chunk per event."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for event in events:
                if event is CUT:
                    self.close_connection = True
                    return
                data = b"data: " + (event.encode() if event == DONE else _encode(event)) + b"\n\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True


def _encode(obj: dict) -> bytes:
    """Encode JSON compactly."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


OpenAIStandin.handler = _Handler


def main(argv: list[str] | None = None) -> None:
    """Run a stand-in in the foreground until interrupted or killed."""
    parser = argparse.ArgumentParser(prog="python -m tests.openai_standin", description=__doc__)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--flavour", choices=FLAVOURS, default="vllm")
    parser.add_argument("--reply", default=REPLY)
    parser.add_argument("--api-key")
    parser.add_argument("--token-delay", type=float, default=0.0)
    args = parser.parse_args(argv)
    standin = OpenAIStandin(flavour=args.flavour, reply=args.reply, port=args.port, api_key=args.api_key)
    standin.token_delay = args.token_delay
    with standin:
        print(f"OpenAI-compatible stand-in ({args.flavour}) listening on {standin.base_url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
