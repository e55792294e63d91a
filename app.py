"""The chat page: `streamlit run app.py`. Widgets, the chat loop and rendering only; the logic lives in rag/."""
from __future__ import annotations

from types import SimpleNamespace
from zoneinfo import ZoneInfo

import streamlit as st

from rag.ui import prefs as ui_prefs
from rag.core.errors import RagError
from rag.ui.history import History, HistoryError, history_path
from rag.core.settings import Settings, load_settings
from rag.ui.browser import browser_id, page_scripts, page_style
from rag.ui.navigation import page_links

NO_FILTER = "(no filter)"
MODELS_WAIT_S = 2.0  # how long a page run waits for the model list before it goes on without it
MODELS_POLL_S = 1.0  # how often a page whose model list is pending looks for it

st.set_page_config(page_title="Chat with your documents", page_icon="💬", layout="wide")  # an emoji: no font fetched


# ---------- shared objects ----------

@st.cache_resource(show_spinner=False)
def get_retriever(key: str, _settings: Settings) -> BackgroundRetriever:
    """The retriever for one store, collection and embedder (key names them), loading in the background."""
    return BackgroundRetriever(_settings)


@st.cache_resource(show_spinner=False)
def get_store_summary(key: str, chunks: int, updated_at: str, _collection, _metadatas: list[dict]) -> ui_store.StoreSummary:
    """The store's counts, formats, filter choices and example questions, recomputed when its contents change."""
    return ui_store.summarise_store(_collection, _metadatas)


@st.cache_resource(show_spinner=False)
def get_llm(host: str, _settings: Settings) -> Backend:
    """The model server (the LLM box) the settings name, one per address."""
    return open_backend(_settings)


def store_key(settings: Settings) -> str:
    """A plain value naming the store, collection and embedder, for caches."""
    return f"{store_location(settings)}|{settings.collection}|{settings.embed_model}"


# ---------- session actions (widget callbacks) ----------

def refresh_models() -> None:
    st.session_state.pop("models", None)
    st.session_state.pop("models_future", None)


def request_pull(name: str) -> None:
    st.session_state.pull_request = name.strip()


def request_pull_from_box() -> None:
    request_pull(st.session_state.get("pull_name", ""))


def ask_anyway(message_id: int) -> None:
    st.session_state.ask_anyway = message_id


def ask_example(question: str) -> None:
    st.session_state.example_question = question


def clear_filter() -> None:
    st.session_state.filter_field = NO_FILTER


ACTIONS = SimpleNamespace(ask_anyway=ask_anyway, request_pull=request_pull, clear_filter=clear_filter)


# ---------- sidebar ----------

def load_models(llm: Backend) -> None:
    """Fill the session's model list from the model server, or remember why it failed; a slow server leaves the list
    pending (the page goes on, with the chat box) and the page redraws once it answers."""
    future = st.session_state.get("models_future") or list_in_background(llm)
    st.session_state.models_future = future
    try:
        facts, notes = future.result(timeout=MODELS_WAIT_S)
    except TimeoutError:
        return
    except LLMError as exc:
        facts, notes, error = [], [], str(exc)
    else:
        error = None
    del st.session_state.models_future
    st.session_state.models = [f.name for f in facts]
    st.session_state.model_labels = catalogue.dropdown_labels(facts)
    st.session_state.models_error = error
    st.session_state.models_notes = notes


@st.fragment(run_every=MODELS_POLL_S)
def await_models() -> None:
    """While the model server is slow to list its models: redraw the page once it has."""
    future = st.session_state.get("models_future")
    if future is None or future.done():
        st.rerun()


def run_pull(llm: Backend, name: str, area) -> None:
    """Pull a model with a progress bar; on success list it and select it."""
    if not pull_with_progress(llm, name, area):
        return
    st.session_state.pop("models_future", None)
    load_models(llm)
    pulled = llm.canonical(name)
    if pulled in st.session_state.get("models", []):
        st.session_state.model = pulled
    area.success(text(f"Pulled {pulled}; it is selected for the next question."))


