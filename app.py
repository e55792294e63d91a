"""The chat page: `streamlit run app.py`. Widgets, the chat loop and rendering only; the logic lives in rag/."""
from __future__ import annotations

import streamlit as st

from ingest.__main__ import summary as ingest_summary
from ingest.pipeline import IngestOptions, ingest
from rag import model_facts, ui_answer, ui_models, ui_store
from rag.chat import Turn, choose_num_ctx, prepare_turn, stream_answer, warm_in_background
from rag.condense import condense_question
from rag.embeddings import load_embedder
from rag.errors import ModelNotFound, OllamaError, RagError
from rag.history import History, Message, chat_history, history_path
from rag.llm import Ollama
from rag.retrieval import is_relevant, no_match_text
from rag.settings import Settings, load_settings
from rag.store import store_location
from rag.ui_loading import BackgroundRetriever, show_loading
from rag.ui_stream import Waiting, relay

LOADING_NOTICE_AFTER_S = 1.0
NO_FILTER = "(no filter)"
ALSO_SNIPPET_CHARS = 160

st.set_page_config(page_title="Chat with your documents", page_icon="💬", layout="wide")


# ---------- shared objects ----------

@st.cache_resource(show_spinner=False)
def get_retriever(key: str, _settings: Settings) -> BackgroundRetriever:
    """The retriever for one store, collection and embedder (key names them), loading in the background."""
    return BackgroundRetriever(_settings)


@st.cache_resource(show_spinner=False)
def get_store_summary(key: str, chunks: int, updated_at: str, _collection, _metadatas: list[dict]) -> ui_store.StoreSummary:
    """The store's counts and filter choices, recomputed when its size or last ingest changes."""
    return ui_store.summarise_store(_collection, _metadatas)


@st.cache_resource(show_spinner=False)
def get_history(path: str) -> History:
    """The conversation store."""
    return History(path)


@st.cache_resource(show_spinner=False)
def get_llm(host: str, _settings: Settings) -> Ollama:
    """The Ollama client for one host."""
    return Ollama(_settings)


def store_key(settings: Settings) -> str:
    """A plain value naming the store, collection and embedder, for caches."""
    return f"{store_location(settings)}|{settings.collection}|{settings.embed_model}"


# ---------- session actions (widget callbacks) ----------

def refresh_models() -> None:
    st.session_state.pop("models", None)


def request_pull(name: str) -> None:
    st.session_state.pull_request = name.strip()


def request_pull_from_box() -> None:
    request_pull(st.session_state.get("pull_name", ""))


def new_chat() -> None:
    st.session_state.conversation_id = None


def open_conversation(conversation_id: str) -> None:
    st.session_state.conversation_id = conversation_id


def delete_conversation(history: History, conversation_id: str) -> None:
    history.delete(conversation_id)
    if st.session_state.get("conversation_id") == conversation_id:
        st.session_state.conversation_id = None


def ask_anyway(message_id: int) -> None:
    st.session_state.ask_anyway = message_id


# ---------- sidebar ----------

def load_models(llm: Ollama) -> None:
    """Fill the session's model list from Ollama, or remember why it failed."""
    try:
        st.session_state.models = ui_models.chat_models(llm)
        st.session_state.model_labels = model_facts.dropdown_labels(llm)
        st.session_state.models_error = None
    except OllamaError as exc:
        st.session_state.models = []
        st.session_state.models_error = str(exc)


def run_pull(llm: Ollama, name: str, area) -> None:
    """Pull a model with a progress bar; on success list it and select it."""
    bar = area.progress(0.0, text=f"Pulling {name}…")
    try:
        for step in ui_models.pull_model(llm, name):
            bar.progress(ui_models.pull_fraction(step), text=f"{name}: {step.status}")
    except OllamaError as exc:
        area.error(str(exc))
        return
    load_models(llm)
    pulled = ui_models.normalise_model(name)
    if pulled in st.session_state.models:
        st.session_state.model = pulled
    area.success(f"Pulled {pulled}; it is selected for the next question.")


