"""The chat page through Streamlit's AppTest, against a real store and the stand-in Ollama over HTTP."""
from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import ollama
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from ingest.pipeline import IngestOptions, ingest
from rag.condense import CONDENSE_RULES, clean_query
from rag.errors import OllamaError
from rag.history import History, history_path
from rag.llm import ChatStats, Ollama
from rag.settings import Settings
from rag.ui_answer import cited_numbers, escape_markdown, safe_pieces
from tests.conftest import SAMPLE_DIR
from tests.ollama_standin import MID_STREAM_ERROR, OllamaStandin, estimate_prompt_tokens, unused_port

APP = str(Path(__file__).resolve().parent.parent / "app.py")
ANSWER = "The answer is 42 [1]."
STANDALONE = "How do I install the app on Windows?"


def reply(body: dict) -> str:
    """The stand-in's reply: a standalone query to a condense prompt, the fixed answer otherwise."""
    return STANDALONE if body["messages"][0]["content"] == CONDENSE_RULES else ANSWER


@pytest.fixture(scope="session")
def template_store(tmp_path_factory, embedder) -> Path:
    """A store holding the bundled user guide, built once and copied into each test."""
    store = tmp_path_factory.mktemp("template") / "store"
    ingest([SAMPLE_DIR], Settings(store_dir=store), embedder, IngestOptions())
    return store


@pytest.fixture
def store(tmp_path, template_store, monkeypatch) -> Path:
    """This test's copy of the sample store, named in RAG_STORE_DIR."""
    path = tmp_path / "store"
    shutil.copytree(template_store, path)
    monkeypatch.setenv("RAG_STORE_DIR", str(path))
    return path


@pytest.fixture
def ollama_server(monkeypatch):
    """The stand-in Ollama, named in OLLAMA_HOST, answering condense prompts with a standalone query."""
    with OllamaStandin(reply=reply) as server:
        monkeypatch.setenv("OLLAMA_HOST", server.host)
        yield server


@pytest.fixture(autouse=True)
def fresh_caches():
    """No cached retriever, client or history leaks from one test into the next."""
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


def open_app() -> AppTest:
    """A first page load."""
    return AppTest.from_file(APP, default_timeout=30).run()


def ask(at: AppTest, question: str) -> AppTest:
    """Type a question into the chat box and send it."""
    return at.chat_input(key="question").set_value(question).run()


def assistant(at: AppTest, index: int = -1):
    """An assistant message block."""
    return [m for m in at.chat_message if m.name == "assistant"][index]


def plain(markdown: str) -> str:
    """Markdown with its backslash escapes removed: the text the reader sees."""
    return re.sub(r"\\(.)", r"\1", markdown)


def library_error(model: str) -> str:
    """The message our Ollama wrapper gives for a chat with this model, for comparing with the page."""
    with pytest.raises(OllamaError) as caught:
        list(Ollama(Settings()).stream_chat(model, [{"role": "user", "content": "hi"}], {}, ChatStats()))
    return str(caught.value)


def chat_answers(server: OllamaStandin) -> list[dict]:
    """Chat requests that asked for an answer (not a condense or warm-up)."""
    return [b for b in server.chat_requests() if b.get("messages") and b["messages"][0]["content"] != CONDENSE_RULES]


def warm_ups(server: OllamaStandin) -> list[dict]:
    """Chat requests with no messages: Ollama's way to load a model."""
    return [b for b in server.chat_requests() if b.get("messages") == []]


def test_question_streams_an_answer_with_numbered_sources_and_figures(store, ollama_server):
    at = ask(open_app(), "How do I install the app?")

    assert not at.exception
    assert [m.name for m in at.chat_message] == ["user", "assistant"]
    message = assistant(at)
    assert message.markdown[0].value == ANSWER
    [request] = chat_answers(ollama_server)
    assert request["model"] == "qwen2.5:3b"
    assert request["options"]["num_ctx"] == 8192
    assert request["options"]["temperature"] == 0.1
    prompt = request["messages"][-1]["content"]
    [expander] = message.expander
    sent = len(re.findall(r"^\[\d+\] ", prompt, flags=re.M))
    assert expander.label == f"Sources: 1 cited, {sent - 1} also retrieved"
    assert expander.caption[0].value == "Searched for: How do I install the app\\?"
    lines = [m.value for m in expander.markdown]
    assert lines[0] == "**Cited in the answer**"
    assert lines[2] == "**Also retrieved**"
    block = re.search(r"^\[1\] (.*?)\n\n\[2\] ", prompt, flags=re.M | re.S).group(1)
    header, text = block.split("\n", 1)
    title, location = re.fullmatch(r"(.*?) \((.*)\)", header).groups()
    assert lines[1].startswith(f"\\[1\\] **{title}** · {location}")
    assert expander.text[0].value == text.strip()
    figures = plain(message.caption[-1].value)
    tokens = estimate_prompt_tokens(request["messages"])
    assert re.fullmatch(
        rf"retrieval \d+ ms · first token \d+ ms · 50\.0 tokens/s · prompt {tokens:,} / 8,192 tokens · "
        rf"{sent} chunks used · qwen2\.5:3b",
        figures,
    ), figures


