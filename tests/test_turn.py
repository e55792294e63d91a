"""The chat turn, condensing and the judge above the LLM-box seam, answered by a backend that is not Ollama."""
from __future__ import annotations

import pytest

from rag.chat.condense import condense_question
from rag.chat.turn import prepare_turn, stream_answer
from rag.core.errors import ModelCannotChat, ModelNotFound, StreamInterrupted
from rag.core.settings import Settings
from rag.evaluation.judge import judge_answer
from rag.llm import catalogue
from rag.llm.backend import Backend, ChatOptions, ChatUsage
from rag.search.loader import open_retriever
from rag.ui.errors import explain
from tests.fake_llm import FakeBox, Reply

QUESTION = "How do I add my own documents?"


@pytest.fixture
def settings(guide_store) -> Settings:
    return Settings(store_dir=guide_store, model="small-chat", num_ctx=8192, answer_tokens=1024)


@pytest.fixture
def retriever(settings):
    return open_retriever(settings)


def test_the_fake_box_speaks_the_protocol():
    assert isinstance(FakeBox({}), Backend)


def test_a_turn_asks_the_box_with_the_window_capped_by_the_trained_context_and_keeps_its_usage(settings, retriever):
    usage = ChatUsage(prompt_tokens=900, generated_tokens=3, finish_reason="stop", generation_seconds=0.5)
    box = FakeBox({"small-chat": 2048}, [Reply(["Use", " ingest", " [1]."], usage)])

    turn = prepare_turn(QUESTION, settings, retriever, llm=box)
    pieces = list(stream_answer(turn, box, settings))

    assert pieces == ["Use", " ingest", " [1]."] and turn.answer == "Use ingest [1]."
    assert box.requests == [("small-chat", turn.prompt.messages, ChatOptions(2048, 0.1, 512))]
    assert turn.prompt.estimated_tokens <= 2048 - 512
    assert (turn.usage.prompt_tokens, turn.usage.tokens_per_second) == (900, 6.0)
    assert not turn.truncated and not turn.cut_short and turn.error is None


def test_a_box_that_breaks_off_keeps_the_partial_answer_and_the_error(settings, retriever):
    broken = StreamInterrupted("The box stopped in the middle of the answer.")
    box = FakeBox({"small-chat": None}, [Reply(["Use", " ingest"], error=broken)])

    turn = prepare_turn(QUESTION, settings, retriever, llm=box)
    pieces = list(stream_answer(turn, box, settings))

    assert pieces == ["Use", " ingest"] and turn.answer == "Use ingest"
    assert turn.error is broken and turn.timings.first_token_ms is not None
    assert box.requests[0][2] == ChatOptions(8192, 0.1, 1024)  # no trained context known: the setting as it is


def test_a_model_that_cannot_chat_is_refused_before_any_chat_request(settings, retriever):
    box = FakeBox({"embedder": 512}, embedding=("embedder",))

    turn = prepare_turn(QUESTION, settings, retriever, model="embedder", llm=box)

    assert list(stream_answer(turn, box, settings)) == []
    assert isinstance(turn.error, ModelCannotChat) and box.requests == []


def test_a_model_the_box_lacks_is_said_with_the_boxs_own_words_on_the_page(settings, retriever):
    box = FakeBox({"small-chat": 4096})

    turn = prepare_turn(QUESTION, settings, retriever, model="missing", llm=box)
    list(stream_answer(turn, box, settings))

    assert isinstance(turn.error, ModelNotFound) and box.requests == []
    assert explain(turn.error, box, "missing").headline == (
        "The model missing is not installed in Fake box. Load it in the server at http://fake-box.invalid/v1, "
        "or choose another model."
    )


def test_a_prompt_the_box_read_in_part_and_an_answer_at_its_limit_are_both_said(settings, retriever):
    usage = ChatUsage(prompt_tokens=100, generated_tokens=1024, finish_reason="length")
    box = FakeBox({"small-chat": None}, [Reply(["Use"], usage)])

    turn = prepare_turn(QUESTION, settings, retriever, llm=box)
    list(stream_answer(turn, box, settings))

    assert turn.truncated and turn.cut_short
    assert turn.truncation_note().startswith(f"The model read only 100 prompt tokens of about {turn.prompt.estimated_tokens:,} sent")


def test_condensing_and_judging_ask_the_box_with_their_own_small_budgets(settings):
    box = FakeBox({"small-chat": 4096}, [Reply(["install on Windows"]), Reply(["RELEVANT", "\nIt answers."])])
    history = [{"role": "user", "content": "How do I install it?"}, {"role": "assistant", "content": "Run pip [1]."}]

    condensed = condense_question("and on Windows?", history, box, "small-chat", 4096)
    verdict = judge_answer(box, "small-chat", "How do I install it?", "Run pip [1].", settings)

    assert (condensed.query, verdict) == ("install on Windows", "RELEVANT")
    assert [options for _, _, options in box.requests] == [ChatOptions(4096, 0.0, 64), ChatOptions(4096, 0.0, 96)]


def test_the_catalogue_lists_chat_models_and_picks_the_default_through_the_protocol():
    box = FakeBox({"b-chat": 8192, "a-chat": None, "embedder": 512}, embedding=("embedder",))

    facts = catalogue.model_facts(box)

    assert catalogue.chat_models(box) == [f.name for f in facts] == ["a-chat", "b-chat"]
    assert [(f.context_length, f.size, f.loaded) for f in facts] == [(None, None, False), (8192, None, False)]
    assert catalogue.default_model(["a-chat", "b-chat"], "b-chat", box) == "b-chat"
    assert catalogue.default_model(["a-chat", "b-chat"], "gone", box) == "a-chat"
    assert catalogue.dropdown_labels(facts)["b-chat"] == ("b-chat", "trained context 8,192 tokens")
