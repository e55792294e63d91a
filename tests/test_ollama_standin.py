"""The Ollama stand-in, driven over HTTP through the real `ollama` client."""

import math
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import ollama
import pytest

from tests.ollama_standin import OllamaStandin, unused_port

REPLY_PIECES = ["The", " answer", " is", " 42", " [1]."]
QUESTION = [{"role": "user", "content": "What is the answer?"}]  # 19 characters: ceil(19 / 4) + 4 = 9 tokens


@pytest.fixture
def standin():
    with OllamaStandin() as s:
        yield s


@pytest.fixture
def client(standin):
    with ollama.Client(host=standin.url, timeout=10) as c:
        yield c


def test_root_and_version_answer_like_ollama(standin):
    get = httpx.get(standin.url)
    head = httpx.head(standin.url)
    version = httpx.get(f"{standin.url}/api/version")

    assert (get.status_code, get.headers["content-type"], get.text) == (200, "text/plain; charset=utf-8", "Ollama is running")
    assert (head.status_code, head.headers["content-length"], head.content) == (200, "17", b"")
    assert (version.status_code, version.json()) == (200, {"version": "0.12.0"})


def test_url_and_host_name_the_bound_port(standin):
    assert standin.port > 0
    assert standin.host == f"127.0.0.1:{standin.port}"
    assert standin.url == f"http://127.0.0.1:{standin.port}"
    with ollama.Client(host=standin.host, timeout=10) as c:
        assert c.list().models


def test_unknown_path_is_404_with_error_body(standin):
    response = httpx.post(f"{standin.url}/api/nothing", json={})

    assert (response.status_code, response.json()) == (404, {"error": "404 page not found"})


def test_post_without_body_is_400(standin):
    response = httpx.post(f"{standin.url}/api/chat")

    assert (response.status_code, response.json()) == (400, {"error": "missing request body"})


def test_list_returns_tagged_names_including_embedding_models(client):
    models = client.list().models

    assert [m.model for m in models] == ["qwen2.5:3b", "llama3.2:latest", "nomic-embed-text:latest"]
    assert [m.details.family for m in models] == ["llama", "llama", "bert"]
    assert all(m.size > 0 and len(m.digest) == 64 and m.modified_at.tzinfo for m in models)


def test_tags_carry_name_equal_to_model(standin):
    models = httpx.get(f"{standin.url}/api/tags").json()["models"]

    assert [(m["name"], m["model"]) for m in models] == [
        ("qwen2.5:3b", "qwen2.5:3b"),
        ("llama3.2:latest", "llama3.2:latest"),
        ("nomic-embed-text:latest", "nomic-embed-text:latest"),
    ]


def test_show_reports_trained_context_length_and_capabilities():
    with OllamaStandin(context_length=131072) as s, ollama.Client(host=s.url, timeout=10) as c:
        chat_model = c.show("llama3.2")
        embedder = c.show("nomic-embed-text:latest")

    assert chat_model.modelinfo["general.architecture"] == "llama"
    assert chat_model.modelinfo["llama.context_length"] == 131072
    assert chat_model.capabilities == ["completion"]
    assert chat_model.parameters == 'stop                           "<|eot_id|>"'
    assert chat_model.details.quantization_level == "Q4_K_M"
    assert "TEMPLATE" in chat_model.modelfile
    assert embedder.capabilities == ["embedding"]
    assert embedder.modelinfo["bert.context_length"] == 2048


def test_show_unknown_model_is_404_with_name_as_sent(client):
    with pytest.raises(ollama.ResponseError) as raised:
        client.show("mistral")

    assert (raised.value.status_code, raised.value.error) == (404, "model 'mistral' not found")


def test_streamed_chat_pieces_concatenate_to_reply_in_order(client):
    chunks = list(client.chat("llama3.2", QUESTION, stream=True))
    final = chunks[-1]

    assert [c.message.content for c in chunks[:-1]] == REPLY_PIECES
    assert "".join(c.message.content for c in chunks) == "The answer is 42 [1]."
    assert [c.done for c in chunks] == [False] * 5 + [True]
    assert all(c.model == "llama3.2" and c.message.role == "assistant" for c in chunks)
    assert (final.done_reason, final.prompt_eval_count, final.eval_count) == ("stop", 9, 5)
    assert (final.load_duration, final.prompt_eval_duration, final.eval_duration) == (1_000_000, 9_000_000, 100_000_000)
    assert final.total_duration == 110_000_000


