"""The chat page through Streamlit's AppTest, against a real store and the stand-in Ollama over HTTP."""
from __future__ import annotations

import json
import re
import shutil
import sqlite3
import time
from pathlib import Path

import ollama
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from ingest.lock import LOCK_NAME, writer_lock
from ingest.pipeline import IngestOptions, ingest
from rag.chat.condense import CONDENSE_RULES, clean_query
from rag.core.errors import IngestCancelled, LLMError
from rag.ui.history import FILENAME, History, history_path
from rag.llm.backend import ChatOptions, ChatUsage
from rag.llm.ollama import Ollama
from rag.core.settings import Settings
from rag.chat.citations import cited_numbers
from rag.ui.text import WORD_JOINER, answer_html
from tests.answer_marks import without_check
from tests.conftest import SAMPLE_DIR
from tests.ollama_standin import MID_STREAM_ERROR, OllamaStandin, estimate_prompt_tokens, unused_port

APP = str(Path(__file__).resolve().parent.parent / "app.py")
ANSWER = "The answer is 42 [1]."
EXAMPLES_OF_THE_GUIDE = ["Tell me about the ingest command.", "How do I go about choosing a model?", "Tell me about Configuration."]
STANDALONE = "How do I install the app on Windows?"
BROWSER = "b" * 40
OTHER_BROWSER = "o" * 40
OUTSIDE = "http://198.51.100.7"


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


def open_app(browser: str = BROWSER, **query) -> AppTest:
    """A page load in a browser whose secret id (its cookie) is browser, with the URL's query parameters."""
    at = AppTest.from_file(APP, default_timeout=30)
    at.session_state["browser_id"] = browser
    at.query_params.update(query)
    return at.run()


def loaded(at: AppTest) -> AppTest:
    """The page once the store has loaded in the background (AppTest does not rerun on its own)."""
    deadline = time.monotonic() + 60
    while not any("chunks · last ingest" in c.value for c in at.sidebar.caption) and time.monotonic() < deadline:
        time.sleep(0.2)
        at.run()
    return at


def ask(at: AppTest, question: str) -> AppTest:
    """Type a question into the chat box and send it."""
    return at.chat_input(key="question").set_value(question).run()


def assistant(at: AppTest, index: int = -1):
    """An assistant message block."""
    return [m for m in at.chat_message if m.name == "assistant"][index]


def plain(markdown: str) -> str:
    """Markdown with its backslash escapes and autolink breakers removed: the text the reader sees."""
    return re.sub(r"\\(.)", r"\1", markdown).replace(WORD_JOINER, "")


def inert(markdown: str) -> bool:
    """True when Markdown can make no image, link, HTML or code span: those marks are all escaped, no URL start."""
    unescaped = re.sub(r"\\[!-/:-@\[-`{-~]", "", markdown)
    return not re.search(r"[\[\]()<>!`]", unescaped) and not re.search(r"(?i)https?:|www\.", markdown)


def library_error(model: str) -> str:
    """The message our Ollama wrapper gives for a chat with this model, for comparing with the page."""
    with pytest.raises(LLMError) as caught:
        list(Ollama(Settings()).stream_chat(model, [{"role": "user", "content": "hi"}], ChatOptions(4096), ChatUsage()))
    return str(caught.value)


def chat_answers(server: OllamaStandin) -> list[dict]:
    """Chat requests that asked for an answer (not a condense or warm-up)."""
    return [b for b in server.chat_requests() if b.get("messages") and b["messages"][0]["content"] != CONDENSE_RULES]


def warm_ups(server: OllamaStandin) -> list[dict]:
    """Chat requests with no messages: Ollama's way to load a model."""
    return [b for b in server.chat_requests() if b.get("messages") == []]


def conversations(browser: str = BROWSER) -> list:
    return History(history_path(Settings()), browser).list()


