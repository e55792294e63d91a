"""The OpenAI-compatible stand-in, driven over HTTP by plain httpx and by the official `openai` client."""

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.ollama_standin import unused_port
from tests.openai_standin import CONTEXT_MESSAGE, ERRORS, HTML_PAGE, MID_STREAM_ERROR, REASONING, OpenAIStandin

MODEL = "llama-3.2-3b"
REPLY = "The answer is 42 [1]."
REPLY_PIECES = ["The", " answer", " is", " 42", " [1]."]
QUESTION = [{"role": "user", "content": "What is the answer?"}]  # 4 words + 4 per message = 8 prompt tokens
USAGE = {"prompt_tokens": 8, "completion_tokens": 5, "total_tokens": 13}


@pytest.fixture
def server():
    with OpenAIStandin() as s:
        yield s


@pytest.fixture
def client(server):
    with openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0, timeout=5) as c:
        yield c


def post_chat(server: OpenAIStandin, **body) -> httpx.Response:
    """POST a chat request (streamed unless told otherwise) and return the whole response."""
    return httpx.post(f"{server.base_url}/chat/completions",
                      json={"model": MODEL, "messages": QUESTION, "stream": True, **body}, timeout=5)


def events(response: httpx.Response) -> list:
    """Return the stream's data payloads (JSON decoded, "[DONE]" as is), checking the SSE framing exactly."""
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    frames = response.text.split("\n\n")
    assert frames[-1] == "" and all(frame.startswith("data: ") and "\n" not in frame for frame in frames[:-1])
    return [frame[6:] if frame == "data: [DONE]" else json.loads(frame[6:]) for frame in frames[:-1]]


def deltas(stream: list) -> list[dict]:
    """Return the deltas of the chunks that have choices."""
    return [event["choices"][0]["delta"] for event in stream if isinstance(event, dict) and event.get("choices")]


def content(stream: list) -> str:
    """Return the streamed content joined."""
    return "".join(delta.get("content") or "" for delta in deltas(stream))


def test_models_list_has_max_model_len_in_vllm_flavour(server, client):
    response = httpx.get(f"{server.base_url}/models")

    assert (response.status_code, response.headers["content-type"]) == (200, "application/json")
    assert response.json() == {"object": "list", "data": [
        {"id": "Qwen/Qwen2.5-3B-Instruct", "object": "model", "created": 1_750_000_000, "owned_by": "vllm",
         "max_model_len": 32768},
        {"id": MODEL, "object": "model", "created": 1_750_000_000, "owned_by": "vllm", "max_model_len": 32768},
    ]}
    assert [m.id for m in client.models.list()] == ["Qwen/Qwen2.5-3B-Instruct", MODEL]


def test_models_list_serves_ten_thousand_entries():
    names = [f"org/model-{i:05d}" for i in range(10_000)]
    with OpenAIStandin(names) as s, openai.OpenAI(base_url=s.base_url, api_key="k", max_retries=0) as c:
        started = time.monotonic()
        listed = [m.id for m in c.models.list()]

    assert listed == names
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("flavour, props, lmstudio, max_model_len", [
    ("vllm", 404, 404, 4096),
    ("llamacpp", 200, 404, None),
    ("lmstudio", 404, 200, None),
    ("plain", 404, 404, None),
])
def test_each_flavour_exposes_the_context_length_its_own_way(flavour, props, lmstudio, max_model_len):
    with OpenAIStandin(flavour=flavour, context_length=4096) as s:
        listed = httpx.get(f"{s.base_url}/models").json()["data"][0]
        props_response = httpx.get(f"{s.url}/props")
        lmstudio_response = httpx.get(f"{s.url}/api/v0/models/{MODEL}")

    assert listed.get("max_model_len") == max_model_len
    assert listed["owned_by"] == {"vllm": "vllm", "llamacpp": "llamacpp", "lmstudio": "organization_owner",
                                  "plain": "system"}[flavour]
    assert (props_response.status_code, lmstudio_response.status_code) == (props, lmstudio)
    if props == 200:
        assert props_response.json()["default_generation_settings"]["n_ctx"] == 4096
    if lmstudio == 200:
        assert lmstudio_response.json()["max_context_length"] == 4096
    if props == 404:
        assert props_response.json() == {"detail": "Not Found"}


def test_llamacpp_answers_health():
    with OpenAIStandin(flavour="llamacpp") as s:
        assert httpx.get(f"{s.url}/health").json() == {"status": "ok"}


