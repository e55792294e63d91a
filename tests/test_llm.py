"""The Ollama wrapper against the stand-in, through the real `ollama` client over HTTP."""
from __future__ import annotations

import contextlib
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rag.core.errors import (
    ModelCannotChat,
    ModelNotFound,
    LLMBusy,
    LLMError,
    LLMTimeout,
    LLMUnavailable,
    StreamInterrupted,
)
from rag.llm.backend import ChatOptions, ChatUsage, ModelEntry, PullProgress, context_window
from rag.llm.ollama import Ollama, normalise_model
from rag.core.settings import Settings
from tests.ollama_standin import OllamaStandin, unused_port

QUESTION = [{"role": "user", "content": "What is the answer?"}]
OPTIONS = ChatOptions(8192, 0.1)
QUICK_RETRIES = (0.01, 0.01, 0.01)


@pytest.fixture
def llm(settings):
    return Ollama(settings)


def shows(standin) -> int:
    return sum(1 for _method, path, _body in standin.requests if path == "/api/show")


def test_normalise_model_adds_latest_only_to_untagged_names():
    assert normalise_model("llama3.2") == "llama3.2:latest"
    assert normalise_model("llama3.2:3b") == "llama3.2:3b"
    assert normalise_model(" qwen2.5 ") == "qwen2.5:latest"
    assert normalise_model("registry.local:5000/team/model") == "registry.local:5000/team/model:latest"
    assert normalise_model("hf.co/org/repo:Q4_K_M") == "hf.co/org/repo:Q4_K_M"


def test_list_models_returns_tagged_names_with_what_tags_says_of_each(llm):
    listed = llm.list_models()

    assert [entry.name for entry in listed] == ["llama3.2:latest", "nomic-embed-text:latest", "qwen2.5:3b"]
    assert [entry.can_chat for entry in listed] == [True, False, True]
    assert all(isinstance(entry, ModelEntry) and entry.size and entry.parameters and entry.quantization for entry in listed)
    assert llm.canonical("llama3.2") == "llama3.2:latest"


def test_context_length_is_read_from_show_once_per_model(llm, standin):
    assert llm.model_info("qwen2.5:3b").context_length == 32768
    assert llm.model_info("qwen2.5:3b").context_length == 32768
    assert Ollama(llm_settings(standin)).model_info("qwen2.5:3b").context_length == 32768
    assert shows(standin) == 1

    assert llm.model_info("llama3.2").context_length == 32768
    assert llm.model_info("llama3.2:latest").context_length == 32768
    assert shows(standin) == 2


def llm_settings(standin, **overrides) -> Settings:
    return Settings(ollama_host=standin.host, **overrides)


def test_num_ctx_is_the_setting_capped_by_the_trained_context():
    with OllamaStandin(context_length=4096) as small, OllamaStandin(context_length=131072) as large:
        assert context_window(Ollama(llm_settings(small)).model_info("qwen2.5:3b"), 8192) == 4096
        assert context_window(Ollama(llm_settings(large)).model_info("qwen2.5:3b"), 8192) == 8192


def test_embedding_model_info_says_it_cannot_chat(llm):
    assert not llm.model_info("nomic-embed-text").can_chat
    assert llm.model_info("qwen2.5:3b").can_chat


def test_warm_loads_the_model_with_num_ctx_and_keep_alive(llm, standin):
    llm.warm("llama3.2", 8192)

    assert standin.chat_requests()[-1]["messages"] == []
    assert (standin.chat_requests()[-1]["keep_alive"], standin.chat_requests()[-1]["options"]) == ("30m", {"num_ctx": 8192})
    assert [(m.model, m.context_length) for m in llm.client.ps().models] == [("llama3.2:latest", 8192)]


def test_stream_chat_yields_pieces_in_order_and_fills_usage(llm, standin):
    usage = ChatUsage()

    pieces = list(llm.stream_chat("qwen2.5:3b", QUESTION, ChatOptions(8192, 0.1, 200), usage))

    assert pieces == ["The", " answer", " is", " 42", " [1]."]
    assert (usage.prompt_tokens, usage.generated_tokens, usage.finish_reason) == (9, 5, "stop")
    assert usage.tokens_per_second == pytest.approx(50.0)
    assert (usage.load_seconds, usage.generation_seconds) == (0.001, 0.1)
    body = standin.chat_requests()[-1]
    assert (body["options"], body["keep_alive"], body["stream"]) == (
        {"num_ctx": 8192, "temperature": 0.1, "num_predict": 200}, "30m", True)


def test_a_bug_of_ours_inside_the_stream_is_raised_as_it_is_never_blamed_on_the_server(llm):
    with pytest.raises(AttributeError):
        list(llm.stream_chat("qwen2.5:3b", QUESTION, OPTIONS, None))  # no usage object to fill: a caller's bug