def test_question_streams_an_answer_with_numbered_sources_and_figures(store, ollama_server):
    at = ask(open_app(), "How do I install the app?")

    assert not at.exception
    assert [m.name for m in at.chat_message] == ["user", "assistant"]
    message = assistant(at)
    assert without_check(message.markdown[0].value) == answer_html(ANSWER)
    assert message.markdown[0].allow_html
    # "The answer is 42 [1]." is in no passage of the guide: the check says so, under the answer and after the sentence
    assert message.caption[0].value == "0 of 1 sentence found in their sources"
    assert message.markdown[0].value.endswith('.<span class="rag-unfound" title="Checked against every passage sent to '
                                              'the model: wording (embedding similarity to each passage sentence), shared '
                                              'content words, and the numbers, dates, names and negations it states.">'
                                              'not found in the sources</span></p></div>')
    [request] = chat_answers(ollama_server)
    assert request["model"] == "qwen2.5:3b"
    assert request["options"]["num_ctx"] == 8192
    assert request["options"]["temperature"] == 0.1
    prompt = request["messages"][-1]["content"]
    [expander] = message.expander
    sent = re.findall(r"^\[(\d+)\] ", prompt, flags=re.M)
    assert expander.label == f"Sources: 5 documents, {len(sent)} passages, 1 cited"  # top k 5
    assert expander.caption[0].value == "Searched for: How do I install the app\\?"
    lines = [m.value for m in expander.markdown]
    assert lines[0] == "**Cited in the answer**"
    assert lines[2] == "**Also retrieved**"
    block = re.search(r"^\[1\] (.*?)\n\n\[2\] ", prompt, flags=re.M | re.S).group(1)
    header, body = block.split("\n", 1)
    title, location = re.fullmatch(r"(.*?) \((.*)\)", header).groups()
    assert plain(lines[1]).startswith(f"[1] **{title}** · {location} · score ")
    snippet = plain(expander.caption[1].value)
    assert snippet.startswith(" ".join(body.split())[:80].rstrip("`*_").split("`")[0][:40])
    numbers = [int(n) for line in lines for n in re.findall(r"^\[(\d+)\]", plain(line))]
    assert numbers == sorted(numbers) and numbers[0] == 1  # in the order of their numbers, cited first
    assert not any("score -" in plain(line) for line in lines)
    figures = plain(message.caption[-1].value)
    tokens = estimate_prompt_tokens(request["messages"])
    assert re.fullmatch(
        rf"retrieval \d+ ms · first token \d+ ms · 50\.0 tokens/s · prompt {tokens:,} / 8,192 tokens · "
        rf"{len(sent)} chunks used · qwen2\.5:3b",
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


def test_the_dropdown_and_its_facts_are_capped_by_rag_max_models(store, monkeypatch):
    names = [f"m{i:04d}:latest" for i in range(3000)]
    with OllamaStandin(models=names, embedding_models=()) as server:
        monkeypatch.setenv("OLLAMA_HOST", server.host)
        monkeypatch.setenv("RAG_MAX_MODELS", "5")

        at = open_app()

        assert at.sidebar.selectbox(key="model").options == names[:5]
        shown = [body for _method, path, body in server.requests if path == "/api/show"]
        assert len(shown) == 5


def test_a_model_server_slow_to_list_its_models_never_holds_back_the_chat_box(store, ollama_server):
    ollama_server.tags_delay = 10.0  # far longer than a page run, even on a loaded machine

    at = open_app()

    assert at.chat_input(key="question") is not None
    assert at.sidebar.selectbox(key="model").options == ["qwen2.5:3b"]  # the configured model, until the list comes
    assert f"Asking Ollama at {ollama_server.url} for its models…" in [plain(c.value) for c in at.sidebar.caption]
    ask(at, "How do I install the app?")
    assert without_check(assistant(at).markdown[0].value) == answer_html(ANSWER)

    deadline = time.monotonic() + 30
    while at.sidebar.selectbox(key="model").options != ["llama3.2:latest", "qwen2.5:3b"] and time.monotonic() < deadline:
        time.sleep(0.5)
        at.run()
    assert at.sidebar.selectbox(key="model").options == ["llama3.2:latest", "qwen2.5:3b"]
    assert not any("Asking Ollama" in c.value for c in at.sidebar.caption)


def test_model_and_settings_survive_a_reload_in_the_same_browser_only(store, ollama_server):
    at = open_app()
    at.sidebar.selectbox(key="model").set_value("llama3.2:latest").run()
    at.sidebar.slider(key="top_k").set_value(7).run()
    at.sidebar.slider(key="temperature").set_value(0.7).run()
    at.sidebar.checkbox(key="condense").uncheck().run()

    reloaded = open_app()
    assert reloaded.sidebar.selectbox(key="model").value == "llama3.2:latest"
    assert reloaded.sidebar.slider(key="top_k").value == 7
    assert reloaded.sidebar.slider(key="temperature").value == 0.7
    assert reloaded.sidebar.checkbox(key="condense").value is False
    ask(reloaded, "How do I install the app?")
    [request] = chat_answers(ollama_server)
    assert (request["model"], request["options"]["temperature"]) == ("llama3.2:latest", 0.7)

    elsewhere = open_app(OTHER_BROWSER)
    assert elsewhere.sidebar.selectbox(key="model").value == "qwen2.5:3b"
    assert elsewhere.sidebar.slider(key="top_k").value == 5


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
    assert (bar.value, plain(bar.text)) == (100, "tinyllama: success")
    assert plain(at.sidebar.success[0].value) == "Pulled tinyllama:latest; it is selected for the next question."
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
    shown = at.sidebar.error[0].value  # the address as inline code: no link, and copied as it reads
    assert plain(shown) == (
        "Ollama has no model called 'no-such-model'. Check the name and tag at `https://ollama.com/library` "
        "(e.g. llama3.2:3b)."
    )
    assert "`https://ollama.com/library`" in shown and WORD_JOINER not in shown
    assert [b.value for b in at.sidebar.get("progress")] == []  # no 'pulling manifest' left behind
    assert at.sidebar.selectbox(key="model").options == ["llama3.2:latest", "qwen2.5:3b"]


def test_ollama_down_page_loads_says_where_it_looked_and_still_shows_sources(store, monkeypatch):
    port = unused_port()
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{port}")
    message = (
        f"Cannot reach Ollama at `http://127.0.0.1:{port}`. Start it (`ollama serve` or the desktop app), "
        "or set OLLAMA_HOST to where it runs."
    )  # the command and the address as inline code
    at = open_app()
    assert not at.exception
    assert plain(at.sidebar.error[0].value) == message
    assert f"`http://127.0.0.1:{port}`\\. Start it \\(`ollama serve` or" in at.sidebar.error[0].value

    ask(at, "How do I install the app?")
    answer = assistant(at)
    assert not at.exception
    assert answer.markdown == [] or answer.markdown[0].value != answer_html(ANSWER)
    assert plain(answer.error[0].value) == message
    [expander] = answer.expander
    assert re.fullmatch(r"Sources: \d+ documents, \d+ passages", expander.label)
    assert expander.markdown[0].value == "**Also retrieved**"


def test_missing_model_offers_a_pull_and_answers_after_it(store, monkeypatch):
    with OllamaStandin(models=(), reply=ANSWER, pullable=("qwen2.5:3b",)) as server:
        monkeypatch.setenv("OLLAMA_HOST", server.host)
        at = open_app()
        assert plain(at.sidebar.warning[0].value) == f"No chat model is installed in Ollama at `{server.url}`."
        ask(at, "How do I install the app?")
        answer = assistant(at)
        assert plain(answer.error[0].value) == (
            "The model qwen2.5:3b is not installed in Ollama. Pull it with the button below, or run "
            "`ollama pull qwen2.5:3b`."
        )
        assert answer.expander[0].label == "Details"
        assert answer.expander[0].text[0].value == library_error("qwen2.5:3b")
        [pull] = [b for b in answer.button if b.key.startswith("pull_missing_")]
        assert plain(pull.label) == "Pull qwen2.5:3b"

        pull.click().run()
        [bar] = at.sidebar.get("progress")
        assert (bar.value, plain(bar.text)) == (100, "qwen2.5:3b: success")
        ask(at, "How do I install the app?")
        assert without_check(assistant(at).markdown[0].value) == answer_html(ANSWER)
        assert not [b for b in assistant(at, 0).button if b.key.startswith("pull_missing_")]  # only the latest acts


def test_error_mid_stream_keeps_the_partial_answer_and_says_so_in_plain_words(store, ollama_server):
    ollama_server.fail_after_chunks = 3
    at = ask(open_app(), "How do I install the app?")

    answer = assistant(at)
    assert without_check(answer.markdown[0].value) == answer_html("The answer is")
    headline = "Ollama stopped in the middle of the answer; the text above is incomplete. Ask again."
    assert plain(answer.error[0].value) == headline
    [details, sources] = answer.expander
    assert details.label == "Details"
    assert MID_STREAM_ERROR in details.text[0].value
    assert sources.label.startswith("Sources: ")

    restored = assistant(open_app(c=at.query_params["c"]))
    assert without_check(restored.markdown[0].value) == answer_html("The answer is")
    assert plain(restored.error[0].value) == headline


def test_slow_first_token_shows_that_the_model_is_loading(store, ollama_server):
    ollama_server.first_token_delay = 1.6
    at = ask(open_app(), "How do I install the app?")

    answer = assistant(at)
    assert re.fullmatch(r"qwen2\.5:3b started answering after 1\.[6-9] s \(the model was loading\)\.",
                        plain(answer.caption[0].value))
    assert without_check(answer.markdown[0].value) == answer_html(ANSWER)


def test_an_answer_streaming_slowly_from_its_first_token_shows_no_loading_notice(store, ollama_server):
    """Issue 33.2: at 0.5 s a token the gaps between tokens once added up to a false "Loading model" notice."""
    ollama_server.token_delay = 0.5
    at = ask(open_app(), "How do I install the app?")

    answer = assistant(at)
    assert without_check(answer.markdown[0].value) == answer_html(ANSWER)
    assert [c.value for c in answer.caption if "started answering" in c.value or "Loading model" in c.value] == []
    assert [i.value for i in answer.info] == []


def test_fast_first_token_shows_no_loading_note(store, ollama_server):
    at = ask(open_app(), "How do I install the app?")
    assert not any("started answering" in c.value for c in assistant(at).caption)


def test_nothing_relevant_says_so_and_can_ask_anyway_from_the_latest_turn_only(store, ollama_server):
    at = open_app()
    at.sidebar.slider(key="floor").set_value(0.99).run()
    ask(at, "How do I install the app?")

    assert plain(assistant(at).markdown[0].value) == (
        "Nothing in your documents looks relevant to this question, so the model was not asked.")
    [details] = assistant(at).expander
    assert (details.label, details.proto.expanded) == ("How close the documents came", False)
    figures = plain(details.caption[0].value)
    assert "It needed 0.99 (the relevance floor) above the " in figures and "lowered by 3 x the question" in figures
    assert len(re.findall(r"0\.\d\d of 0\.\d\d needed \(", figures)) == 3
    assert chat_answers(ollama_server) == []
    ask(at, "How do I install the app?")
    assert [b.key for b in assistant(at, 0).button] == []  # the earlier notice lost its button

    assistant(at).button[0].click().run()
    assert without_check(assistant(at).markdown[0].value) == answer_html(ANSWER)
    assert len(chat_answers(ollama_server)) == 1
    assert [m.name for m in at.chat_message] == ["user", "assistant", "user", "assistant", "assistant"]


def test_silent_truncation_by_ollama_shows_a_warning(store, ollama_server):
    at = ask(open_app(), "How do I install the app?")
    assert assistant(at).warning == []
    # the model is re-created with a 512-token window after the app learned its size; Ollama then cuts the prompt
    ollama_server.context_length = 512
    ollama.Client(host=ollama_server.url).pull("qwen2.5:3b")

    ask(at, "How do I install the app?")
    warning = plain(assistant(at).warning[0].value)
    assert warning.startswith("The model read only 256 prompt tokens of about ")
    assert "the prompt was cut to fit a context window smaller than the" in warning


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
    assert [assistant(at, i).expander[0].proto.expanded for i in (0, 1)] == [False, True]  # only the latest is open


@pytest.mark.parametrize("rewrite, reason", [
    ("You install it with pip install -r requirements.txt [1].", "the model answered it instead of rewording it"),
    ("How do I install the app on Windows, " + "and what about every other platform and setting, " * 3 + "?",
     "the model's rewording was much longer than the question"),
])
def test_a_rewrite_that_is_not_a_question_falls_back_to_the_question_and_says_so(store, ollama_server, rewrite, reason):
    ollama_server.reply = lambda body: rewrite if body["messages"][0]["content"] == CONDENSE_RULES else ANSWER
    at = ask(open_app(), "How do I install the app?")
    ask(at, "and on Windows?")

    captions = [plain(c.value) for c in assistant(at).expander[0].caption]
    assert captions[:2] == ["Searched for: and on Windows?", f"Searched for the question as asked: {reason}."]


def test_a_follow_up_that_stands_alone_is_searched_as_asked_without_a_rewrite(store, ollama_server):
    at = ask(open_app(), "How do I install the app?")
    ask(at, "Which models can I use?")

    assert [b for b in ollama_server.chat_requests() if b["messages"] and b["messages"][0]["content"] == CONDENSE_RULES] == []
    captions = [plain(c.value) for c in assistant(at).expander[0].caption]
    assert captions[:2] == ["Searched for: Which models can I use?",
                            "Searched for the question as asked: it does not refer to the earlier messages."]


def test_conversations_are_saved_restored_listed_and_deleted_with_undo(store, ollama_server):
    at = ask(open_app(), "How do I install the app?")
    [first] = conversations()
    assert at.sidebar.button(key=f"open_current_{first.id}").label == "How do I install the app\\?"  # listed at once
    ask(at, "Which models can I use?")

    reloaded = open_app(c=first.id)
    assert [m.name for m in reloaded.chat_message] == ["user", "assistant", "user", "assistant"]
    assert reloaded.chat_message[0].markdown[0].value == "How do I install the app\\?"
    assert without_check(reloaded.chat_message[3].markdown[0].value) == answer_html(ANSWER)

    reloaded.sidebar.button(key="new_chat").click().run()
    assert list(reloaded.chat_message) == []
    assert "c" not in reloaded.query_params  # a reload now opens a new chat, not the previous one
    ask(reloaded, "How do I install the app?")
    titles = [c.title for c in conversations()]
    assert titles == ["How do I install the app?", "How do I install the app?"]
    labels = [plain(b.label) for b in reloaded.sidebar.button if b.key.startswith("open_")]
    assert len(set(labels)) == 2 and all(label.startswith("How do I install the app? · ") for label in labels)

    reloaded.sidebar.button(key=f"open_{first.id}").click().run()
    assert len(reloaded.chat_message) == 4
    delete = reloaded.sidebar.button(key=f"delete_{first.id}")
    assert plain(delete.label) == "Delete conversation How do I install the app?"
    delete.click().run()
    assert list(reloaded.chat_message) == []
    assert len(conversations()) == 1
    assert plain(reloaded.sidebar.caption[0].value) != "" and any(
        plain(c.value) == "Deleted “How do I install the app?”." for c in reloaded.sidebar.caption)
    reloaded.sidebar.button(key="undo_delete").click().run()
    assert len(conversations()) == 2
    assert len(reloaded.chat_message) == 4  # the conversation on screen was deleted: the undo brings it back on screen

    [other] = [c for c in conversations() if c.id != first.id]
    reloaded.sidebar.button(key=f"open_{other.id}").click().run()
    reloaded.sidebar.button(key=f"delete_{first.id}").click().run()  # another conversation than the one read
    assert len(reloaded.chat_message) == 2
    reloaded.sidebar.button(key="undo_delete").click().run()
    assert len(conversations()) == 2
    assert len(reloaded.chat_message) == 2 and reloaded.query_params["c"] == other.id  # still reading it
    assert reloaded.sidebar.button(key=f"open_current_{other.id}")


def test_conversations_belong_to_the_browser_that_made_them(store, ollama_server):
    at = ask(open_app(), "How do I install the app?")
    [mine] = conversations()

    stranger = open_app(OTHER_BROWSER, c=mine.id)
    assert list(stranger.chat_message) == []
    assert stranger.info[0].value.startswith("That conversation is not in this browser's history")
    assert [b.key for b in stranger.sidebar.button if b.key.startswith(("open_", "delete_"))] == []
    ask(stranger, "Where do I put my settings?")
    assert [c.title for c in conversations(OTHER_BROWSER)] == ["Where do I put my settings?"]
    assert [c.title for c in conversations()] == ["How do I install the app?"]
    assert len(History(history_path(Settings()), BROWSER).messages(mine.id)) == 2
    assert at.sidebar.button(key=f"open_current_{mine.id}")


def test_a_damaged_conversation_file_gives_one_line_and_is_left_for_recovery(store, ollama_server):
    ask(open_app(), "How do I install the app?")
    path = store / FILENAME
    damaged = b"this is not a database" + path.read_bytes()[22:]
    path.write_bytes(damaged)

    at = open_app()
    assert not at.exception
    [error] = at.error
    assert plain(error.value) == (
        f"The conversation file {path} cannot be used (file is not a database). Your documents are fine. Move the "
        f"file aside (`mv {path} {path}.broken`) and reload to start a new one; `sqlite3 {path}.broken .recover` "
        "can get old conversations back."
    )
    assert path.read_bytes() == damaged  # never replaced, so nothing is dropped


def test_hostile_strings_are_shown_as_text_everywhere_on_the_page(store, tmp_path, monkeypatch, embedder):
    """Issue 15.1: a record id, a question and Ollama's error text that would each load an outside image."""
    hostile_id = f"faq-1\n\n![i]({OUTSIDE}/id.png)"
    records = [{"id": hostile_id, "title": f"Refunds ![t]({OUTSIDE}/t.png) <img src={OUTSIDE}/t2.png>",
                "text": "Refunds are paid within 14 days of the return.", "course": f"[c]({OUTSIDE}/c)"}]
    (tmp_path / "hostile.json").write_text(json.dumps(records))
    ingest([tmp_path / "hostile.json"], Settings(store_dir=store), embedder, IngestOptions())
    error_text = f"![e]({OUTSIDE}/e.png) <b>boom</b>"

    class HostileErrors(OllamaStandin):
        """The stand-in, answering every chat with HTTP 500 and a hostile error text (this test's own behaviour)."""

        def _chat(self, body):
            return (500, {"error": error_text}) if body.get("messages") else super()._chat(body)

    with HostileErrors() as server:
        monkeypatch.setenv("OLLAMA_HOST", server.host)
        question = f"![q]({OUTSIDE}/q.png) When are refunds paid?"
        at = ask(open_app(), question)

    assert not at.exception
    answer = assistant(at)
    shown = [e.value for e in answer.error] + [c.value for c in answer.caption] + [m.value for m in answer.expander[1].markdown]
    shown += [c.value for c in answer.expander[1].caption] + [at.chat_message[0].markdown[0].value]
    shown += [b.label for b in at.sidebar.button if b.key.startswith(("open_", "delete_"))]
    hostile = [value for value in shown if "198" in value]
    assert len(hostile) >= 5, shown
    for value in hostile:
        assert "\\[" in value and inert(value), value
    assert plain(answer.error[0].value) == (
        f"Ollama at `{server.url}` could not answer. Try again; the details say what it reported.")
    assert answer.expander[0].text[0].value == f"Ollama at {server.url} answered 500: {error_text}"
    source = plain([m.value for m in answer.expander[1].markdown if "198" in m.value][0])
    assert f"faq-1 ![i]({OUTSIDE}/id.png)" in source and f"course: [c]({OUTSIDE}/c)" in source


def test_an_answer_keeps_its_markdown_but_nothing_in_it_can_fetch_or_link(store, ollama_server):
    hostile = (f"**Bold** and `code` [1].\n\n![x]({OUTSIDE}/x.png) <img src=\"{OUTSIDE}/y.png\"> [link]({OUTSIDE}/z) "
               f"<{OUTSIDE}/auto> www.example.com\n\n```\nfirst\n\n![c]({OUTSIDE}/c.png)\n```\n- item")
    ollama_server.reply = hostile
    at = ask(open_app(), "How do I install the app?")

    checked = assistant(at).markdown[0].value
    assert "<img" not in checked and "<a " not in checked and "\n" not in checked  # the check's marks included
    html = without_check(checked)
    assert html == answer_html(hostile)
    assert html.startswith('<div class="rag-answer"><p><strong>Bold</strong> and <code>code</code> [1].</p>')
    assert "\n" not in html and "<img" not in html and "<a " not in html
    assert f"[image: x] ({OUTSIDE}/x.png)" in html and f"&lt;img src=&quot;{OUTSIDE}/y.png&quot;&gt;" in html
    assert f"link ({OUTSIDE}/z)" in html
    assert f"<pre><code>first&#10;&#10;![c]({OUTSIDE}/c.png)&#10;</code></pre><ul><li>item</li></ul>" in html


def test_empty_page_shows_the_store_and_example_questions_from_its_headings(store, ollama_server):
    at = loaded(open_app())
    intro = plain(at.markdown[0].value)
    assert re.fullmatch(r"Ask about your documents: 5 documents \(5 md\) · \d+ chunks · last ingest "
                        r"(just now|\d+ minutes? ago) \(\d\d:\d\d\)\.", intro), intro
    examples = [b for b in at.button if b.key.startswith("example_")]
    assert [plain(b.label) for b in examples] == EXAMPLES_OF_THE_GUIDE

    question = plain(examples[0].label)
    examples[0].click().run()
    assert plain(at.chat_message[0].markdown[0].value) == question
    assert without_check(assistant(at).markdown[0].value) == answer_html(ANSWER)


def test_upload_ingests_through_the_pipeline_and_filters_by_field(store, ollama_server):
    records = [
        {"id": "r1", "title": "Parking rules", "text": "Bicycles are parked in the courtyard rack.", "site": "north"},
        {"id": "r2", "title": "Parking rules", "text": "Bicycles are parked in the basement garage.", "site": "south"},
    ]
    at = open_app()
    assert re.match(r"Up to \d+ MB per file \(server\.maxUploadSize", at.sidebar.file_uploader(key="upload").help)
    at.sidebar.file_uploader(key="upload").set_value(
        [("sites.json", json.dumps(records).encode(), "application/json"),
         ("notes.md", b"# Lab notes\n\nThe <script>alert(1)</script> tag is shown as text.\n", "text/markdown")]
    ).run()
    at.sidebar.button(key="ingest_uploads").click().run()

    assert not at.exception
    assert plain(at.sidebar.success[0].value) == "3 added, 0 updated, 0 unchanged, 0 skipped; 3 chunks written."
    [store_line] = [plain(c.value) for c in at.sidebar.caption if "chunks · last ingest" in c.value]
    assert store_line.startswith("8 documents (6 md, 2 json) · ")

    at.sidebar.selectbox(key="filter_field").set_value("site").run()
    at.sidebar.selectbox(key="filter_value").set_value("south").run()
    assert [plain(c.value) for c in at.main.caption if c.value.startswith("Searching only")] == ["Searching only site = south"]
    ask(at, "Where are bicycles parked?")
    sources = assistant(at).expander[0]
    assert [plain(c.value) for c in sources.caption] == [
        "Searched for: Where are bicycles parked? (searched only site = south)", "Bicycles are parked in the basement garage.",
    ]

    at.button(key="clear_filter").click().run()  # the one-click clear above the chat box
    assert at.sidebar.selectbox(key="filter_field").value == "(no filter)"
    assert [c.value for c in at.main.caption if c.value.startswith("Searching only")] == []
    at.sidebar.slider(key="top_k").set_value(20).run()
    ask(at, "Which tag is shown as text in the lab notes?")
    snippets = [plain(c.value) for c in assistant(at).expander[0].caption]
    assert "The <script>alert(1)</script> tag is shown as text." in snippets
    assert at.get("html") == [at.get("html")[0]] and "<style>" in at.get("html")[0].proto.body  # only our CSS


def test_an_upload_with_records_the_store_would_refuse_is_stored_with_a_note_for_each_fix(store, ollama_server):
    records = '[{"id": "r1", "text": "Kayaks are stored in shed \\ud800 four.", "$or": "x"}]'
    at = open_app()
    at.sidebar.file_uploader(key="upload").set_value(
        [("records.json", records.encode(), "application/json"), ("notes.md", b"# Notes\n\nPaddles hang by the door.\n", "text/markdown")]
    ).run()
    at.sidebar.button(key="ingest_uploads").click().run()

    assert not at.exception
    assert plain(at.sidebar.success[0].value) == "2 added, 0 updated, 0 unchanged, 0 skipped; 2 chunks written."
    notes = [plain(c.value) for c in at.sidebar.caption if plain(c.value).startswith("records.json")]
    assert notes == [
        "records.json r1: lone surrogate escapes in its text replaced by U+FFFD",
        "records.json r1: metadata field '$or' renamed to 'or' (the store reserves names starting with $, # or chroma:)",
    ]
    ask(at, "Where are kayaks stored?")
    assert "Kayaks are stored in shed \ufffd four." in [plain(c.value) for c in assistant(at).expander[0].caption]


def test_uploads_never_replace_silently_and_odd_names_stay_in_their_folder(store, ollama_server):
    long_name = "n" * 300 + ".md"
    first = open_app()
    first.sidebar.file_uploader(key="upload").set_value([("notes.md", b"# Notes\n\nThe first notes file.\n", "text/markdown")]).run()
    first.sidebar.button(key="ingest_uploads").click().run()

    other = open_app(OTHER_BROWSER)
    other.sidebar.file_uploader(key="upload").set_value([
        ("notes.md", b"# Notes\n\nA different notes file.\n", "text/markdown"),
        ("getting-started.md", b"# Mine\n\nNot the guide's getting started page.\n", "text/markdown"),
        ("../../escape.md", b"# Escape\n\nStays in the uploads folder.\n", "text/markdown"),
        (long_name, b"# Long\n\nA file with a very long name.\n", "text/markdown"),
        ("invoice\u202etxt.md", b"# Invoice\n\nAn invoice with a bidi override in its name.\n", "text/markdown"),
    ]).run()
    other.sidebar.button(key="ingest_uploads").click().run()

    assert not other.exception
    uploads = store / "uploads"
    assert sorted(p.name for p in uploads.iterdir()) == sorted(
        ["notes.md", "notes (2).md", "getting-started (2).md", "escape.md", "n" * 117 + ".md", "invoice_txt.md"])
    assert (uploads / "notes.md").read_text() == "# Notes\n\nThe first notes file.\n"
    assert plain(other.sidebar.success[0].value) == "5 added, 0 updated, 0 unchanged, 0 skipped; 5 chunks written."
    notes = [plain(c.value) for c in other.sidebar.caption if "saved as" in c.value]
    assert notes == [
        "notes.md: saved as notes (2).md: a different document named notes.md is already in the store",
        "getting-started.md: saved as getting-started (2).md: a different document named getting-started.md is "
        "already in the store",
        "../../escape.md: saved as escape.md",
        f"{long_name}: saved as {'n' * 117}.md",
        "invoice\\u202etxt.md: saved as invoice_txt.md",
    ]


def test_cancel_raised_from_progress_stops_the_ingest_and_frees_the_lock_at_once(tmp_path, embedder):
    """The upload box's Cancel stops a run by raising from its progress callback (Streamlit's rerun does that)."""
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(6):
        (folder / f"page-{i}.md").write_text(f"# Page {i}\n\n" + "words and more words " * 400)
    settings = Settings(store_dir=tmp_path / "store")

    seen = []

    def on_progress(kind: str, n: int) -> None:
        seen.append(kind)
        if seen.count("file") == 2:
            raise IngestCancelled("Cancelled.")

    with pytest.raises(IngestCancelled):
        ingest([folder], settings, embedder, IngestOptions(), on_progress)
    with writer_lock(settings, active=True):  # free at once: a second ingest could start
        assert (settings.store_dir / LOCK_NAME).exists()
    report = ingest([folder], settings, embedder, IngestOptions())
    assert len(report.added) + len(report.unchanged) == 6 and not report.skipped


def test_condensed_query_is_the_first_line_without_label_or_quotes():
    assert clean_query('Query: "How do I install on Windows?"\nBecause...') == "How do I install on Windows?"
    assert clean_query("\n\n") == ""


def test_cited_numbers_reads_single_adjacent_and_listed_markers():
    assert cited_numbers("A [1]. B [2][3]. C [4, 5]. Not [x] or [].") == {1, 2, 3, 4, 5}


def test_history_rows_survive_the_page_reading_them(store, ollama_server):
    ask(open_app(), "How do I install the app?")
    with sqlite3.connect(store / FILENAME) as db:
        states = [json.loads(meta).get("state") for (meta,) in db.execute("SELECT meta FROM messages WHERE role = 'assistant'")]
    assert states == ["done"]


def test_text_shows_untrusted_strings_literally_on_one_line_with_controls_visible():
    from rag.ui.text import text, visible

    value = text(f"faq-1\n\n![i]({OUTSIDE}/x.png) :material/forum: :red[x] $y$ <b> www.example.com a@b.c")
    assert "\n" not in value and inert(value)
    assert plain(value) == f"faq-1 ![i]({OUTSIDE}/x.png) :material/forum: :red[x] $y$ <b> www.example.com a@b.c"
    assert visible("invoice\u202etxt.md\x1b[2J\u200b") == "invoice\\u202etxt.md\\x1b[2J\\u200b"


def test_answer_html_escapes_raw_html_and_turns_images_and_links_into_text():
    assert answer_html("<script>alert(1)</script>") == '<div class="rag-answer"><p>&lt;script&gt;alert(1)&lt;/script&gt;</p></div>'
    assert answer_html("![a](http://x/y.png) [b](http://x/z)") == (
        '<div class="rag-answer"><p>[image: a] (http://x/y.png) b (http://x/z)</p></div>')
    assert answer_html("a\nb  \nc") == '<div class="rag-answer"><p>a b<br />c</p></div>'
    assert answer_html("right\u202eleft") == '<div class="rag-answer"><p>right\\u202eleft</p></div>'


def test_readable_snippet_drops_markdown_syntax_and_line_breaks():
    from rag.ui.answer import snippet

    assert snippet("# Install\n\nRun **pip** with\n`-r requirements.txt`:\n\n```sh\npip install\n```\n") == (
        "Install Run pip with -r requirements.txt: pip install")


def test_safe_names_stay_in_their_folder_and_within_file_system_limits():
    from rag.ui.uploads import safe_name

    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name("..\\..\\win.ini") == "win.ini"
    assert safe_name(".env") == "env"
    assert safe_name("...") == "upload"
    assert safe_name("invoice\u202etxt.md") == "invoice_txt.md"
    assert safe_name("a" * 304 + ".md") == "a" * 117 + ".md"
    assert len(safe_name("é" * 300 + ".md").encode()) <= 120


def test_a_name_clash_between_sessions_gets_a_numbered_name_and_never_replaces(tmp_path):
    from rag.ui.uploads import save_uploads

    first = save_uploads([("notes.md", b"one")], tmp_path)
    same = save_uploads([("notes.md", b"one")], tmp_path)
    other = save_uploads([("notes.md", b"two"), ("x" * 304 + ".md", b"three")], tmp_path)
    replaced = save_uploads([("notes.md", b"four")], tmp_path, replace=True)

    assert [f.path.name for f in first.files] == ["notes.md"] and first.files[0].note == ""
    assert same.files[0].note == "unchanged: the same file is already in the store as notes.md"
    assert [f.path.name for f in other.files] == ["notes (2).md", "x" * 117 + ".md"]
    assert (tmp_path / "notes (2).md").read_bytes() == b"two"
    assert replaced.files[0].note == "replaces the earlier notes.md"
    assert (tmp_path / "notes.md").read_bytes() == b"four"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["notes.md", "notes (2).md", "x" * 117 + ".md"])