def test_lmstudio_describes_models_and_loads_one_on_its_first_chat():
    with OpenAIStandin(flavour="lmstudio", context_length=8192, embedding_models=["text-embedding-nomic"]) as s:
        before = httpx.get(f"{s.url}/api/v0/models/Qwen/Qwen2.5-3B-Instruct").json()
        post_chat(s, model="Qwen/Qwen2.5-3B-Instruct")
        after = httpx.get(f"{s.url}/api/v0/models/Qwen/Qwen2.5-3B-Instruct").json()
        listed = httpx.get(f"{s.url}/api/v0/models").json()
        missing = httpx.get(f"{s.url}/api/v0/models/nope")

    assert before == {"id": "Qwen/Qwen2.5-3B-Instruct", "object": "model", "type": "llm", "publisher": "Qwen",
                      "arch": "qwen2", "compatibility_type": "gguf", "quantization": "Q4_K_M", "state": "not-loaded",
                      "max_context_length": 8192}
    assert after["state"] == "loaded"
    assert [(m["id"], m["type"]) for m in listed["data"]] == [
        ("Qwen/Qwen2.5-3B-Instruct", "llm"), (MODEL, "llm"), ("text-embedding-nomic", "embeddings")]
    assert (missing.status_code, missing.json()["error"]["message"]) == (404, "The model `nope` does not exist.")


def test_streamed_chat_with_usage_is_the_exact_wire_format(server):
    stream = events(post_chat(server, stream_options={"include_usage": True}))

    chunk_ids = {event["id"] for event in stream[:-1]}
    assert len(chunk_ids) == 1 and chunk_ids.pop().startswith("chatcmpl-")
    assert all(event["object"] == "chat.completion.chunk" and event["model"] == MODEL for event in stream[:-1])
    assert stream[0]["choices"] == [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                                     "finish_reason": None}]
    assert [event["choices"][0]["delta"] for event in stream[1:6]] == [{"content": p} for p in REPLY_PIECES]
    assert [event["choices"][0]["finish_reason"] for event in stream[1:6]] == [None] * 4 + ["stop"]
    assert "usage" not in stream[5]
    assert (stream[6]["choices"], stream[6]["usage"]) == ([], USAGE)
    assert stream[7:] == ["[DONE]"]


def test_without_include_usage_no_usage_is_sent(server):
    stream = events(post_chat(server))

    assert len(stream) == 7 and stream[-1] == "[DONE]"
    assert not any("usage" in event for event in stream[:-1])


def test_official_client_streams_content_finish_reason_and_usage(server, client):
    chunks = list(client.chat.completions.create(model=MODEL, messages=QUESTION, stream=True,
                                                 stream_options={"include_usage": True}))

    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.model_dump(include=set(USAGE)) == USAGE


def test_no_done_mode_puts_usage_on_the_finish_chunk_and_ends_with_the_body(server, client):
    server.send_done, server.usage_style = False, "final_chunk"

    stream = events(post_chat(server))
    chunks = list(client.chat.completions.create(model=MODEL, messages=QUESTION, stream=True))

    assert "[DONE]" not in stream and len(stream) == 6
    assert (stream[-1]["choices"][0]["finish_reason"], stream[-1]["usage"]) == ("stop", USAGE)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == REPLY
    assert chunks[-1].usage.total_tokens == 13


def test_finish_alone_sends_finish_reason_on_an_empty_delta(server):
    server.finish_alone = True

    stream = events(post_chat(server))

    assert [event["choices"][0]["finish_reason"] for event in stream[:-1]] == [None] * 6 + ["stop"]
    assert stream[-2]["choices"][0]["delta"] == {}


def test_usage_style_never_sends_no_usage_even_when_asked(server):
    server.usage_style = "never"

    stream = events(post_chat(server, stream_options={"include_usage": True}))

    assert not any("usage" in event for event in stream[:-1]) and stream[-1] == "[DONE]"


@pytest.mark.parametrize("limit", ["max_tokens", "max_completion_tokens"])
def test_a_small_token_limit_stops_with_length(server, limit):
    stream = events(post_chat(server, **{limit: 2}, stream_options={"include_usage": True}))

    assert content(stream) == "The answer"
    assert stream[2]["choices"][0]["finish_reason"] == "length"
    assert stream[3]["usage"]["completion_tokens"] == 2


