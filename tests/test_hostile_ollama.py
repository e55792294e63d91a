"""A server that breaks the wire format, ignores num_predict or lists thousands of models: clear errors, bounded work."""
from __future__ import annotations

import pytest

from rag.chat.ask import main as ask_main
from rag.chat.turn import prepare_turn, stream_answer
from rag.core.errors import LLMUnavailable, StreamInterrupted
from rag.llm.backend import CHARS_PER_TOKEN_MAX, ChatOptions, ChatUsage
from rag.llm.ollama import Ollama
from rag.search.loader import open_retriever
from rag.core.settings import Settings
from tests.ollama_standin import OllamaStandin

QUESTION = "How do I add my own documents?"
MESSAGES = [{"role": "user", "content": "Hi"}]
NOT_OLLAMA = "The server at {url} did not answer as Ollama does (it sent {what}). Set OLLAMA_HOST to where Ollama runs (default 127.0.0.1:11434)."


@pytest.fixture
def sample_store(settings, guide_store, monkeypatch):
    monkeypatch.setenv("RAG_STORE_DIR", str(guide_store))
    return settings.model_copy(update={"store_dir": guide_store})


def test_a_line_that_is_not_json_mid_answer_keeps_the_partial_text(settings, standin):
    standin.garbage_after_chunks = 3
    llm = Ollama(settings)
    pieces: list[str] = []

    with pytest.raises(StreamInterrupted) as raised:
        for piece in llm.stream_chat("qwen2.5:3b", MESSAGES, ChatOptions(4096), ChatUsage()):
            pieces.append(piece)

    assert pieces == ["The", " answer", " is"]
    assert str(raised.value) == (
        "Ollama's reply broke off in the middle of the answer: it sent something that is not Ollama's JSON "
        "(an HTML page); the text above is incomplete. Ask again."
    )


def test_a_line_that_is_not_json_before_any_text_means_the_server_is_not_ollama(settings, standin):
    standin.garbage_after_chunks = 0

    with pytest.raises(LLMUnavailable) as raised:
        list(Ollama(settings).stream_chat("qwen2.5:3b", MESSAGES, ChatOptions(4096), ChatUsage()))

    assert str(raised.value) == NOT_OLLAMA.format(url=standin.url, what="an HTML page")


@pytest.mark.parametrize("page", ["<!DOCTYPE html><html><body>Sign in to the Wi-Fi</body></html>", "just words"])
def test_http_200_with_a_page_instead_of_json_is_not_ollama_for_every_call(settings, standin, page):
    standin.html_page = page
    llm = Ollama(settings)
    what = "an HTML page" if page.startswith("<") else "'just words'"

    for call in (llm.list_models, lambda: llm.model_info("qwen2.5:3b"), lambda: list(llm.stream_chat("qwen2.5:3b", MESSAGES, ChatOptions(4096), ChatUsage()))):
        with pytest.raises(LLMUnavailable) as raised:
            call()
        assert str(raised.value) == NOT_OLLAMA.format(url=standin.url, what=what)


def test_ask_against_a_server_answering_html_exits_4_in_one_line_with_the_sources(sample_store, standin, capsys):
    standin.html_page = "<html><body>Proxy login</body></html>"

    code = ask_main([QUESTION])
    out, err = capsys.readouterr()

    assert code == 4
    assert err == f"error: {NOT_OLLAMA.format(url=standin.url, what='an HTML page')}\n"
    assert "\nSources:\n  [1] " in out


def test_ask_keeps_the_partial_answer_when_the_stream_turns_to_garbage(sample_store, standin, capsys):
    standin.garbage_after_chunks = 2

    code = ask_main(["--json", QUESTION])
    out, err = capsys.readouterr()

    assert code == 8
    assert '"answer": "The answer"' in out and '"exit_code": 8' in out


def test_a_server_that_ignores_num_predict_is_cut_at_num_predict_pieces(settings, standin):
    standin.ignore_num_predict = True
    standin.reply = " ".join(f"w{i}" for i in range(5000))
    usage = ChatUsage()

    pieces = list(Ollama(settings).stream_chat("qwen2.5:3b", MESSAGES, ChatOptions(4096, max_tokens=100), usage))

    assert pieces == ["w0"] + [f" w{i}" for i in range(1, 100)]
    assert (usage.finish_reason, usage.generated_tokens) == ("length", 100)


def test_one_enormous_piece_is_cut_at_the_characters_num_predict_allows(settings, standin):
    standin.ignore_num_predict = True
    standin.reply = "x" * 2_000_000  # a 2 MB single-line reply, one piece
    usage = ChatUsage()

    pieces = list(Ollama(settings).stream_chat("qwen2.5:3b", MESSAGES, ChatOptions(4096, max_tokens=64), usage))

    assert [len(piece) for piece in pieces] == [64 * CHARS_PER_TOKEN_MAX]
    assert usage.finish_reason == "length"


def test_a_turn_collects_its_pieces_and_a_long_reply_is_cut_with_the_length_warning(sample_store, standin, capsys, monkeypatch):
    standin.ignore_num_predict = True
    standin.reply = " ".join(["word"] * 20_000)
    monkeypatch.setenv("RAG_ANSWER_TOKENS", "64")
    settings = Settings()
    turn = prepare_turn(QUESTION, settings, open_retriever(settings))

    streamed = list(stream_answer(turn, Ollama(settings), settings))

    assert len(streamed) == len(turn.pieces) == 64
    assert turn.answer == "word" + " word" * 63 and turn.pieces == [turn.answer]
    assert turn.cut_short and turn.error is None


def test_thousands_of_models_are_listed_up_to_the_limit_and_each_is_still_found(settings):
    names = [f"m{i:04d}:latest" for i in range(3000)] + ["x" * 300 + ":latest"]
    with OllamaStandin(models=names, embedding_models=()) as server:
        llm = Ollama(settings.model_copy(update={"ollama_host": server.host}))

        listed = llm.list_models()

        assert [entry.name for entry in listed] == [f"m{i:04d}:latest" for i in range(500)]
