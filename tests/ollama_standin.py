"""A stand-in Ollama server that speaks Ollama's real HTTP API on 127.0.0.1, for tests."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from tests.standin_server import Served, StandinServer

VERSION = "0.12.0"
BUSY = "server busy, please try again. maximum pending requests exceeded"
MID_STREAM_ERROR = "an error was encountered while running the model: unexpected EOF"
MISSING_MANIFEST = "pull model manifest: file does not exist"
RUNNER_FAILED = "llama runner process has terminated: exit status 2"
UNRELATED_REPLY = "Bananas ripen faster in a paper bag. Penguins live mostly in the southern hemisphere."
DOCUMENT_BLOCK = re.compile(r"^\[(\d+)\]([^\n]*)\n(.*?)(?=\n\n\[\d+\]|\Z)", re.DOTALL | re.MULTILINE)
WORD = re.compile(r"\w{4,}")
CONTEXT_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
GARBAGE_LINE = "<html><body>502 Bad Gateway</body></html>"
DEFAULT_NUM_CTX = 4096
DEFAULT_KEEP_ALIVE_NS = 5 * 60 * 10**9
FOREVER_NS = 2**63 - 1  # Go's largest time.Duration, what a negative keep_alive means
EMBEDDING_CONTEXT_LENGTH = 2048
EMBEDDING_DIM = 8
LOAD_NS = 1_000_000
PROMPT_NS_PER_TOKEN = 1_000_000
EVAL_NS_PER_TOKEN = 20_000_000  # reported speed: 50 tokens/s
PULL_STEPS = 4
TEMPLATE = "{{- range .Messages }}<|{{ .Role }}|>{{ .Content }}{{ end }}<|assistant|>"
STOP = "<|eot_id|>"
DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
DURATION = re.compile(rf"-?(?:0|(?:{DURATION_PART.pattern})+)")
DURATION_UNIT_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def unused_port() -> int:
    """Return a port on 127.0.0.1 that nothing listens on (to simulate Ollama being down)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tagged(name: str) -> str:
    """Return the model name with ':latest' added when it carries no tag, as Ollama lists it."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def estimate_prompt_tokens(messages: list[dict]) -> int:
    """Return the stand-in's token count for a rendered prompt: ceil(characters / 4) + 4 per message."""
    return math.ceil(sum(len(m.get("content") or "") for m in messages) / 4) + 4 * len(messages)


def split_reply(text: str) -> list[str]:
    """Split a reply into the word-ish pieces that are streamed; they concatenate back to the text."""
    return re.findall(r"\s*\S+|\s+", text)


def grounded_reply(body: dict) -> str:
    """A model that answers from the prompt: the context sentence (with its block's heading) sharing most words of
    four letters or more with the question, and its [n]; the earlier block wins a tie."""
    user = body["messages"][-1]["content"]
    documents, _, question = user.partition("</documents>")
    asked = set(WORD.findall(question.rpartition("Question:")[2].lower()))
    lines = [(number, line.strip(), set(WORD.findall(f"{header} {line}".lower())))
             for number, header, text in DOCUMENT_BLOCK.findall(documents)
             for line in CONTEXT_SENTENCE.split(text) if WORD.search(line)]
    if not lines:
        return "The documents do not answer the question."
    number, line, _ = max(lines, key=lambda item: len(asked & item[2]))
    return f"{line} [{number}]"


def _timestamp(ns: int) -> str:
    """Format epoch nanoseconds as Ollama does (RFC 3339 with nanoseconds, UTC)."""
    seconds, fraction = divmod(ns, 10**9)
    return f"{datetime.fromtimestamp(seconds, timezone.utc):%Y-%m-%dT%H:%M:%S}.{fraction:09d}Z"


def _keep_alive_ns(value: object) -> int:
    """Parse keep_alive (seconds as a number, or a Go duration string) into nanoseconds."""
    if value is None:
        return DEFAULT_KEEP_ALIVE_NS
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        ns = round(value * 10**9)
    elif isinstance(value, str) and DURATION.fullmatch(value):
        ns = sum(round(float(n) * DURATION_UNIT_NS[u]) for n, u in DURATION_PART.findall(value))
        ns = -ns if value.startswith("-") else ns
    else:
        raise ValueError(f"time: invalid duration {json.dumps(value)}")
    return FOREVER_NS if ns < 0 else ns