def test_last_ingest_is_relative_and_in_local_time():
    from datetime import datetime, timezone
    from zoneinfo import ZoneInfo

    from rag.ui.store_state import ingested_ago

    now = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    berlin = ZoneInfo("Europe/Berlin")
    assert ingested_ago("2026-03-01T11:57:00+00:00", now, berlin) == "3 minutes ago (12:57)"
    assert ingested_ago("2026-03-01T11:59:30+00:00", now, berlin) == "just now (12:59)"
    assert ingested_ago("2026-02-27T09:00:00+00:00", now, berlin) == "2 days ago (2026-02-27 10:00)"
    assert ingested_ago("", now, berlin) == "unknown"


def test_example_questions_come_from_titles_that_are_questions_or_from_headings():
    from rag.ui.store_state import example_question, pick_examples

    assert example_question({"title": "How do I run the homework?"}) == "How do I run the homework?"
    assert example_question({"title": "Guide", "headings": "Install > Linux"}) == "Tell me about Linux."
    assert example_question({"title": "Setup", "headings": "Setup > Choosing a model"}) == "How do I go about choosing a model?"
    assert example_question({"title": "Guide", "headings": "Use > The ingest command"}) == "Tell me about the ingest command."
    assert example_question({"title": "Help", "headings": "Help > The first answer is slow"}) == "What if the first answer is slow?"
    assert example_question({"title": "Help", "headings": "Help > Model not found"}) == "What to do about “Model not found”?"
    assert example_question({"title": "Ask", "headings": "Ask > When the documents do not know"}) == (
        "What happens when the documents do not know?")
    assert example_question({"title": "Ask", "headings": "Ask > In the browser"}) is None  # names no topic by itself
    assert example_question({"title": "JSON records"}) == "Tell me about JSON records."
    assert example_question({"title": "12", "headings": ""}) is None
    assert pick_examples({"a": ["qa"], "b": ["qb"], "c": ["qc"], "d": ["qd"]}) == ["qa", "qb", "qc"]