def model_section(llm: Backend, settings: Settings) -> str:
    """The model dropdown, refresh, and pull; returns the chosen model."""
    sidebar = st.sidebar
    pull_area = sidebar.container()
    if "models" not in st.session_state or "models_future" in st.session_state:
        load_models(llm)
    if "models_future" in st.session_state:
        sidebar.caption(text(f"Asking {llm.label} at {llm.url} for its models…"))
        with sidebar:
            await_models()
    pending = st.session_state.pop("pull_request", None)
    if pending is not None:
        run_pull(llm, pending, pull_area)
    models = st.session_state.get("models", [])
    if st.session_state.get("models_error"):
        sidebar.error(notice(st.session_state.models_error))
    for note in st.session_state.get("models_notes", []):
        sidebar.caption(text(note))
    options = models or [catalogue.default_model([], settings.model, llm)]
    if st.session_state.get("model") not in options:
        st.session_state.model = catalogue.default_model(models, settings.model, llm)
    labels = st.session_state.get("model_labels", {})
    chosen = sidebar.selectbox("Chat model", options, key="model", help=model_help(llm, labels), format_func=one_line)
    if chosen in labels:
        sidebar.caption(text(" · ".join(labels[chosen])))
    sidebar.page_link("pages/1_Models.py", label="Compare models", icon=":material/leaderboard:")
    sidebar.button("Refresh models", key="refresh_models", on_click=refresh_models, icon=":material/refresh:")
    if models and st.session_state.get("warmed_model") != chosen:
        st.session_state.warmed_model = chosen
        warm_in_background(llm, chosen, settings)
    if not models and not st.session_state.get("models_error") and "models_future" not in st.session_state:
        sidebar.warning(notice(f"No chat model is installed in {llm.label} at {llm.url}."))
        if llm.can_pull():
            sidebar.button(text(f"Pull {chosen}"), key="pull_configured", on_click=request_pull, args=(chosen,))
    if llm.can_pull():
        with sidebar.expander("Pull a model"):
            st.text_input("Model name", key="pull_name", placeholder="e.g. llama3.2:3b")
            st.button("Pull", key="pull", on_click=request_pull_from_box)
    return chosen


def retrieval_section(summary: ui_store.StoreSummary | None) -> dict:
    """Top k, relevance floor, metadata filter, temperature, follow-up rewriting (values restored per browser)."""
    sidebar = st.sidebar
    sidebar.header("Retrieval")
    top_k = sidebar.slider("Top k documents", *ui_prefs.TOP_K_RANGE, key="top_k")
    floor = sidebar.slider("Relevance floor", 0.0, 1.0, step=0.01, key="floor",
                           help="Similarity a passage needs above what everyday questions reach in your documents "
                                "(less for questions in their own words); with nothing above it, the app says so.")
    where = label = None
    if summary is not None:
        choices = ([ui_store.FOLDER] if summary.folders else []) + list(summary.fields)
        if st.session_state.get("filter_field") not in [NO_FILTER, *choices]:
            st.session_state.filter_field = NO_FILTER
        field_name = sidebar.selectbox("Filter by", [NO_FILTER, *choices], key="filter_field", format_func=one_line)
        if field_name != NO_FILTER:
            values = list(summary.folders) if field_name == ui_store.FOLDER else summary.fields[field_name]
            if st.session_state.get("filter_value") not in values:
                st.session_state.filter_value = values[0]
            value = sidebar.selectbox("Value", values, key="filter_value", format_func=one_line)
            where = ui_store.filter_where(summary, field_name, value)
            label = f"{field_name} = {value}"
    condense = sidebar.checkbox("Rewrite follow-up questions", key="condense",
                                help="Turn 'and on Windows?' into a standalone query with the chat model before searching.")
    sidebar.header("Generation")
    temperature = sidebar.slider("Temperature", 0.0, 2.0, step=0.05, key="temperature")
    return {"top_k": top_k, "floor": floor, "where": where, "filter": label, "condense": condense,
            "temperature": temperature}