def test_dropdown_lists_chat_models_and_the_choice_is_used_from_the_next_question(store, ollama_server):
    at = open_app()
    model = at.sidebar.selectbox(key="model")
    assert model.options == ["llama3.2:latest", "qwen2.5:3b"]
    assert model.value == "qwen2.5:3b"

    model.set_value("llama3.2:latest").run()
    ask(at, "How do I install the app?")

    assert [r["model"] for r in chat_answers(ollama_server)] == ["llama3.2:latest"]
    assert at.sidebar.selectbox(key="model").value == "llama3.2:latest"


def test_choosing_a_model_warms_it_with_an_empty_chat(store, ollama_server):
    at = open_app()
    at.sidebar.selectbox(key="model").set_value("llama3.2:latest").run()

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(warm_ups(ollama_server)) < 2:
        time.sleep(0.05)
    assert [(r["model"], r["keep_alive"], r["options"]["num_ctx"]) for r in warm_ups(ollama_server)] == [
        ("qwen2.5:3b", "30m", 8192),
        ("llama3.2:latest", "30m", 8192),
    ]


def test_refresh_lists_a_model_installed_after_the_page_loaded(store, ollama_server):
    at = open_app()
    ollama.Client(host=ollama_server.url).pull("tinyllama")

    at.run()
    assert at.sidebar.selectbox(key="model").options == ["llama3.2:latest", "qwen2.5:3b"]
    at.sidebar.button(key="refresh_models").click().run()
    assert at.sidebar.selectbox(key="model").options == ["llama3.2:latest", "qwen2.5:3b", "tinyllama:latest"]


def test_pull_shows_progress_and_selects_the_pulled_model(store, ollama_server):
    at = open_app()
    at.sidebar.text_input(key="pull_name").set_value("tinyllama")
    at.sidebar.button(key="pull").click().run()

    assert not at.exception
    [bar] = at.sidebar.get("progress")
    assert (bar.value, bar.text) == (100, "tinyllama: success")
    assert at.sidebar.success[0].value == "Pulled tinyllama:latest; it is selected for the next question."
    model = at.sidebar.selectbox(key="model")
    assert model.value == "tinyllama:latest"
    assert "tinyllama:latest" in model.options
    pulls = [body for _, path, body in ollama_server.requests if path == "/api/pull"]
    assert pulls == [{"model": "tinyllama", "insecure": False, "stream": True}]


def test_pull_of_a_name_ollama_does_not_have_says_so(store, ollama_server):
    at = open_app()
    at.sidebar.text_input(key="pull_name").set_value("no-such-model")
    at.sidebar.button(key="pull").click().run()

    assert not at.exception
    assert at.sidebar.error[0].value == (
        "Ollama has no model called 'no-such-model'. Check the name and tag at https://ollama.com/library "
        "(e.g. llama3.2:3b)."
    )
    assert at.sidebar.selectbox(key="model").options == ["llama3.2:latest", "qwen2.5:3b"]


def test_ollama_down_page_loads_says_where_it_looked_and_still_shows_sources(store, monkeypatch):
    port = unused_port()
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{port}")
    message = (
        f"Cannot reach Ollama at http://127.0.0.1:{port}. Start it (`ollama serve` or the desktop app), "
        "or set OLLAMA_HOST to where it runs."
    )
    at = open_app()
    assert not at.exception
    assert at.sidebar.error[0].value == message

    ask(at, "How do I install the app?")
    answer = assistant(at)
    assert not at.exception
    assert answer.markdown[0].value != ANSWER
    assert answer.error[0].value == message
    [expander] = answer.expander
    assert re.fullmatch(r"Sources: \d+ retrieved", expander.label)
    assert expander.markdown[0].value == "**Also retrieved**"
    assert len(expander.text) >= 1