def _digest(name: str) -> str:
    """Return the model's stable fake sha256 digest."""
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


def _size(name: str, embedding: bool) -> int:
    """Return a model's size in bytes, stable per name."""
    return (100_000_000 if embedding else 1_000_000_000) + int(_digest(name)[7:15], 16) % 10**9


def _parse_object(raw: bytes) -> dict | None:
    """Return the request body as a JSON object, or None when it is empty or not an object."""
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _embedding(text: str) -> list[float]:
    """Return a deterministic unit-length vector for the text."""
    raw = [byte - 127.5 for byte in hashlib.sha256(text.encode()).digest()[:EMBEDDING_DIM]]
    norm = math.sqrt(sum(x * x for x in raw))
    return [x / norm for x in raw]


def _chat_chunk(model: str, content: str, done: bool = False, **extra: object) -> dict:
    """Return one /api/chat response object."""
    return {
        "model": model,
        "created_at": _timestamp(time.time_ns()),
        "message": {"role": "assistant", "content": content},
        "done": done,
        **extra,
    }


@dataclass(frozen=True)
class _Model:
    """An installed model."""

    name: str
    embedding: bool
    context_length: int
    modified_ns: int

    @property
    def digest(self) -> str:
        """Return the model's digest."""
        return _digest(self.name)

    @property
    def size(self) -> int:
        """Return the model's size in bytes."""
        return _size(self.name, self.embedding)

    @property
    def architecture(self) -> str:
        """Return the general.architecture reported by /api/show."""
        return "bert" if self.embedding else "llama"

    def details(self) -> dict:
        """Return the details object Ollama attaches to a model."""
        return {
            "parent_model": "",
            "format": "gguf",
            "family": self.architecture,
            "families": [self.architecture],
            "parameter_size": "137M" if self.embedding else "3.2B",
            "quantization_level": "F16" if self.embedding else "Q4_K_M",
        }

    def summary(self) -> dict:
        """Return the fields shared by /api/tags and /api/ps entries."""
        return {"name": self.name, "model": self.name, "size": self.size, "digest": self.digest[7:],
                "details": self.details()}


Response = tuple[int, dict | str] | Iterator[dict]


