"""Every wait for a model has a deadline: no visible answer text for RAG_READ_TIMEOUT ends the answer (exit 7), whatever
the server streams meanwhile (empty pieces, only thinking, a byte now and then); the text that came is kept."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rag.chat.ask import main as ask_main
from rag.core.errors import LLMTimeout
from rag.core.settings import Settings
from rag.llm.backend import ChatOptions, ChatUsage
from rag.llm.ollama import Ollama
from rag.llm.openai_compatible import OpenAICompatible
from tests.openai_standin import OpenAIStandin

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 1.0
ENDS_WITHIN = 10.0  # far above the deadline, far below the minutes a wait without one lasted
QUESTION = [{"role": "user", "content": "What is the answer?"}]


class ScriptedServer:
    """An HTTP server on 127.0.0.1 that answers every request with headers, then whatever `send` writes, slowly."""

    def __init__(self, content_type: str, send: Callable[[socket.socket], None], fixed: dict[str, dict] | None = None):
        self.content_type, self.send, self.fixed = content_type, send, fixed or {}
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stopped = threading.Event()
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while not self.stopped.is_set():
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.answer, args=(connection,), daemon=True).start()

    def answer(self, connection: socket.socket) -> None:
        with connection:
            request = b""
            while b"\r\n\r\n" not in request:
                request += connection.recv(65536)
            head, _, body = request.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0)
            while len(body) < length:
                body += connection.recv(65536)
            path = head.split(b" ")[1].decode()
            if path in self.fixed:
                reply = json.dumps(self.fixed[path]).encode()
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                                   + f"Content-Length: {len(reply)}\r\n\r\n".encode() + reply)
                return
            if not head.startswith(b"POST"):
                connection.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            connection.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: {self.content_type}\r\nConnection: close\r\n\r\n".encode())
            try:
                self.send(connection)
            except OSError:
                pass  # the client hung up: what the deadline is for

    def __enter__(self) -> ScriptedServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.listener.close()


def ollama_line(content: str, **extra) -> bytes:
    return json.dumps({"model": "qwen2.5:3b", "created_at": "2026-01-01T00:00:00Z",
                       "message": {"role": "assistant", "content": content, **extra}, "done": False}).encode() + b"\n"


def sse(delta: dict) -> bytes:
    return b"data: " + json.dumps({"choices": [{"index": 0, "delta": delta}]}).encode() + b"\n\n"


def forever(connection: socket.socket, first: bytes, then: bytes, every: float) -> None:
    """Send first, then `then` every so often, until the client hangs up (or a minute passes)."""
    connection.sendall(first)
    for _ in range(int(60 / every)):
        time.sleep(every)
        connection.sendall(then)


def collect(stream) -> tuple[list[str], BaseException, float]:
    """The pieces a stream gave before it raised, the error, and how long it took."""
    pieces, started = [], time.monotonic()
    with pytest.raises(LLMTimeout) as raised:
        for piece in stream:
            pieces.append(piece)
    return pieces, raised.value, time.monotonic() - started


def ollama(port: int) -> Ollama:
    return Ollama(Settings(ollama_host=f"127.0.0.1:{port}", read_timeout=TIMEOUT))


def openai(port: int) -> OpenAICompatible:
    return OpenAICompatible(Settings(openai_url=f"http://127.0.0.1:{port}", read_timeout=TIMEOUT))


@pytest.mark.parametrize("then", [ollama_line(""), ollama_line("", thinking="Let me think.")], ids=["empty", "thinking"])
def test_ollama_streaming_nothing_visible_is_cut_at_the_deadline_and_keeps_the_text(then):
    send = lambda c: forever(c, ollama_line("Partial"), then, 0.1)
    with ScriptedServer("application/x-ndjson", send) as server:
        pieces, error, took = collect(ollama(server.port).stream_chat("qwen2.5:3b", QUESTION, ChatOptions(4096), ChatUsage()))

    assert pieces == ["Partial"] and took < ENDS_WITHIN
    assert str(error) == (f"Ollama at http://127.0.0.1:{server.port} sent no answer text for 1 s (a large model may "
                          "still be loading). Try again, or raise RAG_READ_TIMEOUT.")


def test_ollama_trickling_a_byte_at_a_time_is_cut_at_the_deadline():
    send = lambda c: forever(c, ollama_line("Partial") + b'{"model": "qwen', b"x", 0.2)
    with ScriptedServer("application/x-ndjson", send) as server:
        pieces, error, took = collect(ollama(server.port).stream_chat("qwen2.5:3b", QUESTION, ChatOptions(4096), ChatUsage()))

    assert pieces == ["Partial"] and took < ENDS_WITHIN and error.exit_code == 7


@pytest.mark.parametrize("then", [sse({"content": ""}), sse({"reasoning_content": "Hmm."}), b"d"],
                         ids=["empty", "reasoning", "trickle"])
def test_an_openai_server_streaming_nothing_visible_is_cut_at_the_deadline(then):
    send = lambda c: forever(c, sse({"role": "assistant", "content": "Partial"}), then, 0.1)
    with ScriptedServer("text/event-stream", send) as server:
        pieces, error, took = collect(openai(server.port).stream_chat("m", QUESTION, ChatOptions(4096), ChatUsage()))

    assert pieces == ["Partial"] and took < ENDS_WITHIN
    assert str(error).startswith(f"The server at http://127.0.0.1:{server.port}/v1 sent no answer text for 1 s")


def test_a_model_that_only_thinks_is_cut_by_the_deadline_in_the_standin_too():
    with OpenAIStandin(reply="Never reached.") as server:
        server.reasoning, server.token_delay = ["Thinking. "] * 100, 0.05
        pieces, error, took = collect(openai(server.port).stream_chat(
            "Qwen/Qwen2.5-3B-Instruct", QUESTION, ChatOptions(4096), ChatUsage()))

    assert pieces == [] and took < ENDS_WITHIN


def test_rag_ask_ends_a_stream_of_empty_pieces_with_exit_7_and_the_partial_answer(settings, guide_store, monkeypatch, capsys):
    send = lambda c: forever(c, ollama_line("Partial"), ollama_line(""), 0.1)
    show = {"model_info": {"qwen2.context_length": 32768}, "capabilities": ["completion"]}
    with ScriptedServer("application/x-ndjson", send, {"/api/show": show}) as server:
        monkeypatch.setenv("RAG_STORE_DIR", str(guide_store))
        monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{server.port}")
        monkeypatch.setenv("RAG_READ_TIMEOUT", "1")

        code = ask_main(["--anyway", "How do I add my own documents?"])

    out, err = capsys.readouterr()
    assert code == 7, err
    assert out.startswith("Partial\n")
    assert err.strip().endswith("sent no answer text for 1 s (a large model may still be loading). Try again, or raise RAG_READ_TIMEOUT.")


@pytest.fixture
def silent_server():
    """A port that accepts connections and never answers, as a stuck server does."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    listener.close()
    for connection in held:
        connection.close()


@pytest.mark.parametrize("command", [["rag.ask", "How do I add my own documents?"], ["ingest", "--dry-run"]])
def test_a_chroma_server_that_never_answers_is_one_line_and_exit_3_within_its_deadline(silent_server, tmp_path, command):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")} | {
        "PYTHONPATH": str(REPO), "RAG_CHROMA_URL": silent_server, "RAG_STORE_TIMEOUT": "1"}
    started = time.monotonic()

    done = subprocess.run([sys.executable, "-m", *command], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)

    assert time.monotonic() - started < 60
    assert done.returncode == 3
    assert done.stderr == (
        f"error: The Chroma server at {silent_server} accepted the connection but did not answer within 1 s "
        f"(RAG_STORE_TIMEOUT). Check that it runs and is not stuck (`chroma run --path DIR --port "
        f"{silent_server.rsplit(':', 1)[1]}`), or unset RAG_CHROMA_URL.\n"
    )