def test_ignore_max_tokens_streams_the_whole_reply(server):
    server.ignore_max_tokens = True

    stream = events(post_chat(server, max_tokens=2))

    assert content(stream) == REPLY and stream[-2]["choices"][0]["finish_reason"] == "stop"


def test_non_streamed_chat_is_one_completion(server, client):
    response = post_chat(server, stream=False)
    completion = client.chat.completions.create(model=MODEL, messages=QUESTION)

    body = response.json()
    assert (response.status_code, body["object"], body["model"]) == (200, "chat.completion", MODEL)
    assert body["choices"] == [{"index": 0, "message": {"role": "assistant", "content": REPLY}, "logprobs": None,
                                "finish_reason": "stop"}]
    assert body["usage"] == USAGE
    assert (completion.choices[0].message.content, completion.usage.prompt_tokens) == (REPLY, 8)


def test_prompt_tokens_are_words_plus_four_per_message(server):
    messages = [{"role": "system", "content": "Answer from the documents."},
                {"role": "user", "content": [{"type": "text", "text": "What is it?"}]}]

    body = post_chat(server, messages=messages, stream=False).json()

    assert body["usage"]["prompt_tokens"] == 4 + 4 + 3 + 4


def test_reply_may_be_pieces_or_a_function_of_the_request(server):
    server.reply = ["<thi", "nk>", "x"]
    pieces = [d.get("content") for d in deltas(events(post_chat(server)))]
    server.reply = lambda body: f"You said {body['messages'][-1]['content']}"
    echoed = post_chat(server, stream=False).json()["choices"][0]["message"]["content"]

    assert pieces == ["", "<thi", "nk>", "x"]
    assert echoed == "You said What is the answer?"


@pytest.mark.parametrize("status, error_class", [
    (400, openai.BadRequestError),
    (401, openai.AuthenticationError),
    (403, openai.PermissionDeniedError),
    (429, openai.RateLimitError),
    (503, openai.InternalServerError),
])
def test_chat_status_answers_its_error_body(server, client, status, error_class):
    server.chat_status = status

    response = post_chat(server)
    with pytest.raises(error_class) as raised:
        client.chat.completions.create(model=MODEL, messages=QUESTION, stream=True)

    assert (response.status_code, response.headers["content-type"]) == (status, "application/json")
    assert response.json() == {"error": ERRORS[status]}
    assert (raised.value.status_code, raised.value.body) == (status, ERRORS[status])


def test_context_error_text_is_the_openai_wording():
    assert ERRORS[400]["message"] == (
        "This model's maximum context length is 4096 tokens. However, you requested 9000 tokens (8000 in the "
        "messages, 1000 in the completion). Please reduce the length of the messages or completion.")


def test_chat_status_404_names_the_requested_model(server):
    server.chat_status = 404

    response = post_chat(server)

    assert response.status_code == 404
    assert response.json()["error"] == {"message": f"The model `{MODEL}` does not exist.", "type": "NotFoundError",
                                        "param": "model", "code": 404}


def test_unknown_model_is_404_automatically(server, client):
    response = post_chat(server, model="gpt-nothing")
    with pytest.raises(openai.NotFoundError, match="The model `gpt-nothing` does not exist."):
        client.chat.completions.create(model="gpt-nothing", messages=QUESTION)

    assert response.status_code == 404
    assert response.json()["error"]["message"] == "The model `gpt-nothing` does not exist."


def test_models_status_fails_the_listing(server, client):
    server.models_status = 401

    response = httpx.get(f"{server.base_url}/models")
    with pytest.raises(openai.AuthenticationError):
        client.models.list()

    assert (response.status_code, response.json()) == (401, {"error": ERRORS[401]})
    assert post_chat(server).status_code == 200


def test_a_prompt_longer_than_the_context_is_400_with_the_counts():
    with OpenAIStandin(context_length=4096) as s:
        long = [{"role": "user", "content": "word " * 7996}]  # 7996 words + 4 = 8000 tokens
        response = post_chat(s, messages=long, max_tokens=1000)
        fits = post_chat(s, max_tokens=1000)

    assert response.status_code == 400
    assert response.json()["error"] == {**ERRORS[400], "message": CONTEXT_MESSAGE.format(
        limit=4096, total=9000, prompt=8000, completion=1000)}
    assert response.json()["error"]["message"] == ERRORS[400]["message"]
    assert fits.status_code == 200