def model_section(llm: Ollama, settings: Settings) -> str:
    """The model dropdown, refresh, and pull; returns the chosen model."""
    sidebar = st.sidebar
    sidebar.header("Model")
    pull_area = sidebar.container()
    if "models" not in st.session_state:
        load_models(llm)
    pending = st.session_state.pop("pull_request", None)
    if pending is not None:
        run_pull(llm, pending, pull_area)
    models = st.session_state.models
    if st.session_state.models_error:
        sidebar.error(st.session_state.models_error)
    options = models or [ui_models.default_model([], settings.model)]
    if st.session_state.get("model") not in options:
        st.session_state.model = ui_models.default_model(models, settings.model)
    labels = st.session_state.get("model_labels", {})
    chosen = sidebar.selectbox("Chat model", options, key="model", help=model_facts.dropdown_help(labels))
    if chosen in labels:
        sidebar.caption(" · ".join(labels[chosen]))
    sidebar.page_link("pages/1_Models.py", label="Compare models", icon=":material/leaderboard:")
    sidebar.button("Refresh models", key="refresh_models", on_click=refresh_models, icon=":material/refresh:")
    if models and st.session_state.get("warmed_model") != chosen:
        st.session_state.warmed_model = chosen
        warm_in_background(llm, chosen, settings)
    if not models and not st.session_state.models_error:
        sidebar.warning(f"No chat model is installed in Ollama at {llm.url}.")
        sidebar.button(f"Pull {chosen}", key="pull_configured", on_click=request_pull, args=(chosen,))
    with sidebar.expander("Pull a model"):
        st.text_input("Model name", key="pull_name", placeholder="e.g. llama3.2:3b")
        st.button("Pull", key="pull", on_click=request_pull_from_box)
    return chosen


def conversations_section(history: History) -> None:
    """New chat, and the saved conversations with open and delete."""
    sidebar = st.sidebar
    sidebar.header("Conversations")
    sidebar.button("New chat", key="new_chat", on_click=new_chat, icon=":material/add:")
    current = st.session_state.get("conversation_id")
    for conversation in history.list():
        left, right = sidebar.columns([5, 1], vertical_alignment="center")
        label = ("▸ " if conversation.id == current else "") + conversation.title
        left.button(label, key=f"open_{conversation.id}", on_click=open_conversation, args=(conversation.id,),
                    type="tertiary")
        right.button("", key=f"delete_{conversation.id}", on_click=delete_conversation,
                     args=(history, conversation.id), icon=":material/delete:", help="Delete this conversation")


def retrieval_section(settings: Settings, summary: ui_store.StoreSummary | None) -> dict:
    """Top k, relevance floor, metadata filter, temperature, follow-up rewriting."""
    sidebar = st.sidebar
    sidebar.header("Retrieval")
    top_k = sidebar.slider("Top k documents", 1, 20, settings.top_k, key="top_k")
    floor = sidebar.slider("Relevance floor", 0.0, 1.0, float(settings.relevance_floor), 0.01, key="floor",
                           help="Below this score a passage is not relevant; with nothing above it, the app says so.")
    where = None
    if summary is not None:
        choices = ([ui_store.FOLDER] if summary.folders else []) + list(summary.fields)
        field_name = sidebar.selectbox("Filter by", [NO_FILTER, *choices], key="filter_field")
        if field_name != NO_FILTER:
            values = list(summary.folders) if field_name == ui_store.FOLDER else summary.fields[field_name]
            value = sidebar.selectbox("Value", values, key="filter_value", format_func=str)
            where = ui_store.filter_where(summary, field_name, value)
    condense = sidebar.checkbox("Rewrite follow-up questions", True, key="condense",
                                help="Turn 'and on Windows?' into a standalone query with the chat model before searching.")
    sidebar.header("Generation")
    temperature = sidebar.slider("Temperature", 0.0, 2.0, float(settings.temperature), 0.05, key="temperature")
    return {"top_k": top_k, "floor": floor, "where": where, "condense": condense, "temperature": temperature}


def store_section(settings: Settings) -> None:
    """Upload files into the store, then show its state."""
    sidebar = st.sidebar
    sidebar.header("Store")
    uploads = sidebar.file_uploader("Add documents", type=ui_store.UPLOAD_TYPES, accept_multiple_files=True,
                                    key="upload")
    if sidebar.button("Ingest uploaded files", key="ingest_uploads", disabled=not uploads):
        saved = ui_store.save_uploads([(f.name, f.getvalue()) for f in uploads], ui_store.uploads_dir(settings))
        bar = sidebar.progress(0.0, text="Ingesting…")
        counts = {"files": 0, "done": 0, "chunks": 0}

        def on_progress(kind: str, n: int) -> None:
            if kind == "files":
                counts["files"] = n
            elif kind == "file":
                counts["done"] += n
            elif kind == "chunks":
                counts["chunks"] += n
            total = max(counts["files"], 1)
            bar.progress(min(1.0, counts["done"] / total),
                         text=f"{counts['done']}/{counts['files']} files, {counts['chunks']} chunks")

        try:
            report = ingest(saved, settings, load_embedder(settings.embed_model), IngestOptions(), on_progress)
        except RagError as exc:
            sidebar.error(str(exc))
        else:
            get_store_summary.clear()
            st.session_state.ingest_summary = (len(saved), ingest_summary(report, store_location(settings)))
            st.rerun()  # redraw the filters and the store state from the new contents
    done = st.session_state.pop("ingest_summary", None)
    if done is not None:
        files, text = done
        sidebar.progress(1.0, text=f"Ingested {files} file{'s' if files != 1 else ''}")
        sidebar.code(text, language=None)


