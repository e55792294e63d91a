"""A real `transformers serve` on 127.0.0.1, serving a tiny random model built offline, speaks the OpenAI wire."""

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.fixtures.tiny_model import build_tiny_chat_model
from tests.ollama_standin import unused_port

GUARD = Path(__file__).resolve().parent / "netguard"
SERVE_PACKAGES = ("fastapi", "uvicorn", "openai", "pydantic", "accelerate")  # transformers[serving], as imported
STARTUP_DEADLINE = 180  # seconds; 6 to 15 s measured on the shared 2-core machine
QUESTION = [{"role": "user", "content": "What is the answer?"}]


@pytest.fixture(scope="session")
def transformers_server(tmp_path_factory):
    """Yield (base URL, model id, network log) of `transformers serve` pinned to a tiny model; kill it at the end."""
    missing = [name for name in SERVE_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"`transformers serve` cannot run: missing package(s) {', '.join(missing)}")
    folder = tmp_path_factory.mktemp("transformers-serve")
    model = build_tiny_chat_model(folder / "tiny-chat")
    port = unused_port()
    blocked = folder / "blocked.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(folder / "hf-home"), "PYTHONPATH": str(GUARD),
           "NETGUARD_LOG": str(blocked)}
    command = [sys.executable, "-m", "transformers.cli.transformers", "serve", str(model),
               "--host", "127.0.0.1", "--port", str(port)]
    log = folder / "serve.log"
    with log.open("w") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + STARTUP_DEADLINE
        while True:
            if process.poll() is not None:
                pytest.fail(f"transformers serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"transformers serve did not answer in {STARTUP_DEADLINE} s:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base_url}/models", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        yield base_url, str(model), blocked
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def stream_chat(base_url: str, body: dict) -> tuple[httpx.Response, list[str]]:
    """POST a streamed chat; return the response and its non-empty body lines."""
    with httpx.stream("POST", f"{base_url}/chat/completions", json=body, timeout=60) as response:
        lines = [line for line in response.iter_lines() if line]
    return response, lines


def test_streams_content_with_a_finish_reason_and_usage(transformers_server):
    base_url, model, blocked = transformers_server

    response, lines = stream_chat(base_url, {"model": model, "messages": QUESTION, "stream": True, "max_tokens": 8,
                                             "stream_options": {"include_usage": True}})

    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    assert all(line.startswith("data: ") for line in lines)
    chunks = [json.loads(line[6:]) for line in lines if line != "data: [DONE]"]
    choices = [choice for chunk in chunks for choice in chunk.get("choices", [])]
    assert choices[0]["delta"].get("role") == "assistant"
    assert "".join(choice["delta"].get("content") or "" for choice in choices)
    assert [choice.get("finish_reason") for choice in choices if choice.get("finish_reason")] in (["stop"], ["length"])
    usage = [chunk["usage"] for chunk in chunks if chunk.get("usage")][-1]
    assert usage["prompt_tokens"] > 0 and 0 < usage["completion_tokens"] <= 8
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert not blocked.exists(), blocked.read_text()


def test_stream_ends_without_done_and_usage_rides_on_the_finish_chunk(transformers_server):
    base_url, model, _ = transformers_server

    _, lines = stream_chat(base_url, {"model": model, "messages": QUESTION, "stream": True, "max_tokens": 4,
                                      "stream_options": {"include_usage": True}})

    last = json.loads(lines[-1][6:])
    assert "data: [DONE]" not in lines
    assert (last["choices"][0]["delta"], last["choices"][0]["finish_reason"]) == ({}, "length")
    assert last["usage"]["completion_tokens"] == 4


def test_lists_the_pinned_model_under_the_path_it_was_given(transformers_server):
    base_url, model, _ = transformers_server

    listed = httpx.get(f"{base_url}/models", timeout=10).json()

    assert listed["object"] == "list"
    assert [entry["id"] for entry in listed["data"]] == [model]


def test_another_model_is_refused_with_a_fastapi_detail(transformers_server):
    base_url, model, _ = transformers_server

    response = httpx.post(f"{base_url}/chat/completions", timeout=10,
                          json={"model": "other-model", "messages": QUESTION, "stream": True})

    assert response.status_code == 400
    assert response.json() == {"detail": f"Server is pinned to '{model}'; requested 'other-model'."}


def test_rag_ask_answers_from_transformers_serve_with_sources_and_usage(transformers_server, guide_store, tmp_path):
    base_url, model, _ = transformers_server
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_") and k != "OLLAMA_HOST"} | {
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "RAG_STORE_DIR": str(guide_store),
        "RAG_OPENAI_URL": base_url, "OLLAMA_HOST": f"127.0.0.1:{unused_port()}", "RAG_TOP_K": "2",
        "RAG_NUM_CTX": "2048", "RAG_ANSWER_TOKENS": "64"}

    asked = subprocess.run([sys.executable, "-m", "rag.ask", "--json", "--model", model, "How do I add my own documents?"],
                           env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)

    assert asked.returncode == 0, asked.stderr
    result = json.loads(asked.stdout)
    assert (result["model"], result["backend"], result["error"]) == (model, "openai", None)
    assert result["answer"] and result["sources"]
    assert result["context"]["prompt_eval_count"] > 0 and result["context"]["done_reason"] in ("stop", "length")