def test_missing_model_offers_a_pull_and_answers_after_it(store, monkeypatch):
    with OllamaStandin(models=(), reply=ANSWER, pullable=("qwen2.5:3b",)) as server:
        monkeypatch.setenv("OLLAMA_HOST", server.host)
        at = open_app()
        assert at.sidebar.warning[0].value == f"No chat model is installed in Ollama at {server.url}."
        ask(at, "How do I install the app?")
        answer = assistant(at)
        error = answer.error[0].value
        assert error == library_error("qwen2.5:3b")
        assert error.startswith(f"Model 'qwen2.5:3b' is not installed in Ollama at {server.url}.")
        [pull] = [b for b in answer.button if b.key.startswith("pull_missing_")]
        assert pull.label == "Pull qwen2.5:3b"

        pull.click().run()
        [bar] = at.sidebar.get("progress")
        assert (bar.value, bar.text) == (100, "qwen2.5:3b: success")
        ask(at, "How do I install the app?")
        assert assistant(at).markdown[0].value == ANSWER


def test_error_mid_stream_keeps_the_partial_answer_and_appends_the_error(store, ollama_server):
    ollama_server.fail_after_chunks = 3
    at = ask(open_app(), "How do I install the app?")

    answer = assistant(at)
    assert answer.markdown[0].value == "The answer is"
    error = answer.error[0].value
    assert error.startswith("Ollama stopped in the middle of the answer")
    assert MID_STREAM_ERROR in error
    assert answer.expander[0].label.startswith("Sources: ")

    reloaded = open_app()
    restored = assistant(reloaded)
    assert restored.markdown[0].value == "The answer is"
    assert restored.error[0].value == error


def test_slow_first_token_shows_that_the_model_is_loading(store, ollama_server):
    ollama_server.first_token_delay = 1.6
    at = ask(open_app(), "How do I install the app?")

    answer = assistant(at)
    assert re.fullmatch(r"qwen2\.5:3b started answering after 1\.[6-9] s \(the model was loading\)\.",
                        answer.caption[0].value)
    assert answer.markdown[0].value == ANSWER


def test_fast_first_token_shows_no_loading_note(store, ollama_server):
    at = ask(open_app(), "How do I install the app?")
    assert not any("started answering" in c.value for c in assistant(at).caption)


def test_nothing_relevant_says_so_with_best_scores_and_can_ask_anyway(store, ollama_server):
    at = open_app()
    at.sidebar.slider(key="floor").set_value(0.99).run()
    ask(at, "How do I install the app?")

    notice = assistant(at).markdown[0].value
    assert notice.startswith("Nothing in your documents looks relevant to this question\\: ")
    assert "The relevance floor is 0\\.99" in notice and "lowered by 2\\.5 x the question" in notice
    assert len(re.findall(r"0\\\.\d\d of 0\\\.\d\d needed \\\(", notice)) == 3
    assert chat_answers(ollama_server) == []

    assistant(at).button[0].click().run()
    assert assistant(at).markdown[0].value == ANSWER
    assert len(chat_answers(ollama_server)) == 1
    assert [m.name for m in at.chat_message] == ["user", "assistant", "assistant"]


def test_silent_truncation_by_ollama_shows_a_warning(store, ollama_server):
    at = ask(open_app(), "How do I install the app?")
    assert assistant(at).warning == []
    # the model is re-created with a 512-token window after the app learned its size; Ollama then cuts the prompt
    ollama_server.context_length = 512
    ollama.Client(host=ollama_server.url).pull("qwen2.5:3b")

    ask(at, "How do I install the app?")
    warning = assistant(at).warning[0].value
    assert warning.startswith("Ollama read only 256 prompt tokens of about ")
    assert "it cut the prompt to fit the model's context window" in warning


def test_follow_up_is_rewritten_into_a_standalone_query_shown_with_the_sources(store, ollama_server):
    at = ask(open_app(), "How do I install the app?")
    ask(at, "and on Windows?")

    condense = [b for b in ollama_server.chat_requests() if b["messages"] and b["messages"][0]["content"] == CONDENSE_RULES]
    assert len(condense) == 1
    assert condense[0]["messages"][1]["content"] == (
        f"Conversation:\nUser: How do I install the app?\nAssistant: {ANSWER}\n\n"
        "Last question: and on Windows?\n\nStandalone query:"
    )
    answer = chat_answers(ollama_server)[-1]
    assert answer["messages"][-1]["content"].endswith("Question: and on Windows?")
    assert [m["content"] for m in answer["messages"][1:-1]] == ["How do I install the app?", ANSWER]
    assert assistant(at).expander[0].caption[0].value == "Searched for: How do I install the app on Windows\\?"