def test_the_page_style_holds_nothing_the_html_sanitiser_would_drop_it_for():
    """DOMPurify (st.html) drops a <style> whose text holds '<' and a letter or '/': a comment naming "<title>" once
    dropped the whole style, and with it the layout that keeps each conversation's delete button in the sidebar."""
    from rag.ui.browser import PAGE_CSS

    inner = PAGE_CSS.strip().removeprefix("<style>").removesuffix("</style>")
    assert "<style>" in PAGE_CSS and re.search(r"<[/\w!]", inner) is None


def test_an_answer_cut_off_before_its_first_word_says_it_was_cancelled_not_incomplete(store, ollama_server):
    history = History(history_path(Settings()), BROWSER)
    conversation = history.create("Two cut-off answers")
    ends = [("", "stopped"), ("", "new_question"), ("", "interrupted"), ("Partly", "stopped"), ("Partly", "interrupted")]
    for content, state in ends:
        history.add(conversation.id, "user", "How do I install the app?")
        history.add(conversation.id, "assistant", content, {"kind": "answer", "state": state})
    at = loaded(open_app(c=conversation.id))
    notes = [plain(c.value) for m in at.chat_message if m.name == "assistant" for c in m.caption]
    assert notes == [
        "Cancelled before the answer started: you pressed Stop.",
        "Cancelled before the answer started: you asked the next question.",
        "Cancelled before the answer started (a new question, a changed setting, a reload or the app stopping). Ask "
        "again for an answer.",
        "Stopped: you pressed Stop. The answer above is incomplete.",
        "Interrupted before it finished (a new question, a changed setting, a reload or the app stopping). The answer "
        "above is incomplete; ask again for the whole answer.",
    ]