def store_state(settings: Settings) -> tuple[object | None, ui_store.StoreSummary | None, str | None]:
    """The retriever and the store summary, or the message saying why the store cannot be used; (None, None, None) while loading."""
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
        return None, None, f"Cannot read the store: {retriever.live.describe_failure(exc)}"
    return retriever, summary, None


def show_store_state(settings: Settings, summary: ui_store.StoreSummary | None, problem: str | None) -> None:
    if summary is None:
        if problem:
            st.sidebar.warning(problem)
        else:
            st.sidebar.caption(f"Loading the store at {store_location(settings)}…")
        return
    st.sidebar.caption(
        f"{summary.documents} documents · {summary.chunks} chunks · embedder {summary.embedder or '?'} · "
        f"last ingest {summary.updated_at or 'unknown'} · {store_location(settings)}"
    )


# ---------- rendering messages ----------

def render_sources(meta: dict, expanded: bool) -> None:
    """The query searched and the sources: cited first, then also retrieved; document text shown as text."""
    sources = meta.get("sources", [])
    cited = [s for s in sources if s["cited"]]
    others = [s for s in sources if not s["cited"]]
    label = f"Sources: {len(cited)} cited, {len(others)} also retrieved" if cited else f"Sources: {len(sources)} retrieved"
    with st.expander(label, expanded=expanded, icon=":material/description:"):
        st.caption("Searched for: " + ui_answer.escape_markdown(meta.get("query", "")))
        for heading, group in (("Cited in the answer", cited), ("Also retrieved", others)):
            if not group:
                continue
            st.markdown(f"**{heading}**")
            for source in group:
                number = f"[{source['number']}] " if source["number"] is not None else ""
                where = f" · {ui_answer.escape_markdown(source['location'])}" if source["location"] else ""
                st.markdown(
                    f"{ui_answer.escape_markdown(number)}**{ui_answer.escape_markdown(source['title'])}**{where}"
                    f" · score {source['score']:.3f} · `{source['doc_id'].replace('`', '')}`"
                )
                st.text(source["snippet"] if source["cited"] else ui_answer.shorten(source["snippet"], ALSO_SNIPPET_CHARS))


def render_assistant(message: Message, latest: bool) -> None:
    """Redraw a saved answer or notice with its sources, figures, warnings and actions."""
    meta = message.meta
    kind = meta.get("kind")
    if kind == "no_match":
        st.markdown(ui_answer.escape_markdown(message.content))
        st.caption("Searched for: " + ui_answer.escape_markdown(meta.get("query", "")))
        if latest:
            st.button("Ask the model anyway", key=f"ask_anyway_{message.id}", on_click=ask_anyway, args=(message.id,))
        return
    if kind == "error":
        st.error(message.content)
        return
    if message.content:
        st.markdown(ui_answer.safe_answer(message.content))
    render_answer_extras(message, latest)


def render_answer_extras(message: Message, latest: bool) -> None:
    """Everything under an answer's text."""
    meta = message.meta
    if meta.get("error"):
        st.error(meta["error"])
        if meta.get("missing_model") and latest:
            model = meta["missing_model"]
            st.button(f"Pull {model}", key=f"pull_missing_{message.id}", on_click=request_pull, args=(model,))
    if meta.get("truncation"):
        st.warning(meta["truncation"])
    if meta.get("cut_short"):
        st.warning("The answer reached its length limit (RAG_ANSWER_TOKENS) and stops there.")
    if meta.get("unknown_citations"):
        numbers = ", ".join(f"[{n}]" for n in meta["unknown_citations"])
        st.warning(f"The answer cites {numbers}, which the model was not given.")
    render_sources(meta, expanded=latest)
    st.caption(ui_answer.escape_markdown(meta.get("figures", "")))


# ---------- one turn ----------

def answer_pieces(turn: Turn, llm: Ollama, settings: Settings, status):
    """The answer's text as it streams; a 'loading model' note while the first token is slow."""
    waiting_shown = False
    for item in relay(stream_answer(turn, llm, settings)):
        if isinstance(item, Waiting):
            if not waiting_shown and item.seconds >= LOADING_NOTICE_AFTER_S:
                status.info(f"Loading model {turn.model} in Ollama… the first answer after a start can take a while.",
                            icon=":material/hourglass_top:")
                waiting_shown = True
            continue
        if waiting_shown:
            status.caption(f"{turn.model} started answering after {turn.timings.first_token_ms / 1000:.1f} s "
                           "(the model was loading).")
            waiting_shown = False
        yield item


