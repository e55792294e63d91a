"""Against a real OpenAI-compatible server at RAG_OPENAI_URL (vLLM, llama.cpp, LM Studio, LocalAI...); skipped when
none is set or none answers. Run with `RAG_OPENAI_URL=http://host:8000/v1 python -m pytest -m openai`.
RAG_LIVE_MODEL picks the model (default: the first the server lists); RAG_OPENAI_API_KEY is sent when set.
"""
from __future__ import annotations

import os

import pytest

from rag.chat.prompt import build_prompt
from rag.chat.turn import Turn, answer_room, stream_answer
from rag.core.errors import LLMError
from rag.core.settings import Settings
from rag.llm.backend import ChatOptions, ChatUsage, context_window
from rag.llm.openai_compatible import OpenAICompatible, forget_model_info
from tests.test_prompt import doc

pytestmark = pytest.mark.openai

URL = os.environ.get("RAG_OPENAI_URL", "")  # read before the fixtures clear the environment
KEY = os.environ.get("RAG_OPENAI_API_KEY")
WANTED = os.environ.get("RAG_LIVE_MODEL")


def live_model() -> str | None:
    """A model the server serves, or None when there is no server to ask."""
    if not URL:
        return None
    try:
        served = [entry.name for entry in OpenAICompatible(live_settings()).list_models()]
    except LLMError:
        return None
    return WANTED if WANTED in served else (served[0] if served else None)


def live_settings() -> Settings:
    return Settings(openai_url=URL, openai_api_key=KEY, num_ctx=4096, answer_tokens=64, read_timeout=300)


MODEL = live_model()
requires_live = pytest.mark.skipif(MODEL is None, reason=f"no OpenAI-compatible server answers at RAG_OPENAI_URL={URL!r}")


@pytest.fixture
def box() -> OpenAICompatible:
    forget_model_info()
    return OpenAICompatible(live_settings())


@requires_live
def test_a_short_answer_streams_with_usage_or_a_count(box):
    usage = ChatUsage()
    messages = [{"role": "user", "content": "Reply with the single word: ready"}]

    text = "".join(box.stream_chat(MODEL, messages, ChatOptions(4096, 0.0, 16), usage))

    assert text.strip() and usage.generated_tokens > 0 and usage.finish_reason in ("stop", "length")


@requires_live
def test_a_grounded_prompt_fits_the_context_the_server_exposes_and_the_answer_cites(box):
    settings = live_settings()
    num_ctx = context_window(box.model_info(MODEL), settings.num_ctx)
    docs = [doc("guide", "The store folder is set with RAG_STORE_DIR; the default is ./store.")]
    prompt = build_prompt("Which variable sets the store folder?", docs, [], num_ctx - answer_room(num_ctx, settings))
    turn = Turn("Which variable sets the store folder?", "", MODEL, num_ctx, docs, prompt, answer_tokens=64)

    answer = "".join(stream_answer(turn, box, settings))

    assert turn.error is None, turn.error
    assert "RAG_STORE_DIR" in answer and "<think>" not in answer