def test_chat_stream_is_ndjson_delivered_chunk_by_chunk(standin):
    standin.token_delay = 0.05
    arrivals = []
    with httpx.stream("POST", f"{standin.url}/api/chat", json={"model": "qwen2.5:3b", "messages": QUESTION}) as r:
        content_type = r.headers["content-type"]
        for _line in r.iter_lines():
            arrivals.append(time.monotonic())

    assert content_type == "application/x-ndjson"
    assert len(arrivals) == 6
    assert arrivals[4] - arrivals[0] >= 0.1  # four 0.05 s gaps; a buffered stream would arrive at once


def test_chat_without_stream_returns_whole_reply(client):
    response = client.chat("qwen2.5:3b", QUESTION, stream=False)

    assert (response.message.content, response.done, response.done_reason) == ("The answer is 42 [1].", True, "stop")
    assert (response.prompt_eval_count, response.eval_count) == (9, 5)


def test_reply_callable_receives_request_body(standin, client):
    standin.reply = lambda body: f"You said: {body['messages'][-1]['content']}"

    response = client.chat("qwen2.5:3b", [{"role": "user", "content": "hello  there"}])

    assert response.message.content == "You said: hello  there"
    assert response.eval_count == 4


def test_num_predict_stops_the_reply_with_done_reason_length(client):
    response = client.chat("qwen2.5:3b", QUESTION, options={"num_predict": 2})

    assert (response.message.content, response.done_reason, response.eval_count) == ("The answer", "length", 2)


def test_warm_up_with_no_messages_loads_the_model(client):
    chunks = list(client.chat("llama3.2", [], stream=True, options={"num_ctx": 8192}, keep_alive="30m"))
    loaded = client.ps().models

    assert [(c.done, c.done_reason, c.message.content) for c in chunks] == [(True, "load", "")]
    assert [(m.model, m.context_length) for m in loaded] == [("llama3.2:latest", 8192)]


def test_warm_up_with_keep_alive_zero_unloads_the_model(client):
    client.chat("llama3.2", QUESTION)

    response = client.chat("llama3.2", [], keep_alive=0)

    assert response.done_reason == "unload"
    assert client.ps().models == []


def test_ps_lists_loaded_models_with_num_ctx_and_expiry(client):
    assert client.ps().models == []

    client.chat("qwen2.5:3b", QUESTION, options={"num_ctx": 8192}, keep_alive="30m")
    client.chat("llama3.2", QUESTION, options={"num_ctx": 65536})
    client.embed("nomic-embed-text", "x")
    loaded = {m.model: m for m in client.ps().models}

    assert {name: m.context_length for name, m in loaded.items()} == {
        "qwen2.5:3b": 8192,
        "llama3.2:latest": 32768,
        "nomic-embed-text:latest": 2048,
    }
    remaining = loaded["qwen2.5:3b"].expires_at - datetime.now(timezone.utc)
    assert timedelta(minutes=29) < remaining <= timedelta(minutes=30)
    assert timedelta(minutes=4) < loaded["llama3.2:latest"].expires_at - datetime.now(timezone.utc) <= timedelta(minutes=5)
    assert loaded["qwen2.5:3b"].size_vram == loaded["qwen2.5:3b"].size


def test_invalid_keep_alive_is_400(client):
    with pytest.raises(ollama.ResponseError) as raised:
        client.chat("qwen2.5:3b", QUESTION, keep_alive="soon")

    assert (raised.value.status_code, raised.value.error) == (400, 'time: invalid duration "soon"')


def test_chat_unknown_model_raises_404_at_first_next(client):
    stream = client.chat("mistral", QUESTION, stream=True)

    with pytest.raises(ollama.ResponseError) as raised:
        next(stream)

    assert (raised.value.status_code, raised.value.error) == (404, "model 'mistral' not found")


def test_chat_without_model_is_400(standin):
    response = httpx.post(f"{standin.url}/api/chat", json={"messages": QUESTION})

    assert (response.status_code, response.json()) == (400, {"error": "model is required"})