def store_state(settings: Settings) -> tuple[object | None, ui_store.StoreSummary | None, str | None]:
    """The retriever and the store summary (read afresh: a terminal ingest shows), or why the store cannot be
    used; (None, None, None) while loading."""
    retriever = None
    try:
        background = get_retriever(store_key(settings), settings)
        if background.error:
            get_retriever.clear()  # try again on the next run
        if background.loading or background.error:
            return None, None, background.error
        retriever = background.retriever
        index = retriever.index.get(recheck=True)
        chunks, updated_at = ui_store.store_version(retriever.collection)
        summary = get_store_summary(store_key(settings), chunks, updated_at, retriever.collection, index.metadatas)
    except RagError as exc:
        return None, None, str(exc)
    except Exception as exc:  # Chroma raises many kinds when its folder or server goes away
        return None, None, f"Cannot read the store: {retriever.live.describe_failure(exc) if retriever else exc}"
    return retriever, summary, None


def browser_zone():
    """The browser's time zone, for showing times; the server's when unknown."""
    zone = st.context.timezone
    try:
        return ZoneInfo(zone) if isinstance(zone, str) and zone else None
    except (KeyError, ValueError):
        return None


def store_line(settings: Settings, summary: ui_store.StoreSummary) -> str:
    """Documents, formats and the last ingest, as one line."""
    formats = ", ".join(f"{count} {kind}" for kind, count in summary.formats.items())
    return (f"{summary.documents} documents ({formats}) · {summary.chunks} chunks · last ingest "
            f"{ui_store.ingested_ago(summary.updated_at, zone=browser_zone())}")


def show_store_state(settings: Settings, summary: ui_store.StoreSummary | None, problem: str | None) -> None:
    st.sidebar.header("Store")
    if summary is None:
        if problem:
            st.sidebar.warning(notice(problem))
        else:
            st.sidebar.caption(text(f"Loading the store at {store_location(settings)}…"))
        return
    st.sidebar.caption(text(f"{store_line(settings, summary)} · embedder {summary.embedder or '?'} · "
                            f"{store_location(settings)}"))


# ---------- the page ----------

def opening(history: History) -> str | None:
    """The conversation to show: the session's, else the one named in the URL if this browser owns it, else none."""
    if "conversation_id" in st.session_state:
        return st.session_state.conversation_id
    wanted = st.query_params.get("c")
    if wanted and history.get(wanted) is None:
        st.session_state.not_found = True
    return wanted if wanted and history.get(wanted) else None


def welcome(settings: Settings, summary: ui_store.StoreSummary | None) -> None:
    """The empty page: what is in the store and three questions drawn from it."""
    if summary is None or not summary.documents:
        return
    with st.container(key="welcome"):  # one block: the first question's message replaces it whole, at once
        st.markdown(text(f"Ask about your documents: {store_line(settings, summary)}."))
        if summary.examples:
            st.caption("For example:")
            for index, example in enumerate(summary.examples):
                st.button(text(example), key=f"example_{index}", on_click=ask_example, args=(example,),
                          icon=":material/help:", type="tertiary")


def first_paint() -> tuple[Settings, History]:
    """The settings, this browser's history and choices, the sidebar's first header and the page's style: drawn
    before the chat's modules (Ollama's client, numpy, Markdown, ingest) are imported, so the page is not blank."""
    try:
        settings = load_settings()
        history = History(history_path(settings), browser_id())
        history.claim_unowned()
    except RagError as exc:
        from rag.ui.text import notice

        st.error(notice(exc))
        st.stop()
    ui_prefs.restore(st.session_state, history, settings)
    st.session_state.conversation_id = opening(history)
    page_links()
    st.sidebar.header("Model")
    page_style()
    page_scripts(close_sidebar=st.session_state.pop("close_sidebar", False))
    return settings, history


