"""Against a real Ollama at OLLAMA_HOST (default 127.0.0.1:11434); skipped when none answers or it has no chat model.

Run with `python -m pytest -m ollama` on a machine with Ollama running and a small chat model pulled.
RAG_LIVE_MODEL picks the model (default: RAG_MODEL if installed, else the smallest installed chat model).
"""
from __future__ import annotations

import csv
import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from rag.chat.turn import Turn, answer_room, chat_options, stream_answer
from rag.llm.backend import ChatOptions, ChatUsage, context_window
from rag.llm.ollama import Ollama, forget_model_info, normalise_model
from rag.chat.prompt import build_prompt
from rag.core.settings import Settings
from tests.test_prompt import doc

pytestmark = pytest.mark.ollama

HOST = os.environ.get("OLLAMA_HOST") or "127.0.0.1:11434"  # read before the fixtures clear the environment
WANTED = os.environ.get("RAG_LIVE_MODEL") or os.environ.get("RAG_MODEL") or "qwen2.5:3b"


def live_server() -> tuple[str, str | None]:
    """The server's URL and a chat model to use, or a reason to skip."""
    url = HOST if "://" in HOST else f"http://{HOST}"
    try:
        if httpx.get(url, timeout=2).text.strip() != "Ollama is running":
            return url, None
        models = httpx.get(f"{url}/api/tags", timeout=5).json()["models"]
    except (httpx.HTTPError, ValueError, KeyError):
        return url, None
    chat = [m for m in models if "bert" not in (m.get("details") or {}).get("family", "") and "embed" not in m["model"]]
    names = [normalise_model(m["model"]) for m in chat]
    if normalise_model(WANTED) in names:
        return url, normalise_model(WANTED)
    return url, min(chat, key=lambda m: m.get("size", 0))["model"] if chat else None


URL, MODEL = live_server()
requires_live = pytest.mark.skipif(MODEL is None, reason=f"no Ollama with a chat model answers at {HOST}")


@pytest.fixture
def settings() -> Settings:
    forget_model_info()
    return Settings(ollama_host=URL, num_ctx=4096, answer_tokens=64, keep_alive="10m", read_timeout=300)


@requires_live
def test_trained_context_is_read_and_caps_num_ctx(settings):
    llm = Ollama(settings)

    trained = llm.model_info(MODEL).context_length

    assert trained and trained >= 2048
    assert context_window(llm.model_info(MODEL), 10**7) == trained


@requires_live
def test_warm_then_answer_streams_with_num_ctx_and_keep_alive(settings):
    llm = Ollama(settings)
    num_ctx = context_window(llm.model_info(MODEL), settings.num_ctx)
    llm.warm(MODEL, num_ctx)

    loaded = {normalise_model(m.model): m for m in llm.client.ps().models}
    assert loaded[MODEL].context_length == num_ctx
    assert loaded[MODEL].expires_at - datetime.now(timezone.utc) > timedelta(minutes=9)

    usage = ChatUsage()
    messages = [{"role": "user", "content": "Reply with the single word: ready"}]
    text = "".join(llm.stream_chat(MODEL, messages, ChatOptions(num_ctx, 0.0, 16), usage))
    assert text.strip()
    assert usage.prompt_tokens > 0 and usage.finish_reason in ("stop", "length")


@requires_live
def test_grounded_prompt_is_counted_within_our_estimate_and_answer_cites(settings):
    llm = Ollama(settings)
    num_ctx = context_window(llm.model_info(MODEL), settings.num_ctx)
    docs = [doc("guide", "The store folder is set with RAG_STORE_DIR; the default is ./store.")]
    prompt = build_prompt("Which variable sets the store folder?", docs, [], num_ctx - answer_room(num_ctx, settings))
    turn = Turn("Which variable sets the store folder?", "", MODEL, num_ctx, docs, prompt, answer_tokens=64)

    answer = "".join(stream_answer(turn, llm, settings))

    assert turn.error is None, turn.error
    assert prompt.estimated_tokens >= turn.usage.prompt_tokens > prompt.estimated_tokens * 0.5
    assert not turn.truncated
    assert "RAG_STORE_DIR" in answer
    assert chat_options(turn, settings).context == num_ctx


@requires_live
def test_unknown_model_is_model_not_found(settings):
    from rag.core.errors import ModelNotFound

    with pytest.raises(ModelNotFound):
        list(Ollama(settings).stream_chat("no-such-model-xyz", [{"role": "user", "content": "hi"}], ChatOptions(4096), ChatUsage()))


FAQ = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "faq"


@requires_live
def test_answer_evaluation_on_five_faq_questions(tmp_path, monkeypatch, embedder, capsys):
    from ingest.loaders import RecordFields
    from ingest.pipeline import IngestOptions, ingest
    from rag.evaluation.cli import main as eval_main

    store = tmp_path / "store"
    ingest([FAQ / "documents-with-ids.json"], Settings(store_dir=store), embedder,
           IngestOptions(RecordFields(title_field="question")))
    monkeypatch.setenv("OLLAMA_HOST", URL)
    monkeypatch.setenv("RAG_STORE_DIR", str(store))
    monkeypatch.setenv("RAG_ANSWER_TOKENS", "128")
    with (FAQ / "ground-truth-dev.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))[::700][:5]
    truth = tmp_path / "truth.csv"
    with truth.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["question", "course", "document"])
        writer.writeheader()
        writer.writerows(rows)

    code = eval_main([str(truth), "--answers", "--models", MODEL, "--filter-column", "course",
                      "--out", str(tmp_path / "results.jsonl")])

    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    figures = summary["models"][MODEL]
    assert code == 0 and summary["questions"] == 5
    assert figures["errors"] == 0 and figures["answered"] == 5
    assert 0.0 < figures["answer_similarity"] <= 1.0
    assert figures["tokens_per_s"] > 0 and figures["load_ms"] is not None and figures["size"] > 0
    print(json.dumps(summary))