def test_chat_with_embedding_only_model_is_400(client):
    with pytest.raises(ollama.ResponseError) as raised:
        client.chat("nomic-embed-text", QUESTION)

    assert (raised.value.status_code, raised.value.error) == (400, '"nomic-embed-text" does not support chat')


def test_busy_server_answers_503_then_serves_the_next_request(standin, client):
    standin.busy_responses = 2

    with pytest.raises(ollama.ResponseError) as chat_refused:
        next(client.chat("qwen2.5:3b", QUESTION, stream=True))
    with pytest.raises(ollama.ResponseError) as pull_refused:
        client.pull("tinyllama")
    response = client.chat("qwen2.5:3b", QUESTION)

    busy = "server busy, please try again. maximum pending requests exceeded"
    assert (chat_refused.value.status_code, chat_refused.value.error) == (503, busy)
    assert (pull_refused.value.status_code, pull_refused.value.error) == (503, busy)
    assert response.message.content == "The answer is 42 [1]."
    assert standin.busy_responses == 0


def test_error_mid_stream_yields_earlier_pieces_then_raises_status_minus_one(standin, client):
    standin.fail_after_chunks = 2
    pieces = []

    with pytest.raises(ollama.ResponseError) as raised:
        for chunk in client.chat("qwen2.5:3b", QUESTION, stream=True):
            pieces.append(chunk.message.content)

    assert pieces == ["The", " answer"]
    assert raised.value.status_code == -1
    assert raised.value.error == "an error was encountered while running the model: unexpected EOF"


def test_error_during_generation_without_stream_is_500(standin, client):
    standin.fail_after_chunks = 2

    with pytest.raises(ollama.ResponseError) as raised:
        client.chat("qwen2.5:3b", QUESTION)

    assert raised.value.status_code == 500
    assert raised.value.error == "an error was encountered while running the model: unexpected EOF"