def main(settings: Settings, history: History) -> None:
    llm = get_llm(settings.ollama_host, settings)
    streaming = st.session_state.pop("streaming_id", None)
    # the chat box is drawn last (once the page is usable); a question sent with it is in its state from the start
    question = (st.session_state.get("question") or st.session_state.pop("example_question", None) or "").strip()
    pending = st.session_state.pop("ask_anyway", None)
    if streaming and question:
        note_interruption(history, streaming, "new_question")
    if question:
        start_conversation(history, question)  # before the conversations are listed, so the new chat is at once

    model = model_section(llm, settings)
    conversations_section(history)
    retriever, summary, store_problem = store_state(settings)
    choices = retrieval_section(summary)
    choices["scope"], choices["mode"] = documents_section(
        history, st.session_state.conversation_id, retriever.index.get() if retriever else None)
    show_store_state(settings, summary, store_problem)
    upload_section(settings, summary.doc_ids if summary else frozenset(), on_change=get_store_summary.clear)
    ui_prefs.remember(st.session_state, history)

    conversation_id = st.session_state.conversation_id
    if conversation_id and history.get(conversation_id) is None:
        conversation_id = st.session_state.conversation_id = None
    if conversation_id:
        st.query_params["c"] = conversation_id
    elif "c" in st.query_params:
        del st.query_params["c"]

    st.title("Chat with your documents")
    if problem := st.session_state.pop("prefs_problem", None):
        st.warning(text(problem), icon=":material/settings_alert:")
    if st.session_state.pop("not_found", False):
        st.info("That conversation is not in this browser's history (it was deleted, or it belongs to another "
                "browser). This is a new chat.")
    if store_problem:
        st.info(notice(store_problem + " You can also add files with the upload box in the sidebar."))
    elif retriever is None and not (question or pending is not None):  # a turn shows its own wait
        show_loading(get_retriever(store_key(settings), settings))

    messages = history.messages(conversation_id) if conversation_id else []
    if not messages and not question:
        welcome(settings, summary)
    busy = bool(question) or pending is not None
    for index, message in enumerate(messages):
        with st.chat_message(message.role):
            if message.role == "user":
                render_user(message)
            else:
                render_assistant(message, latest=index == len(messages) - 1 and not busy, actions=ACTIONS)

    ctx = TurnContext(settings, history, llm, model, retriever, store_problem, choices, ACTIONS,
                      loading=get_retriever(store_key(settings), settings) if retriever is None and not store_problem else None)
    if pending is not None and messages and messages[-1].id == pending:
        meta = messages[-1].meta
        run_turn(meta["question"], ctx, query=meta["query"], force=True)
    elif question:
        run_turn(question, ctx)
    active_filter(choices["filter"])
    show_scope(choices["scope"], choices["mode"])
    chat_box()


def active_filter(label: str | None) -> None:
    """Above the chat box, the sidebar filter that narrows every search (it is kept across chats and reloads), with a
    one-click clear."""
    if label is None:
        return
    with st.container(horizontal=True, vertical_alignment="center", key="active_filter"):
        st.caption(text(f"Searching only {label}"))
        st.button("Clear filter", key="clear_filter", icon=":material/filter_alt_off:", on_click=clear_filter)


def chat_box() -> None:
    """The chat box, drawn last: the page above it is usable before it."""
    st.chat_input("Ask a question about your documents", key="question")


def page(settings: Settings, history: History) -> None:
    """The page; when the conversation file fails midway (its disk is full), one line says so and the chat box stays."""
    try:
        main(settings, history)
    except HistoryError as exc:
        st.error(notice(exc), icon=":material/error:")
        chat_box()


FIRST = first_paint()
from rag.ui import store_state as ui_store  # noqa: E402  (the rest is imported after the first paint)
from rag.chat.turn import warm_in_background  # noqa: E402
from rag.core.errors import LLMError  # noqa: E402
from rag.llm import catalogue  # noqa: E402
from rag.llm.backend import Backend  # noqa: E402
from rag.llm.boxes import open_backend  # noqa: E402
from rag.ui.models import list_in_background, model_help, pull_with_progress  # noqa: E402
from rag.store.chroma import store_location  # noqa: E402
from rag.ui.conversations import conversations_section  # noqa: E402
from rag.ui.documents import documents_section, show_scope  # noqa: E402
from rag.ui.upload_box import upload_section  # noqa: E402
from rag.ui.loading import BackgroundRetriever, show_loading  # noqa: E402
from rag.ui.messages import render_assistant, render_user  # noqa: E402
from rag.ui.text import notice, one_line, text  # noqa: E402
from rag.ui.turn import TurnContext, note_interruption, run_turn, start_conversation  # noqa: E402

page(*FIRST)