def test_a_skipped_upload_is_named_without_the_servers_folder_and_not_kept(store, ollama_server):
    at = open_app()
    at.sidebar.file_uploader(key="upload").set_value(
        [("scan.pdf", b"%PDF-1.4 not really a PDF", "application/pdf"),
         ("notes.md", b"# Notes\n\nHerons fish at dawn.\n", "text/markdown")]
    ).run()
    at.sidebar.button(key="ingest_uploads").click().run()

    folder = Settings().store_dir / "uploads"
    assert plain(at.sidebar.success[0].value) == "1 added, 0 updated, 0 unchanged, 1 skipped; 1 chunks written."
    [line] = [plain(c.value) for c in at.sidebar.caption if c.value.startswith("scan")]
    assert line.startswith("scan.pdf: skipped, ") and line.endswith(" (the file was not kept)")
    assert str(folder) not in line and str(Path.cwd()) not in line
    assert sorted(p.name for p in folder.iterdir()) == ["notes.md"]


def test_a_first_start_before_any_ingest_says_what_to_run_and_keeps_the_page(tmp_path, ollama_server, monkeypatch):
    monkeypatch.setenv("RAG_STORE_DIR", str(tmp_path / "no-store-yet"))
    at = open_app()

    assert not at.exception
    [info] = [plain(i.value) for i in at.info]
    assert info.startswith(f"The store at {tmp_path / 'no-store-yet'} has no collection 'docs'.")
    assert "run `python -m ingest` first" in info and info.endswith("You can also add files with the upload box in the sidebar.")
    assert at.chat_input(key="question") and at.sidebar.file_uploader(key="upload")
    assert [(link.proto.page, link.proto.label) for link in at.get("page_link")][:2] == [("", "Chat"), ("Models", "Models")]