def test_every_chat_request_carries_the_configured_keep_alive(standin):
    llm = Ollama(llm_settings(standin, keep_alive="2h"))

    llm.warm("qwen2.5:3b", 8192)
    list(llm.stream_chat("qwen2.5:3b", QUESTION, OPTIONS, ChatUsage()))
    list(llm.stream_chat("llama3.2", QUESTION, OPTIONS, ChatUsage()))

    assert [body["keep_alive"] for body in standin.chat_requests()] == ["2h", "2h", "2h"]


def test_busy_server_is_retried_with_backoff_then_answers(llm, standin):
    standin.busy_responses = 3
    llm.busy_retries = (0.05, 0.1, 0.2)

    started = time.monotonic()
    pieces = list(llm.stream_chat("qwen2.5:3b", QUESTION, OPTIONS, ChatUsage()))

    assert "".join(pieces) == "The answer is 42 [1]."
    assert len(standin.chat_requests()) == 4
    assert time.monotonic() - started >= 0.35


def test_busy_server_that_stays_busy_raises_ollama_busy_after_four_tries(llm, standin):
    standin.busy_responses = 10
    llm.busy_retries = QUICK_RETRIES

    with pytest.raises(LLMBusy) as raised:
        list(llm.stream_chat("qwen2.5:3b", QUESTION, OPTIONS, ChatUsage()))

    assert len(standin.chat_requests()) == 4
    assert str(raised.value) == (
        f"Ollama at {standin.url} is still busy after 4 tries (server busy, please try again. maximum pending "
        "requests exceeded). Wait for other requests to finish, or raise OLLAMA_NUM_PARALLEL / OLLAMA_MAX_QUEUE, "
        "then try again."
    )
    assert raised.value.exit_code == 6


def test_default_busy_backoff_is_a_few_growing_waits():
    assert Ollama(Settings()).busy_retries == (0.5, 1.0, 2.0)


def test_unknown_model_raises_model_not_found_offering_ollama_pull(llm, standin):
    with pytest.raises(ModelNotFound) as raised:
        list(llm.stream_chat("mistral", QUESTION, OPTIONS, ChatUsage()))

    assert str(raised.value) == (
        f"Model 'mistral' is not installed in Ollama at {standin.url}. Run `ollama pull mistral`, "
        "or choose one of: llama3.2:latest, qwen2.5:3b."
    )
    assert (raised.value.model, raised.value.exit_code) == ("mistral", 5)


def test_unknown_model_on_show_raises_model_not_found(llm):
    with pytest.raises(ModelNotFound):
        llm.model_info("mistral").context_length


def test_embedding_only_model_for_chat_raises_model_cannot_chat(llm):
    with pytest.raises(ModelCannotChat) as raised:
        list(llm.stream_chat("nomic-embed-text", QUESTION, OPTIONS, ChatUsage()))

    assert str(raised.value) == (
        "Model 'nomic-embed-text' cannot chat (it is an embedding model). Choose a chat model with --model or "
        "RAG_MODEL, e.g. llama3.2:latest, qwen2.5:3b."
    )
    assert raised.value.exit_code == 9


@pytest.mark.parametrize("call", ["list", "stream", "show", "warm"])
def test_server_not_running_raises_ollama_unavailable_naming_the_host(call):
    port = unused_port()
    llm = Ollama(Settings(ollama_host=f"127.0.0.1:{port}"))
    actions = {
        "list": llm.list_models,
        "stream": lambda: list(llm.stream_chat("qwen2.5:3b", QUESTION, OPTIONS, ChatUsage())),
        "show": lambda: llm.model_info("qwen2.5:3b").context_length,
        "warm": lambda: llm.warm("qwen2.5:3b", 8192),
    }

    with pytest.raises(LLMUnavailable) as raised:
        actions[call]()

    assert str(raised.value) == (
        f"Cannot reach Ollama at http://127.0.0.1:{port}. Start it (`ollama serve` or the desktop app), "
        "or set OLLAMA_HOST to where it runs."
    )
    assert raised.value.exit_code == 4