@pytest.mark.parametrize("status", [429, 503])
def test_busy_for_the_first_requests_then_answers(server, status):
    server.busy_responses, server.busy_status = 2, status

    statuses = [post_chat(server).status_code for _ in range(3)]

    assert statuses == [status, status, 200]
    assert server.busy_responses == 0


def test_busy_answers_carry_retry_after_when_set(server):
    server.busy_responses, server.retry_after = 1, "0.05"

    busy, answered = post_chat(server), post_chat(server)

    assert (busy.status_code, busy.headers["retry-after"], busy.json()) == (429, "0.05", {"error": ERRORS[429]})
    assert (answered.status_code, "retry-after" in answered.headers) == (200, False)


def test_official_client_retries_busy_answers_after_retry_after(server):
    server.busy_responses, server.retry_after = 2, "0.05"

    with openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=2, timeout=5) as c:
        completion = c.chat.completions.create(model=MODEL, messages=QUESTION)

    assert completion.choices[0].message.content == REPLY
    assert len(server.chat_requests()) == 3


def test_detail_style_errors_are_fastapi_shaped(server, client):
    server.error_style, server.chat_status = "detail", 401

    response = post_chat(server)
    with pytest.raises(openai.AuthenticationError) as raised:
        client.chat.completions.create(model=MODEL, messages=QUESTION)

    assert (response.status_code, response.json()) == (401, {"detail": "Invalid API key"})
    assert raised.value.body == {"detail": "Invalid API key"}


def test_detail_style_unknown_model(server):
    server.error_style = "detail"

    response = post_chat(server, model="x")

    assert (response.status_code, response.json()) == (404, {"detail": "The model `x` does not exist."})


def test_html_page_answers_every_path_like_a_proxy(server, client):
    server.html_page = HTML_PAGE

    listing = httpx.get(f"{server.base_url}/models")
    chat = post_chat(server)
    with pytest.raises(openai.InternalServerError) as raised:
        client.models.list()

    for response in (listing, chat):
        assert (response.status_code, response.headers["content-type"]) == (502, "text/html; charset=utf-8")
        assert response.text == HTML_PAGE
    assert raised.value.status_code == 502


def test_stream_cut_mid_answer_closes_the_socket_without_done(server, client):
    server.cut_after = 2

    frames = []
    with pytest.raises(httpx.RemoteProtocolError):
        with httpx.stream("POST", f"{server.base_url}/chat/completions", timeout=5,
                          json={"model": MODEL, "messages": QUESTION, "stream": True}) as response:
            frames.extend(response.iter_lines())
    received = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in client.chat.completions.create(model=MODEL, messages=QUESTION, stream=True):
            received.append(chunk.choices[0].delta.content)

    data = [json.loads(line[6:]) for line in frames if line.startswith("data: ")]
    assert content(data) == "The answer" and "data: [DONE]" not in frames
    assert received == ["", "The", " answer"]


def test_slow_first_byte_delays_the_answer(server):
    server.first_byte_delay = 0.5

    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.base_url}/chat/completions", timeout=httpx.Timeout(5, read=0.1),
                   json={"model": MODEL, "messages": QUESTION, "stream": True})
    started = time.monotonic()
    stream = events(post_chat(server))

    assert time.monotonic() - started >= 0.5
    assert content(stream) == REPLY


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_arrives_in_its_own_delta_field_before_the_content(server, client, field):
    server.reasoning, server.reasoning_style = REASONING, field

    stream = events(post_chat(server, stream_options={"include_usage": True}))
    completion = client.chat.completions.create(model=MODEL, messages=QUESTION)

    fields = [next(iter(delta)) for delta in deltas(stream)[1:]]
    thinking = len(REASONING.split())
    assert fields == [field] * thinking + ["content"] * 5
    assert "".join(delta.get(field, "") for delta in deltas(stream)) == REASONING
    assert content(stream) == REPLY
    assert stream[-2]["usage"]["completion_tokens"] == thinking + 5
    assert completion.choices[0].message.model_extra[field] == REASONING


def test_inline_think_tags_are_cut_across_pieces(server):
    server.reasoning, server.reasoning_style = REASONING, "inline"

    stream = events(post_chat(server))

    pieces = [delta["content"] for delta in deltas(stream)[1:]]
    assert pieces[:2] == ["<thi", "nk>\n"]
    assert not any("<think>" in piece or "</think>" in piece for piece in pieces)
    assert content(stream) == f"<think>\n{REASONING}\n</think>\n\n{REPLY}"