def run_turn(question: str, ctx: dict, *, query: str | None = None, force: bool = False) -> None:
    """Retrieve, then stream the answer (or say nothing is relevant), and save it to the conversation."""
    history: History = ctx["history"]
    settings: Settings = ctx["settings"]
    choices = ctx["choices"]
    conversation_id = st.session_state.get("conversation_id")
    if conversation_id is None or history.get(conversation_id) is None:
        conversation_id = history.create(question).id
        st.session_state.conversation_id = conversation_id
        st.query_params["c"] = conversation_id
    turns = chat_history(history.messages(conversation_id))
    if not force:
        history.add(conversation_id, "user", question)
        with st.chat_message("user"):
            st.markdown(ui_answer.escape_markdown(question))
    if ctx["retriever"] is None and ctx["store_problem"] is None:
        background = get_retriever(store_key(settings), settings)
        with st.spinner(background.status()):
            ctx["retriever"] = background.wait()
        ctx["store_problem"] = background.error
        ctx["loading"].empty()
    with st.chat_message("assistant"):
        llm, model = ctx["llm"], ctx["model"]
        if query is None:
            query = question
            if turns and choices["condense"]:
                with st.spinner("Rewriting the follow-up as a standalone query…"):
                    try:
                        query = condense_question(question, turns, llm, model, choose_num_ctx(llm, model, settings)[0])
                    except OllamaError:
                        query = question
        if ctx["retriever"] is None:
            st.error(ctx["store_problem"])
            history.add(conversation_id, "assistant", ctx["store_problem"], {"kind": "error"})
            return
        turn_settings = settings.model_copy(update={"temperature": choices["temperature"]})
        try:
            turn = prepare_turn(question, turn_settings, ctx["retriever"], model=model, history=turns,
                                where=choices["where"], k=choices["top_k"], query=query, llm=llm)
        except RagError as exc:
            st.error(str(exc))
            history.add(conversation_id, "assistant", str(exc), {"kind": "error"})
            return
        if not force and not is_relevant(turn.docs, choices["floor"]):
            text = no_match_text(turn.docs, choices["floor"])
            message = history.add(conversation_id, "assistant", text, ui_answer.no_match_meta(turn, choices["floor"]))
            render_assistant(message, latest=True)
            return
        status = st.empty()
        st.write_stream(ui_answer.safe_pieces(answer_pieces(turn, llm, turn_settings, status)))
        error = turn.error
        meta = ui_answer.answer_meta(
            turn,
            floor=choices["floor"],
            error=str(error) if error else None,
            missing_model=error.model if isinstance(error, ModelNotFound) else None,
        )
        message = history.add(conversation_id, "assistant", turn.answer, meta)
        render_answer_extras(message, latest=True)


# ---------- the page ----------

def main() -> None:
    try:
        settings = load_settings()
    except RagError as exc:
        st.error(str(exc))
        st.stop()
    history = get_history(str(history_path(settings)))
    llm = get_llm(settings.ollama_host, settings)

    if "conversation_id" not in st.session_state:
        wanted = st.query_params.get("c")
        if wanted and history.get(wanted):
            st.session_state.conversation_id = wanted
        else:
            recent = history.list()
            st.session_state.conversation_id = recent[0].id if recent else None

    model = model_section(llm, settings)
    conversations_section(history)
    retriever, summary, store_problem = store_state(settings)
    choices = retrieval_section(settings, summary)
    store_section(settings)
    show_store_state(settings, summary, store_problem)

    conversation_id = st.session_state.conversation_id
    if conversation_id and history.get(conversation_id) is None:
        conversation_id = st.session_state.conversation_id = None
    if conversation_id:
        st.query_params["c"] = conversation_id
    elif "c" in st.query_params:
        del st.query_params["c"]

    st.title("Chat with your documents")
    if store_problem:
        st.info(store_problem + " You can also add files with the upload box in the sidebar.")
    loading = st.empty()
    if retriever is None and not store_problem:
        with loading.container():
            show_loading(get_retriever(store_key(settings), settings))

    messages = history.messages(conversation_id) if conversation_id else []
    for index, message in enumerate(messages):
        with st.chat_message(message.role):
            if message.role == "user":
                st.markdown(ui_answer.escape_markdown(message.content))
            else:
                render_assistant(message, latest=index == len(messages) - 1)

    ctx = {"settings": settings, "history": history, "llm": llm, "model": model, "retriever": retriever,
           "store_problem": store_problem, "choices": choices, "loading": loading}
    pending = st.session_state.pop("ask_anyway", None)
    if pending is not None and messages and messages[-1].id == pending:
        meta = messages[-1].meta
        run_turn(meta["question"], ctx, query=meta["query"], force=True)
    question = st.chat_input("Ask a question about your documents", key="question")
    if question and question.strip():
        run_turn(question.strip(), ctx)


main()
