"""One turn over the real store and embedder, answered by the stand-in through the real `ollama` client."""
from __future__ import annotations

import pytest

from rag.chat.turn import prepare_turn, stream_answer
from rag.core.errors import ModelCannotChat, ModelNotFound, LLMUnavailable, StreamInterrupted
from rag.llm.ollama import Ollama
from rag.search.loader import open_retriever
from rag.chat.prompt import SYSTEM_RULES, estimate_messages, neutral
from rag.core.settings import Settings
from tests.ollama_standin import OllamaStandin, unused_port

QUESTION = "How do I add my own documents?"


@pytest.fixture
def sample_store(settings, guide_store):
    """Settings that talk to the stand-in and read the module's guide store."""
    return settings.model_copy(update={"store_dir": guide_store})


@pytest.fixture
def retriever(sample_store):
    return open_retriever(sample_store)


def shows(standin) -> int:
    return sum(1 for _method, path, _body in standin.requests if path == "/api/show")


def test_turn_streams_the_answer_with_the_retrieved_context_num_ctx_and_keep_alive(sample_store, retriever, standin):
    llm = Ollama(sample_store)
    turn = prepare_turn(QUESTION, sample_store, retriever, llm=llm)

    pieces = list(stream_answer(turn, llm, sample_store))

    body = standin.chat_requests()[-1]
    assert pieces == ["The", " answer", " is", " 42", " [1]."] and turn.answer == "The answer is 42 [1]."
    assert body["messages"] == turn.prompt.messages
    assert body["messages"][0] == {"role": "system", "content": SYSTEM_RULES}
    assert turn.citations and all(neutral(c.text) in body["messages"][-1]["content"] for c in turn.citations)
    assert "adding-documents.md" in [c.doc_id for c in turn.citations]
    assert body["options"] == {"num_ctx": 8192, "temperature": 0.1, "num_predict": 1024}
    assert body["keep_alive"] == "30m"
    assert turn.usage.prompt_tokens > 0 and not turn.truncated and turn.error is None
    assert turn.timings.retrieve_ms > 0 and 0 < turn.timings.first_token_ms <= turn.timings.total_ms


def test_num_ctx_is_capped_by_the_models_trained_context_and_the_prompt_fits(sample_store, retriever):
    with OllamaStandin(context_length=1024) as small:
        settings = Settings(ollama_host=small.host)
        llm = Ollama(settings)
        turn = prepare_turn(QUESTION, settings, retriever, llm=llm, k=10)
        list(stream_answer(turn, llm, settings))

    assert (turn.num_ctx, turn.answer_tokens) == (1024, 256)
    assert estimate_messages(turn.prompt.messages) <= turn.prompt.estimated_tokens <= 1024 - 256
    assert turn.prompt.dropped_chunks > 0 and turn.citations
    assert small.chat_requests()[-1]["options"] == {"num_ctx": 1024, "temperature": 0.1, "num_predict": 256}
    assert not turn.truncated and turn.answer


def test_the_trained_context_is_asked_once_per_model_so_num_ctx_stays_fixed(sample_store, retriever, standin):
    llm = Ollama(sample_store)
    turns = [prepare_turn(QUESTION, sample_store, retriever, llm=llm) for _ in range(3)]
    turns.append(prepare_turn(QUESTION, sample_store, retriever))  # a fresh client in the same process
    for turn in turns:
        list(stream_answer(turn, llm, sample_store))

    assert shows(standin) == 1
    assert {body["options"]["num_ctx"] for body in standin.chat_requests()} == {8192}


def test_truncation_by_ollama_is_reported_when_the_trained_context_is_unknown(sample_store, retriever):
    with OllamaStandin(context_length=1024) as server:
        server.show_context_length = False
        settings = Settings(ollama_host=server.host)
        llm = Ollama(settings)
        turn = prepare_turn(QUESTION, settings, retriever, llm=llm, k=10)
        list(stream_answer(turn, llm, settings))

    assert turn.num_ctx == 8192
    assert turn.usage.prompt_tokens == 512
    assert turn.truncated


def test_error_mid_stream_keeps_the_partial_answer(sample_store, retriever, standin):
    standin.fail_after_chunks = 3
    llm = Ollama(sample_store)
    turn = prepare_turn(QUESTION, sample_store, retriever, llm=llm)

    pieces = list(stream_answer(turn, llm, sample_store))

    assert pieces == ["The", " answer", " is"] and turn.answer == "The answer is"
    assert isinstance(turn.error, StreamInterrupted)
    assert turn.citations


def test_ollama_not_running_is_reported_on_the_turn_with_its_sources(sample_store, retriever):
    settings = Settings(ollama_host=f"127.0.0.1:{unused_port()}")
    turn = prepare_turn(QUESTION, settings, retriever)

    assert list(stream_answer(turn, Ollama(settings), settings)) == []
    assert isinstance(turn.error, LLMUnavailable)
    assert turn.num_ctx == 8192 and turn.citations


def test_unknown_model_is_reported_without_a_chat_request(sample_store, retriever, standin):
    turn = prepare_turn(QUESTION, sample_store, retriever, model="mistral")

    assert list(stream_answer(turn, Ollama(sample_store), sample_store)) == []
    assert isinstance(turn.error, ModelNotFound) and "`ollama pull mistral`" in str(turn.error)
    assert standin.chat_requests() == []


def test_embedding_model_is_refused_before_chat(sample_store, retriever, standin):
    turn = prepare_turn(QUESTION, sample_store, retriever, model="nomic-embed-text")

    assert list(stream_answer(turn, Ollama(sample_store), sample_store)) == []
    assert isinstance(turn.error, ModelCannotChat)
    assert standin.chat_requests() == []


def test_follow_up_keeps_recent_history_and_searches_with_the_query(sample_store, retriever, standin):
    history = [
        {"role": "user", "content": "What formats can I ingest?"},
        {"role": "assistant", "content": "Markdown, text and JSON records [1]."},
    ]
    turn = prepare_turn("And JSON fields?", sample_store, retriever, history=history, query="JSON record fields ingest")

    list(stream_answer(turn, Ollama(sample_store), sample_store))

    assert turn.query == "JSON record fields ingest"
    assert standin.chat_requests()[-1]["messages"][1:3] == history
    assert "adding-documents.md" in [c.doc_id for c in turn.citations]