def test_error_object_mid_stream_then_done(server, client):
    server.error_after = 3

    stream = events(post_chat(server))
    with pytest.raises(openai.APIError, match="KV cache"):
        list(client.chat.completions.create(model=MODEL, messages=QUESTION, stream=True))

    assert content(stream) == "The answer is"
    assert stream[-2] == {"error": {"message": MID_STREAM_ERROR, "type": "InternalServerError", "param": None,
                                    "code": 500}}
    assert stream[-1] == "[DONE]"


def test_required_api_key_is_checked_on_every_route():
    with OpenAIStandin(api_key="sk-right") as s:
        missing = httpx.get(f"{s.base_url}/models")
        wrong = post_chat(s)
        right = httpx.get(f"{s.base_url}/models", headers={"Authorization": "Bearer sk-right"})
        with openai.OpenAI(base_url=s.base_url, api_key="sk-right", max_retries=0) as c:
            answer = c.chat.completions.create(model=MODEL, messages=QUESTION).choices[0].message.content
        with openai.OpenAI(base_url=s.base_url, api_key="sk-wrong", max_retries=0) as c:
            with pytest.raises(openai.AuthenticationError):
                c.models.list()

    assert (missing.status_code, missing.json()) == (401, {"error": ERRORS[401]})
    assert wrong.status_code == 401
    assert right.status_code == 200 and answer == REPLY


def test_requests_are_recorded_with_headers_and_bodies(server, client):
    client.chat.completions.create(model=MODEL, messages=QUESTION, max_completion_tokens=7)
    httpx.get(f"{server.base_url}/models")

    chat, listing = server.requests
    assert (chat.method, chat.path, listing.method, listing.path) == (
        "POST", "/v1/chat/completions", "GET", "/v1/models")
    assert chat.headers["authorization"] == "Bearer sk-test"
    assert chat.headers["content-type"] == "application/json"
    assert chat.body == {"model": MODEL, "messages": QUESTION, "max_completion_tokens": 7}
    assert server.chat_requests() == [chat.body]


@pytest.mark.parametrize("path", ["/v1//models", "/models", "/v1/models/"])
def test_naively_joined_paths_are_404(server, path):
    response = httpx.get(f"{server.url}{path}")

    assert (response.status_code, response.json()) == (404, {"detail": "Not Found"})


@pytest.mark.parametrize("body, message", [
    (b"not json", "Expecting value: the request body is not a JSON object"),
    (b"", "Request body is missing"),
    (json.dumps({"model": MODEL}).encode(), "messages must be a non-empty list"),
    (json.dumps({"model": MODEL, "messages": QUESTION, "max_tokens": "5"}).encode(),
     "max_tokens must be a non-negative integer"),
])
def test_bad_request_bodies_are_400(server, body, message):
    response = httpx.post(f"{server.base_url}/chat/completions", content=body,
                          headers={"Content-Type": "application/json"})

    assert (response.status_code, response.json()["error"]["message"]) == (400, message)


def test_chat_with_an_embedding_model_is_400():
    with OpenAIStandin(embedding_models=["text-embedding-nomic"]) as s:
        response = post_chat(s, model="text-embedding-nomic")

    assert response.status_code == 400
    assert "does not support Chat Completions API" in response.json()["error"]["message"]


def test_unknown_flavour_is_refused():
    with pytest.raises(ValueError, match="flavour"):
        OpenAIStandin(flavour="ollama")


def test_main_serves_on_the_given_port():
    port = unused_port()
    command = [sys.executable, "-m", "tests.openai_standin", "--port", str(port), "--flavour", "llamacpp",
               "--reply", "Hi there"]
    process = subprocess.Popen(command, cwd=Path(__file__).parent.parent, stdout=subprocess.PIPE, text=True)
    try:
        banner = process.stdout.readline()
        with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0, timeout=5) as c:
            pieces = [chunk.choices[0].delta.content
                      for chunk in c.chat.completions.create(model=MODEL, messages=QUESTION, stream=True)]
        props = httpx.get(f"http://127.0.0.1:{port}/props").json()
    finally:
        process.terminate()
        process.wait(timeout=10)

    assert banner == f"OpenAI-compatible stand-in (llamacpp) listening on http://127.0.0.1:{port}/v1\n"
    assert pieces == ["", "Hi", " there"]
    assert props["default_generation_settings"]["n_ctx"] == 32768
