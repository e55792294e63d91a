"""The OpenAI-compatible backend against the stand-in server over real HTTP: listing, context, streaming, failures."""
from __future__ import annotations

import time

import pytest

from rag.core.errors import (
    ContextTooLong,
    KeyRefused,
    LLMBusy,
    LLMError,
    LLMTimeout,
    LLMUnavailable,
    ModelNotFound,
    StreamInterrupted,
)
from rag.core.settings import Settings
from rag.llm.backend import ChatOptions, ChatUsage
from rag.llm.openai_compatible import OpenAICompatible, forget_model_info
from tests.ollama_standin import unused_port
from tests.openai_standin import OpenAIStandin
from tests.test_deadlines import ScriptedServer, sse

MODEL = "Qwen/Qwen2.5-3B-Instruct"
QUESTION = [{"role": "user", "content": "What is the answer?"}]
OPTIONS = ChatOptions(4096, 0.1, 200)
QUICK = (0.01, 0.01, 0.01)


@pytest.fixture(autouse=True)
def fresh_info():
    forget_model_info()
    yield
    forget_model_info()


def box(server: OpenAIStandin, url: str | None = None, **settings) -> OpenAICompatible:
    backend = OpenAICompatible(Settings(openai_url=url or server.url, **settings))
    backend.busy_retries = QUICK
    return backend


def chat(backend: OpenAICompatible, usage: ChatUsage | None = None, model: str = MODEL, options=OPTIONS) -> str:
    return "".join(backend.stream_chat(model, QUESTION, options, usage or ChatUsage()))


@pytest.mark.parametrize("given", ["{url}", "{url}/v1", "{url}/v1/", "  {url}/v1  ", "127.0.0.1:{port}"])
def test_every_way_people_write_the_address_reaches_v1_models(given):
    with OpenAIStandin() as server:
        backend = box(server, given.format(url=server.url, port=server.port))

        assert [entry.name for entry in backend.list_models()] == sorted(["Qwen/Qwen2.5-3B-Instruct", "llama-3.2-3b"])
        assert [r.path for r in server.requests] == ["/v1/models"]


@pytest.mark.parametrize(("flavour", "context"), [("vllm", 32768), ("llamacpp", 32768), ("lmstudio", 32768), ("plain", None)])
def test_the_context_length_is_read_where_each_server_exposes_it_and_never_guessed(flavour, context):
    with OpenAIStandin(flavour=flavour) as server:
        backend = box(server)

        assert backend.model_info(MODEL).context_length == context
        backend.model_info(MODEL)
        asked = [r.path for r in server.requests]
        assert asked.count("/v1/models") == 1  # once per process


def test_an_lm_studio_embedding_model_cannot_chat():
    with OpenAIStandin(flavour="lmstudio", embedding_models=["text-embedding-nomic"]) as server:
        assert not box(server).model_info("text-embedding-nomic").can_chat


def test_a_stream_gives_the_pieces_usage_and_finish_reason_and_sends_the_budget():
    with OpenAIStandin() as server:
        usage = ChatUsage()

        assert chat(box(server), usage) == "The answer is 42 [1]."

        body = server.chat_requests()[-1]
        assert (body["model"], body["stream"], body["max_tokens"], body["temperature"]) == (MODEL, True, 200, 0.1)
        assert body["stream_options"] == {"include_usage": True}
        assert usage.prompt_tokens > 0 and usage.generated_tokens > 0 and usage.finish_reason == "stop"
        assert usage.generation_seconds is not None


@pytest.mark.parametrize("style", ["final_chunk", "never"])
def test_a_stream_without_done_and_with_usage_on_the_last_chunk_or_none_is_complete(style):
    with OpenAIStandin() as server:
        server.send_done, server.usage_style = False, style
        usage = ChatUsage()

        assert chat(box(server), usage) == "The answer is 42 [1]."
        assert usage.finish_reason == "stop" and usage.generated_tokens > 0


@pytest.mark.parametrize("style", ["reasoning_content", "reasoning", "inline"])
def test_reasoning_is_kept_out_of_the_answer_and_kept_apart(style):
    with OpenAIStandin() as server:
        server.reasoning, server.reasoning_style = "The user wants the answer. Document [1] says 42.", style
        usage = ChatUsage()

        assert chat(box(server), usage) == "The answer is 42 [1]."
        assert usage.reasoning == "The user wants the answer. Document [1] says 42."


def test_an_answer_at_its_limit_says_length_even_when_the_server_ignores_the_limit():
    with OpenAIStandin(reply="one two three four five six seven eight") as server:
        server.ignore_max_tokens = True
        usage = ChatUsage()

        text = chat(box(server), usage, options=ChatOptions(4096, 0.1, 3))

        assert text == "one two three" and usage.finish_reason == "length"


def test_a_model_the_server_does_not_serve_names_the_ones_it_does():
    with OpenAIStandin() as server:
        backend = box(server)
        with pytest.raises(ModelNotFound) as raised:
            chat(backend, model="mistral")

        assert str(raised.value) == (
            f"Model 'mistral' is not served by the server at {server.base_url}. Load it there (e.g. `vllm serve mistral`), "
            "or choose another model: Qwen/Qwen2.5-3B-Instruct, llama-3.2-3b."
        )
        assert raised.value.exit_code == 5


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_is_exit_12_naming_the_setting_and_the_key_is_never_shown(status):
    with OpenAIStandin() as server:
        server.chat_status = status
        with pytest.raises(KeyRefused) as raised:
            chat(box(server, openai_api_key="sk-secret-123"))

        assert raised.value.exit_code == 12
        assert f"The server at {server.base_url} refused the key in RAG_OPENAI_API_KEY: {status}" in str(raised.value)
        assert "sk-secret-123" not in str(raised.value)