def test_pull_streams_progress_then_the_model_is_listed(client):
    progress = list(client.pull("tinyllama", stream=True))
    downloads = progress[1:6]

    assert [p.status for p in progress] == ["pulling manifest"] + [downloads[0].status] * 5 + [
        "verifying sha256 digest",
        "writing manifest",
        "success",
    ]
    assert downloads[0].status == f"pulling {downloads[0].digest[7:19]}"
    assert downloads[0].digest.startswith("sha256:") and len(downloads[0].digest) == 71
    total = downloads[0].total
    assert [p.completed for p in downloads] == [None, total // 4, total // 2, total * 3 // 4, total]
    assert "tinyllama:latest" in [m.model for m in client.list().models]
    assert client.show("tinyllama").capabilities == ["completion"]


def test_pull_without_stream_returns_success(client):
    assert client.pull("tinyllama:latest").status == "success"
    assert "tinyllama:latest" in [m.model for m in client.list().models]


def test_pull_unknown_name_streams_manifest_then_raises(client):
    statuses = []

    with pytest.raises(ollama.ResponseError) as raised:
        for progress in client.pull("no-such-model", stream=True):
            statuses.append(progress.status)

    assert statuses == ["pulling manifest"]
    assert (raised.value.status_code, raised.value.error) == (-1, "pull model manifest: file does not exist")


def test_pull_unknown_name_without_stream_is_500(client):
    with pytest.raises(ollama.ResponseError) as raised:
        client.pull("no-such-model")

    assert (raised.value.status_code, raised.value.error) == (500, "pull model manifest: file does not exist")


def test_embed_returns_deterministic_unit_vectors(client):
    one = client.embed("nomic-embed-text", "alpha")
    many = client.embed("nomic-embed-text:latest", ["alpha", "beta"])

    assert one.model == "nomic-embed-text"
    assert len(one.embeddings) == 1 and len(one.embeddings[0]) == 8
    assert many.embeddings[0] == one.embeddings[0]
    assert many.embeddings[1] != many.embeddings[0]
    assert all(math.isclose(math.fsum(x * x for x in v), 1.0) for v in many.embeddings)


def test_embed_unknown_model_is_404(client):
    with pytest.raises(ollama.ResponseError) as raised:
        client.embed("all-minilm", "alpha")

    assert (raised.value.status_code, raised.value.error) == (404, 'model "all-minilm" not found, try pulling it first')


def test_unreachable_server_raises_connect_error_when_streaming():
    stream = ollama.Client(host=f"127.0.0.1:{unused_port()}", timeout=10).chat("qwen2.5:3b", QUESTION, stream=True)

    with pytest.raises(httpx.ConnectError):
        next(stream)


def test_unreachable_server_raises_connection_error_when_not_streaming():
    with pytest.raises(ConnectionError, match="Failed to connect to Ollama"):
        ollama.Client(host=f"127.0.0.1:{unused_port()}", timeout=10).chat("qwen2.5:3b", QUESTION)


def test_stop_drops_open_keep_alive_connections(standin, client):
    client.list()

    standin.stop()

    with pytest.raises(ConnectionError):
        client.list()


def test_slow_first_token_exceeds_a_short_read_timeout(standin):
    standin.first_token_delay = 0.5

    with ollama.Client(host=standin.url, timeout=0.1) as impatient:
        with pytest.raises(httpx.ReadTimeout):
            next(impatient.chat("qwen2.5:3b", QUESTION, stream=True))


def test_first_token_delay_is_reported_as_load_duration(standin, client):
    standin.first_token_delay = 0.2

    started = time.monotonic()
    response = client.chat("qwen2.5:3b", QUESTION)

    assert time.monotonic() - started >= 0.2
    assert response.load_duration == 201_000_000


def test_prompt_that_fits_reports_the_estimated_token_count(client):
    messages = [{"role": "system", "content": "x" * 10}, {"role": "user", "content": "y" * 7}]

    response = client.chat("qwen2.5:3b", messages, options={"num_ctx": 64})

    assert response.prompt_eval_count == math.ceil(17 / 4) + 8


def test_prompt_longer_than_num_ctx_is_truncated_silently(client):
    response = client.chat("qwen2.5:3b", [{"role": "user", "content": "z" * 1000}], options={"num_ctx": 64})

    assert (response.done_reason, response.message.content) == ("stop", "The answer is 42 [1].")
    assert response.prompt_eval_count == 32


def test_prompt_is_truncated_at_4096_when_num_ctx_is_not_sent(client):
    response = client.chat("qwen2.5:3b", [{"role": "user", "content": "z" * 20000}])

    assert response.prompt_eval_count == 2048


def test_recorded_requests_carry_options_and_keep_alive_as_sent(standin, client):
    client.list()
    list(client.chat("qwen2.5:3b", QUESTION, stream=True, options={"num_ctx": 8192, "temperature": 0.1}, keep_alive="30m"))

    assert [(method, path) for method, path, _body in standin.requests] == [("GET", "/api/tags"), ("POST", "/api/chat")]
    assert standin.requests[0] == ("GET", "/api/tags", None)
    assert standin.chat_requests() == [{
        "model": "qwen2.5:3b",
        "messages": QUESTION,
        "tools": [],
        "stream": True,
        "options": {"num_ctx": 8192, "temperature": 0.1},
        "keep_alive": "30m",
    }]


def test_cli_serves_until_terminated():
    port = unused_port()
    command = [sys.executable, "-m", "tests.ollama_standin", "--port", str(port), "--reply", "Hi there", "--token-delay", "0"]
    process = subprocess.Popen(command, cwd=Path(__file__).parent.parent, stdout=subprocess.PIPE, text=True)
    try:
        banner = process.stdout.readline()
        with ollama.Client(host=f"127.0.0.1:{port}", timeout=10) as c:
            pieces = [chunk.message.content for chunk in c.chat("qwen2.5:3b", QUESTION, stream=True)]
    finally:
        process.terminate()
        process.wait(timeout=10)

    assert banner == f"Ollama stand-in listening on http://127.0.0.1:{port}\n"
    assert pieces == ["Hi", " there", ""]


def test_show_can_omit_the_trained_context_length_while_chat_still_caps_at_it():
    with OllamaStandin(context_length=1024) as s, ollama.Client(host=s.url, timeout=10) as c:
        s.show_context_length = False
        shown = c.show("qwen2.5:3b")
        response = c.chat("qwen2.5:3b", [{"role": "user", "content": "z" * 8000}], options={"num_ctx": 8192})

    assert "llama.context_length" not in shown.modelinfo and shown.modelinfo["general.architecture"] == "llama"
    assert response.prompt_eval_count == 512