def test_conversations_are_saved_restored_listed_and_deleted(store, ollama_server):
    at = ask(open_app(), "How do I install the app?")
    ask(at, "Which models can I use?")

    reloaded = open_app()
    assert [m.name for m in reloaded.chat_message] == ["user", "assistant", "user", "assistant"]
    assert reloaded.chat_message[0].markdown[0].value == "How do I install the app\\?"
    assert reloaded.chat_message[3].markdown[0].value == ANSWER
    [first] = History(history_path(Settings())).list()
    assert reloaded.sidebar.button(key=f"open_{first.id}").label == "▸ How do I install the app?"

    reloaded.sidebar.button(key="new_chat").click().run()
    assert list(reloaded.chat_message) == []
    ask(reloaded, "Where do I put my settings?")
    conversations = History(history_path(Settings())).list()
    assert [c.title for c in conversations] == ["Where do I put my settings?", "How do I install the app?"]

    reloaded.sidebar.button(key=f"open_{first.id}").click().run()
    assert len(reloaded.chat_message) == 4
    reloaded.sidebar.button(key=f"delete_{first.id}").click().run()
    assert list(reloaded.chat_message) == []
    assert [c.title for c in History(history_path(Settings())).list()] == ["Where do I put my settings?"]


def test_upload_ingests_through_the_pipeline_and_filters_by_field(store, ollama_server):
    records = [
        {"id": "r1", "title": "Parking rules", "text": "Bicycles are parked in the courtyard rack.", "site": "north"},
        {"id": "r2", "title": "Parking rules", "text": "Bicycles are parked in the basement garage.", "site": "south"},
    ]
    at = open_app()
    at.sidebar.file_uploader(key="upload").set_value(
        [("sites.json", json.dumps(records).encode(), "application/json"),
         ("notes.md", b"# Lab notes\n\nThe <script>alert(1)</script> tag is shown as text.\n", "text/markdown")]
    ).run()
    at.sidebar.button(key="ingest_uploads").click().run()

    assert not at.exception
    summary = at.sidebar.code[0].value
    assert "added 3, updated 0, unchanged 0, removed 0, skipped 0" in summary
    assert at.sidebar.caption[-1].value.startswith("8 documents · ")

    at.sidebar.selectbox(key="filter_field").set_value("site").run()
    at.sidebar.selectbox(key="filter_value").set_value("south").run()
    ask(at, "Where are bicycles parked?")
    sources = assistant(at).expander[0]
    assert [t.value for t in sources.text] == ["Bicycles are parked in the basement garage."]

    at.sidebar.selectbox(key="filter_field").set_value("(no filter)")
    at.sidebar.slider(key="top_k").set_value(20).run()
    ask(at, "Which tag is shown as text in the lab notes?")
    snippets = [t.value for t in assistant(at).expander[0].text]
    assert "The <script>alert(1)</script> tag is shown as text." in snippets
    assert at.get("html") == []


def test_empty_store_page_loads_and_says_how_to_fill_it(tmp_path, ollama_server, monkeypatch):
    monkeypatch.setenv("RAG_STORE_DIR", str(tmp_path / "empty"))
    at = open_app()
    assert not at.exception
    assert at.info[0].value.startswith(f"The store at {tmp_path / 'empty'} has no collection 'docs'.")


def test_cited_numbers_reads_single_adjacent_and_listed_markers():
    assert cited_numbers("A [1]. B [2][3]. C [4, 5]. Not [x] or [].") == {1, 2, 3, 4, 5}


def test_safe_pieces_turns_images_into_text_even_across_pieces():
    pieces = ["See !", "[logo](http://example.com/x.png) and ", "wow!", "!"]
    assert "".join(safe_pieces(pieces)) == "See !\\[logo](http://example.com/x.png) and wow!!"


def test_escape_markdown_leaves_nothing_for_markdown_or_html_to_interpret():
    assert plain(escape_markdown("<b>*x*</b> :red[y] $z$")) == "<b>*x*</b> :red[y] $z$"
    assert escape_markdown("<b>") == "\\<b\\>"


def test_condensed_query_is_the_first_line_without_label_or_quotes():
    assert clean_query('Query: "How do I install on Windows?"\nBecause...') == "How do I install on Windows?"
    assert clean_query("\n\n") == ""