@contextlib.contextmanager
def port_that_never_accepts():
    """A listening port whose accept queue is full, so a new connection hangs as with a firewalled host."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.05)
    try:
        yield port
    finally:
        for sock in (*fillers, server):
            sock.close()


def test_connect_timeout_is_short_and_says_so():
    with port_that_never_accepts() as port:
        llm = Ollama(Settings(ollama_host=f"127.0.0.1:{port}", connect_timeout=0.3))

        started = time.monotonic()
        with pytest.raises(LLMUnavailable) as raised:
            llm.list_models()

    assert time.monotonic() - started < 2
    assert str(raised.value) == (
        f"Ollama at http://127.0.0.1:{port} did not accept a connection within 0.3 s. Check OLLAMA_HOST and that "
        "the host is up (Docker/WSL: publish port 11434 and bind 0.0.0.0)."
    )


def test_read_timeout_raises_ollama_timeout_naming_the_setting(standin):
    standin.first_token_delay = 0.6
    llm = Ollama(llm_settings(standin, read_timeout=0.2))

    with pytest.raises(LLMTimeout) as raised:
        list(llm.stream_chat("qwen2.5:3b", QUESTION, OPTIONS, ChatUsage()))

    assert str(raised.value) == (
        f"Ollama at {standin.url} sent no answer text for 0.2 s (a large model may still be loading). "
        "Try again, or raise RAG_READ_TIMEOUT."
    )
    assert raised.value.exit_code == 7


def test_slow_first_token_within_the_read_timeout_is_waited_for(standin):
    standin.first_token_delay = 0.4
    llm = Ollama(llm_settings(standin, read_timeout=5))

    assert "".join(llm.stream_chat("qwen2.5:3b", QUESTION, OPTIONS, ChatUsage())) == "The answer is 42 [1]."


def test_error_mid_stream_keeps_the_pieces_before_it(llm, standin):
    standin.fail_after_chunks = 2
    pieces = []

    with pytest.raises(StreamInterrupted) as raised:
        for piece in llm.stream_chat("qwen2.5:3b", QUESTION, OPTIONS, ChatUsage()):
            pieces.append(piece)

    assert pieces == ["The", " answer"]
    assert str(raised.value) == (
        "Ollama stopped in the middle of the answer (an error was encountered while running the model: "
        "unexpected EOF); the text above is incomplete. Ask again."
    )
    assert raised.value.exit_code == 8
    assert len(standin.chat_requests()) == 1  # not retried: the answer had started


def test_connection_dropped_mid_stream_is_stream_interrupted(llm, standin):
    standin.token_delay = 0.2
    pieces = []

    with pytest.raises(StreamInterrupted) as raised:
        for piece in llm.stream_chat("qwen2.5:3b", QUESTION, OPTIONS, ChatUsage()):
            pieces.append(piece)
            if len(pieces) == 2:
                threading.Thread(target=standin.stop).start()

    assert pieces[:2] == ["The", " answer"] and len(pieces) < 5
    assert "broke in the middle of the answer" in str(raised.value)


def test_reader_that_stops_early_closes_the_stream(llm, standin):
    standin.token_delay = 0.05
    stream = llm.stream_chat("qwen2.5:3b", QUESTION, OPTIONS, ChatUsage())

    assert next(stream) == "The"
    stream.close()

    assert "".join(llm.stream_chat("qwen2.5:3b", QUESTION, OPTIONS, ChatUsage())) == "The answer is 42 [1]."


def test_pull_yields_progress_and_the_model_is_then_installed(llm):
    steps = list(llm.pull("tinyllama"))

    assert steps[0] == PullProgress("pulling manifest")
    assert steps[-1].status == "success"
    downloads = [step for step in steps if step.total]
    assert len(downloads) == 5 and downloads[-1].completed == downloads[0].total
    assert "tinyllama:latest" in [entry.name for entry in llm.list_models()]


def test_pull_of_a_name_the_library_lacks_says_so_and_where_to_check(llm, standin):
    with pytest.raises(LLMError) as raised:
        list(llm.pull("no-such-model"))

    assert type(raised.value) is LLMError
    assert str(raised.value) == (
        "Ollama has no model called 'no-such-model'. Check the name and tag at https://ollama.com/library (e.g. llama3.2:3b)."
    )


class NotFoundEverywhere(BaseHTTPRequestHandler):
    """Some other web server: 404 with an HTML body for every path."""

    def log_message(self, *args):
        pass

    def answer(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b"<h1>Not Found</h1>"
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = answer


def test_a_server_that_is_not_ollama_is_reported_as_unreachable_ollama():
    server = ThreadingHTTPServer(("127.0.0.1", 0), NotFoundEverywhere)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        llm = Ollama(Settings(ollama_host=url))
        with pytest.raises(LLMUnavailable) as raised:
            list(llm.stream_chat("qwen2.5:3b", QUESTION, OPTIONS, ChatUsage()))
    finally:
        server.shutdown()
        server.server_close()

    assert str(raised.value) == (
        f"The server at {url} is not Ollama (it answered 404: <h1>Not Found</h1>). "
        "Set OLLAMA_HOST to where Ollama runs (default 127.0.0.1:11434)."
    )