class OllamaStandin(Served):
    """An Ollama server on 127.0.0.1 whose answers and failures tests control."""

    def __init__(self, models=("qwen2.5:3b", "llama3.2:latest"), *, reply="The answer is 42 [1].", port=0,
                 context_length=32768, embedding_models=("nomic-embed-text:latest",), pullable=("tinyllama",)):
        self.reply: str | Callable[[dict], str] = reply
        self.port = port
        self.context_length = context_length
        self.pullable = {tagged(name) for name in pullable}
        self.token_delay = 0.0
        self.first_token_delay = 0.0
        self.tags_delay = 0.0  # seconds before /api/tags answers (a server busy loading a model)
        self.fail_after_chunks: int | None = None
        self.busy_responses = 0
        self.show_context_length = True  # False: model_info lacks "<arch>.context_length" (some imported GGUFs)
        # Hostile modes: a server that misbehaves as a broken proxy or a malicious host would.
        self.garbage_after_chunks: int | None = None  # send this many answer pieces, then a line that is not JSON
        self.html_page: str | None = None  # answer every request with HTTP 200 and this HTML page
        self.ignore_num_predict = False  # stream the whole reply whatever num_predict says
        self.requests: list[tuple[str, str, dict | None]] = []
        self.model_replies: dict[str, str | Callable[[dict], str]] = {}  # tagged name -> that model's reply
        self.failing_models: dict[str, int] = {}  # tagged name -> answers it gives before its runner fails
        self._lock = threading.Lock()
        self._models: dict[str, _Model] = {}
        self._loaded: dict[str, tuple[int, int]] = {}  # name -> (num_ctx, expires_at in epoch ns)
        self._server: StandinServer | None = None
        for name in models:
            self._install(name)
        for name in embedding_models:
            self._install(name, embedding=True)
        self._routes: dict[tuple[str, str], Callable[[dict | None], Response]] = {
            ("GET", "/"): lambda _body: (200, "Ollama is running"),
            ("HEAD", "/"): lambda _body: (200, "Ollama is running"),
            ("GET", "/api/version"): lambda _body: (200, {"version": VERSION}),
            ("GET", "/api/tags"): self._tags,
            ("GET", "/api/ps"): self._ps,
            ("POST", "/api/show"): self._show,
            ("POST", "/api/chat"): self._chat,
            ("POST", "/api/pull"): self._pull,
            ("POST", "/api/embed"): self._embed,
        }

    @property
    def host(self) -> str:
        """Return the address in OLLAMA_HOST form, "127.0.0.1:PORT"."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """Return the base URL, "http://127.0.0.1:PORT"."""
        return f"http://{self.host}"

    def chat_requests(self) -> list[dict]:
        """Return the bodies of the /api/chat requests received so far."""
        return [body for _method, path, body in self.requests if path == "/api/chat"]

    def _handle(self, method: str, path: str, raw: bytes) -> Response:
        """Record a request; return (status, JSON object or text) or an iterator of NDJSON lines."""
        body = _parse_object(raw)
        with self._lock:
            self.requests.append((method, path, body))
        route = self._routes.get((method, path))
        if route is None:
            return 404, {"error": "404 page not found"}
        if method == "POST" and body is None:
            return 400, {"error": "invalid request body" if raw else "missing request body"}
        return route(body)

    def _install(self, name: str, *, embedding: bool = False) -> None:
        """Add a model to the installed list."""
        key = tagged(name)
        context_length = EMBEDDING_CONTEXT_LENGTH if embedding else self.context_length
        with self._lock:
            self._models[key] = _Model(key, embedding, context_length, time.time_ns())

    def _model(self, name: str) -> _Model | None:
        """Return the installed model matching the name, ':latest' optional."""
        with self._lock:
            return self._models.get(tagged(name))

    def _take_busy(self) -> bool:
        """Consume one busy response if any are queued."""
        with self._lock:
            if self.busy_responses > 0:
                self.busy_responses -= 1
                return True
        return False

    def _load(self, model: _Model, options: dict, keep_alive_ns: int) -> int:
        """Mark the model loaded as Ollama's scheduler would; return the num_ctx it runs with."""
        num_ctx = min(options.get("num_ctx") or DEFAULT_NUM_CTX, model.context_length)
        expires_ns = min(time.time_ns() + keep_alive_ns, FOREVER_NS)
        with self._lock:
            self._loaded[model.name] = (num_ctx, expires_ns)
        return num_ctx

    def _runner_failed(self, name: str) -> bool:
        """Count down a failing model's answers; True once it has none left."""
        with self._lock:
            if name not in self.failing_models:
                return False
            self.failing_models[name] -= 1
            return self.failing_models[name] < 0

    def _tags(self, _body: None) -> Response:
        """GET /api/tags: the installed models."""
        time.sleep(self.tags_delay)
        with self._lock:
            models = list(self._models.values())
        return 200, {"models": [{**m.summary(), "modified_at": _timestamp(m.modified_ns)} for m in models]}

    def _ps(self, _body: None) -> Response:
        """GET /api/ps: the models loaded and not yet expired."""
        now = time.time_ns()
        with self._lock:
            loaded = [(self._models[name], ctx, exp) for name, (ctx, exp) in self._loaded.items() if exp > now]
        return 200, {"models": [
            {**m.summary(), "expires_at": _timestamp(exp), "size_vram": m.size, "context_length": ctx}
            for m, ctx, exp in loaded
        ]}

    def _show(self, body: dict) -> Response:
        """POST /api/show: a model's modelfile, parameters, template, details and model_info."""
        name = body.get("model") or ""
        if not name:
            return 400, {"error": "model is required"}
        model = self._model(name)
        if model is None:
            return 404, {"error": f"model '{name}' not found"}
        arch = model.architecture
        template = "{{ .Prompt }}" if model.embedding else TEMPLATE
        parameters = "" if model.embedding else f'stop                           "{STOP}"'
        modelfile = f'# Modelfile generated by "ollama show"\nFROM /root/.ollama/models/blobs/sha256-{model.digest[7:]}\n'
        modelfile += f'TEMPLATE """{template}"""\n' + ("" if model.embedding else f'PARAMETER stop "{STOP}"\n')
        shown = {
            "license": "",
            "modelfile": modelfile,
            "parameters": parameters,
            "template": template,
            "details": model.details(),
            "model_info": {
                "general.architecture": arch,
                "general.parameter_count": 137_000_000 if model.embedding else 3_212_749_888,
                f"{arch}.context_length": model.context_length,
                f"{arch}.embedding_length": 768 if model.embedding else 3072,
            },
            "capabilities": ["embedding"] if model.embedding else ["completion"],
            "modified_at": _timestamp(model.modified_ns),
        }
        if not self.show_context_length:
            del shown["model_info"][f"{arch}.context_length"]
        return 200, shown

    def _chat(self, body: dict) -> Response:
        """POST /api/chat: a streamed or whole reply, a warm-up, or one of Ollama's errors."""
        if self._take_busy():
            return 503, {"error": BUSY}
        name = body.get("model") or ""
        if not name:
            return 400, {"error": "model is required"}
        model = self._model(name)
        if model is None:
            return 404, {"error": f"model '{name}' not found"}
        if model.embedding:
            return 400, {"error": f'"{name}" does not support chat'}
        try:
            keep_alive_ns = _keep_alive_ns(body.get("keep_alive"))
        except ValueError as error:
            return 400, {"error": str(error)}
        options = body.get("options") or {}
        messages = body.get("messages") or []
        num_ctx = self._load(model, options, keep_alive_ns)
        if not messages and keep_alive_ns == 0:
            return 200, _chat_chunk(name, "", True, done_reason="unload")
        time.sleep(self.first_token_delay)
        if not messages:
            return 200, _chat_chunk(name, "", True, done_reason="load")

        if self._runner_failed(model.name):
            return 500, {"error": RUNNER_FAILED}
        reply = self.model_replies.get(model.name, self.reply)
        pieces = split_reply(reply(body) if callable(reply) else reply)
        done_reason = "stop"
        num_predict = None if self.ignore_num_predict else options.get("num_predict")
        if num_predict is not None and 0 <= num_predict < len(pieces):
            pieces, done_reason = pieces[:num_predict], "length"
        estimate = estimate_prompt_tokens(messages)
        prompt_tokens = num_ctx // 2 if estimate > num_ctx else estimate
        load_ns = round(self.first_token_delay * 10**9) + LOAD_NS
        prompt_ns = prompt_tokens * PROMPT_NS_PER_TOKEN
        eval_ns = len(pieces) * EVAL_NS_PER_TOKEN
        summary = {
            "done_reason": done_reason,
            "total_duration": load_ns + prompt_ns + eval_ns,
            "load_duration": load_ns,
            "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": prompt_ns,
            "eval_count": len(pieces),
            "eval_duration": eval_ns,
        }
        if body.get("stream", True):
            return self._stream_chat(name, pieces, summary, self.fail_after_chunks)
        time.sleep(self.token_delay * len(pieces))
        if self.fail_after_chunks is not None:
            return 500, {"error": MID_STREAM_ERROR}
        return 200, _chat_chunk(name, "".join(pieces), True, **summary)

    def _stream_chat(self, name: str, pieces: list[str], summary: dict, fail_after: int | None) -> Iterator[dict]:
        """Yield the content chunks, then the done chunk or, when told to fail, the error line."""
        for index, piece in enumerate(pieces):
            if index == fail_after:
                break
            if index == self.garbage_after_chunks:
                yield RawLine(GARBAGE_LINE)
                return
            if index:
                time.sleep(self.token_delay)
            yield _chat_chunk(name, piece)
        if fail_after is not None:
            yield {"error": MID_STREAM_ERROR}
            return
        yield _chat_chunk(name, "", True, **summary)

    def _pull(self, body: dict) -> Response:
        """POST /api/pull: download progress for a pullable name, a manifest error otherwise."""
        if self._take_busy():
            return 503, {"error": BUSY}
        name = body.get("model") or ""
        if not name:
            return 400, {"error": "model is required"}
        key = tagged(name)
        found = key in self.pullable or self._model(key) is not None
        if body.get("stream", True):
            return self._stream_pull(key, found)
        if not found:
            return 500, {"error": MISSING_MANIFEST}
        self._install(key)
        return 200, {"status": "success"}

    def _stream_pull(self, key: str, found: bool) -> Iterator[dict]:
        """Yield Ollama's pull progress lines, installing the model before "success"."""
        yield {"status": "pulling manifest"}
        if not found:
            yield {"error": MISSING_MANIFEST}
            return
        digest, total = _digest(key), _size(key, embedding=False)
        for step in range(PULL_STEPS + 1):
            time.sleep(self.token_delay)
            progress = {"status": f"pulling {digest[7:19]}", "digest": digest, "total": total}
            yield {**progress, "completed": total * step // PULL_STEPS} if step else progress
        yield {"status": "verifying sha256 digest"}
        yield {"status": "writing manifest"}
        self._install(key)
        yield {"status": "success"}

    def _embed(self, body: dict) -> Response:
        """POST /api/embed: one deterministic unit vector per input."""
        name = body.get("model") or ""
        if not name:
            return 400, {"error": "model is required"}
        model = self._model(name)
        if model is None:
            return 404, {"error": f'model "{name}" not found, try pulling it first'}
        inputs = body.get("input")
        inputs = [] if inputs is None or inputs == "" else [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(inputs, list) or not all(isinstance(text, str) for text in inputs):
            return 400, {"error": "invalid input type"}
        try:
            self._load(model, body.get("options") or {}, _keep_alive_ns(body.get("keep_alive")))
        except ValueError as error:
            return 400, {"error": str(error)}
        return 200, {
            "model": name,
            "embeddings": [_embedding(text) for text in inputs],
            "total_duration": LOAD_NS,
            "load_duration": LOAD_NS,
            "prompt_eval_count": sum(math.ceil(len(text) / 4) for text in inputs),
        }


class _Handler(BaseHTTPRequestHandler):
    """Turns HTTP requests into OllamaStandin.handle calls and writes the answers."""

    protocol_version = "HTTP/1.1"
    server: StandinServer

    def log_message(self, format, *args):
        """Keep test output quiet."""

    def do_GET(self):
        """Serve a GET."""
        self._serve()

    def do_HEAD(self):
        """Serve a HEAD."""
        self._serve()

    def do_POST(self):
        """Serve a POST."""
        self._serve()

    def do_DELETE(self):
        """Serve a DELETE."""
        self._serve()

    def _serve(self) -> None:
        """Read the body, dispatch, and write a JSON answer or an NDJSON stream."""
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.server.standin.html_page is not None:
            self._send(200, "text/html; charset=utf-8", self.server.standin.html_page.encode())
            return
        answer = self.server.standin._handle(self.command, urlsplit(self.path).path, raw)
        if not isinstance(answer, tuple):
            self._stream(answer)
        elif isinstance(answer[1], str):
            self._send(answer[0], "text/plain; charset=utf-8", answer[1].encode())
        else:
            self._send(answer[0], "application/json; charset=utf-8", _encode(answer[1]))

    def _send(self, status: int, content_type: str, data: bytes) -> None:
        """Write a complete response with a Content-Length."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _stream(self, lines: Iterator[dict]) -> None:
        """Write NDJSON with chunked transfer encoding, one flushed chunk per line."""
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for line in lines:
                data = (line.encode() if isinstance(line, RawLine) else _encode(line)) + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
                if "error" in line:
                    self.close_connection = True
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True


OllamaStandin.handler = _Handler


class RawLine(str):
    """A line written into an NDJSON stream as it is, not encoded as JSON (to break the stream)."""


def _encode(obj: dict) -> bytes:
    """Encode JSON compactly, as Go does."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def main(argv: list[str] | None = None) -> None:
    """Run a stand-in in the foreground until interrupted or killed."""
    parser = argparse.ArgumentParser(prog="python -m tests.ollama_standin", description=__doc__)
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument("--reply", default="The answer is 42 [1].")
    parser.add_argument("--token-delay", type=float, default=0.0)
    args = parser.parse_args(argv)
    standin = OllamaStandin(reply=args.reply, port=args.port)
    standin.token_delay = args.token_delay
    with standin:
        print(f"Ollama stand-in listening on {standin.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