def test_the_key_is_sent_as_a_bearer_token_and_accepted():
    with OpenAIStandin(api_key="sk-secret-123") as server:
        assert chat(box(server, openai_api_key="sk-secret-123")) == "The answer is 42 [1]."
        assert {r.headers.get("authorization") for r in server.requests} == {"Bearer sk-secret-123"}
        with pytest.raises(KeyRefused, match=r"refused no key \(RAG_OPENAI_API_KEY is not set\)"):
            chat(box(server))


@pytest.mark.parametrize("status", [429, 503])
def test_a_busy_server_is_retried_then_answers_or_is_exit_6(status):
    with OpenAIStandin() as server:
        server.busy_status, server.busy_responses = status, 2
        assert chat(box(server)) == "The answer is 42 [1]."
        assert len(server.chat_requests()) == 3

        server.busy_responses = 10
        with pytest.raises(LLMBusy) as raised:
            chat(box(server))
        assert raised.value.exit_code == 6


def test_a_prompt_longer_than_the_context_is_the_question_too_long_error_with_the_figures():
    with OpenAIStandin() as server:
        server.chat_status = 400
        with pytest.raises(ContextTooLong) as raised:
            chat(box(server))

        assert raised.value.exit_code == 11
        assert "maximum context length is 4096 tokens" in str(raised.value)


def test_a_stream_cut_mid_answer_keeps_what_came_and_is_exit_8():
    with OpenAIStandin() as server:
        server.cut_after = 2
        pieces: list[str] = []
        with pytest.raises(StreamInterrupted) as raised:
            for piece in box(server).stream_chat(MODEL, QUESTION, OPTIONS, ChatUsage()):
                pieces.append(piece)

        assert pieces == ["The", " answer"] and raised.value.exit_code == 8


def test_an_error_sent_in_the_middle_of_the_stream_is_exit_8_with_its_words():
    with OpenAIStandin() as server:
        server.error_after = 2
        with pytest.raises(StreamInterrupted, match="KV cache ran out of blocks"):
            chat(box(server))


def test_an_html_page_from_a_proxy_says_the_server_is_not_openai_compatible():
    with OpenAIStandin() as server:
        server.html_page = "<html><body>502 Bad Gateway</body></html>"
        with pytest.raises(LLMUnavailable) as raised:
            box(server).list_models()

        assert str(raised.value) == (
            f"The server at {server.base_url} is not an OpenAI-compatible server (it answered 502 with an HTML page). "
            "Set RAG_OPENAI_URL to its API base, e.g. http://host:8000/v1."
        )


def test_a_server_that_is_down_is_exit_4_naming_the_address_and_how_to_start_one():
    url = f"http://127.0.0.1:{unused_port()}/v1"
    with pytest.raises(LLMUnavailable) as raised:
        OpenAICompatible(Settings(openai_url=url)).list_models()

    assert raised.value.exit_code == 4
    assert str(raised.value).startswith(f"Cannot reach the model server at {url}. Start it (e.g. `vllm serve MODEL`")


def test_a_silent_server_is_exit_7_after_the_read_timeout():
    with OpenAIStandin() as server:
        server.first_byte_delay = 2.0
        with pytest.raises(LLMTimeout) as raised:
            chat(box(server, read_timeout=0.3))

        assert raised.value.exit_code == 7


def test_fastapi_style_errors_are_quoted():
    with OpenAIStandin() as server:
        server.chat_status, server.error_style = 500, "detail"
        with pytest.raises(LLMError) as raised:
            chat(box(server))

        assert type(raised.value) is LLMError
        assert str(raised.value).startswith(f"The server at {server.base_url} answered 500: ")


def test_ten_thousand_served_models_are_listed_up_to_the_limit():
    names = [f"org/model-{i:05d}" for i in range(10_000)]
    with OpenAIStandin(models=names) as server:
        listed = box(server, max_models=50).list_models()

        assert [entry.name for entry in listed] == names[:50]


def test_no_pull_and_the_page_says_how_such_a_server_loads_models():
    with OpenAIStandin() as server:
        backend = box(server)

        assert not backend.can_pull() and backend.install_command(MODEL) is None
        with pytest.raises(LLMError, match="loads models itself"):
            list(backend.pull(MODEL))


@pytest.mark.parametrize("event", [b'data: {"choices": "x"}\n\n', b'data: {"choices": [{"delta": "x"}]}\n\n', b"data: [1, 2]\n\n"],
                         ids=["choices", "delta", "list"])
def test_a_stream_shaped_unlike_openais_is_one_error_never_a_traceback(event):
    send = lambda c: c.sendall(sse({"role": "assistant", "content": "Partial"}) + event)
    with ScriptedServer("text/event-stream", send) as server:
        pieces = []
        with pytest.raises(StreamInterrupted, match="sent something that is not an OpenAI stream in the middle"):
            for piece in OpenAICompatible(Settings(openai_url=f"http://127.0.0.1:{server.port}")).stream_chat("m", QUESTION, ChatOptions(4096), ChatUsage()):
                pieces.append(piece)

    assert pieces == ["Partial"]


def test_stopping_an_answer_closes_its_connection_at_once():
    with OpenAIStandin(reply=" ".join(["word"] * 40)) as server:
        server.token_delay = 0.2
        stream = box(server).stream_chat(MODEL, QUESTION, OPTIONS, ChatUsage())

        assert next(stream) == "word"
        stream.close()  # what Stop, a new question or a reload does to the page's generator

        deadline = time.monotonic() + 5
        while server._server._connections and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not server._server._connections
