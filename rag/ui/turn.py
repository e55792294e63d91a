"""One turn on the page: rewrite a follow-up, retrieve, and stream the answer into the conversation as it comes.

The answer is saved from its first moment and every SAVE_EVERY_S while it streams. Streamlit stops a running script
when the user clicks anything (Stop, a new question, a setting) or the session ends, by raising inside it; the
`finally` below then saves what was written, marked "interrupted" (the Stop button's callback re-marks it "stopped").
"""
from __future__ import annotations

import time
from contextlib import closing
from dataclasses import dataclass

import streamlit as st

from rag.chat.turn import Turn, choose_num_ctx, prepare_turn, stream_answer
from rag.chat.condense import Condensed, condense_question
from rag.core.errors import ModelNotFound, RagError
from rag.ui.history import History, HistoryError, chat_history, now
from rag.llm.backend import Backend
from rag.search.retrieval import is_relevant
from rag.core.settings import Settings
from rag.ui.answer import answer_meta, no_match_meta, refusal
from rag.ui.errors import explain
from rag.ui.messages import render_answer_extras, render_assistant, render_user, show_answer, show_error
from rag.ui.stream import Waiting, relay
from rag.ui.text import text
from rag.ui.whole_turn import read_on_page, scope_and_mode, whole_meta
from rag.chat.scoped_search import search_within
from rag.ui.verified import check_meta, prepare_in_background

SAVE_EVERY_S = 0.5
RENDER_EVERY_S = 0.1  # at least; a long answer is redrawn less often, so drawing never dominates
LOADING_NOTICE_AFTER_S = 1.0
CUT_SHORT_REASONS = ("stopped", "new_question")
STOP_NOTE = "Stop keeps what is written so far. A new question also stops this answer (it does not wait)."


@dataclass
class TurnContext:
    """What a turn needs from the page."""

    settings: Settings
    history: History
    llm: Backend
    model: str
    retriever: object | None
    store_problem: str | None
    choices: dict
    actions: object
    loading: object | None = None  # the BackgroundRetriever while the store is still loading


class AnswerRecorder:
    """An assistant message saved as it is written: created at once, updated every SAVE_EVERY_S and at the end."""

    def __init__(self, history: History, conversation_id: str, meta: dict):
        self.history = history
        self.pieces: list[str] = []
        self.meta = {**meta, "state": "streaming", "saved_at": now()}
        self.message = history.add(conversation_id, "assistant", "", self.meta)
        self.saved = time.monotonic()

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def add(self, piece: str) -> None:
        self.pieces.append(piece)
        if time.monotonic() - self.saved >= SAVE_EVERY_S:
            self.save()

    def save(self, content: str | None = None, **meta) -> None:
        """Write the text so far (or content) and the meta, with the time of this save."""
        self.meta.update(meta, saved_at=now())
        self.history.update(self.message.id, self.text if content is None else content, self.meta)
        self.saved = time.monotonic()

    def finish(self, content: str, meta: dict) -> None:
        """Replace the message with its final form (an answer, a notice or an error)."""
        self.meta = {**meta, "saved_at": now()}
        self.history.update(self.message.id, content, self.meta)
        self.message.content, self.message.meta = content, self.meta


def stop_answer(history: History, message_id: int) -> None:
    """The Stop button's callback: mark the answer stopped (the interrupted run may save before or after this)."""
    history.change_state(message_id, "stopped", only_from=("streaming", "interrupted"))


def cut_short_state(history: History, message_id: int) -> str:
    """How an answer whose run was stopped ends: as the next run already marked it (Stop, a new question), else
    'interrupted' (the next run may mark it later: callbacks and this save can come in either order)."""
    saved = history.message(message_id)
    if saved is not None and saved.meta.get("state") in CUT_SHORT_REASONS:
        return saved.meta["state"]
    return "interrupted"


def note_interruption(history: History, message_id: int, reason: str) -> None:
    """Say why an interrupted answer stopped (e.g. new_question), when that is known only in the next run."""
    history.change_state(message_id, reason, only_from=("streaming", "interrupted"))


def answer_pieces(turn: Turn, llm: Backend, settings: Settings, status):
    """The answer's text as it streams; while the FIRST token is slow, a waiting line that counts seconds, then a note
    of how long it took. A pause between later tokens (a slow CPU streams 2 tokens/s) is no loading.

    Each heartbeat is a page update, which is where Streamlit can stop the run (Stop, a new question): before the
    first token the waiting line is redrawn, after it the note (or nothing) is.
    """
    shown, note, started = -1, None, False
    for item in relay(stream_answer(turn, llm, settings)):
        if isinstance(item, Waiting):
            if int(item.seconds) != shown:
                shown = int(item.seconds)
                if not started and item.seconds >= LOADING_NOTICE_AFTER_S:
                    status.info(text(f"Loading model {turn.model} in {llm.label}… {shown} s. The first answer after a start "
                                     "can take a while."), icon=":material/hourglass_top:")
                else:
                    show_note(status, note)
            continue
        if not started and shown >= LOADING_NOTICE_AFTER_S:
            note = (f"{turn.model} started answering after {turn.timings.first_token_ms / 1000:.1f} s "
                    "(the model was loading).")
            show_note(status, note)
        started, shown = True, -1
        yield item


def show_note(status, note: str | None) -> None:
    """The status line under the answer: the first token's note, or nothing."""
    if note:
        status.caption(text(note))
    else:
        status.empty()


def start_conversation(history: History, question: str) -> str:
    """The conversation on screen, or a new one titled after this question."""
    conversation_id = st.session_state.get("conversation_id")
    if conversation_id is None or history.get(conversation_id) is None:
        conversation_id = history.create(question).id
        st.session_state.conversation_id = conversation_id
    st.query_params["c"] = conversation_id
    return conversation_id


def rewrite(question: str, turns: list[dict], ctx: TurnContext) -> Condensed:
    """The standalone query for a follow-up (or the question itself, saying why)."""
    if not turns or not ctx.choices["condense"]:
        return Condensed(question)
    with st.spinner("Rewriting the follow-up as a standalone query…"):
        num_ctx = choose_num_ctx(ctx.llm, ctx.model, ctx.settings)[0]
        return condense_question(question, turns, ctx.llm, ctx.model, num_ctx)


def error_meta(exc: RagError, ctx: TurnContext) -> dict:
    """An error as saved with a message: headline in the user's words, the technical text as details."""
    explained = explain(exc, ctx.llm, ctx.model)
    meta = {"error": explained.headline, "error_details": explained.details}
    if isinstance(exc, ModelNotFound):
        meta["missing_model"] = exc.model
    return meta


def run_turn(question: str, ctx: TurnContext, *, query: str | None = None, force: bool = False) -> None:
    """Retrieve, then stream the answer (or say nothing is relevant), saving it into the conversation as it comes."""
    history = ctx.history
    conversation_id = start_conversation(history, question)
    turns = chat_history(history.messages(conversation_id))
    if not force:
        asked = history.add(conversation_id, "user", question)
        with st.chat_message("user"):
            render_user(asked)
    with st.chat_message("assistant"):
        recorder = AnswerRecorder(history, conversation_id, {"kind": "answer", "question": question})
        st.session_state.streaming_id = recorder.message.id
        finished, savable = False, True
        try:
            answer_turn(question, ctx, recorder, turns, query, force)
            finished = True
        except HistoryError:
            savable = False  # the conversation file refused a save (its disk is full): another would fail alike
            raise
        finally:
            if savable and not finished and recorder.meta.get("state") == "streaming":
                # no page or session-state calls here: they would raise Streamlit's stop again
                recorder.save(state=cut_short_state(history, recorder.message.id))
            if finished:
                st.session_state.pop("streaming_id", None)


def answer_turn(question: str, ctx: TurnContext, recorder: AnswerRecorder, turns: list[dict], query: str | None,
                force: bool) -> None:
    """The body of a turn, inside the assistant's message."""
    condensed = Condensed(query) if query is not None else rewrite(question, turns, ctx)
    note = f"Searched for the question as asked: {condensed.fallback}." if condensed.fallback else None
    if ctx.retriever is None and ctx.store_problem is None and ctx.loading is not None:
        with st.spinner(ctx.loading.status()):  # a question typed while the store loads waits for it
            ctx.retriever = ctx.loading.wait()
        ctx.store_problem = ctx.loading.error
    if ctx.retriever is None:
        fail(recorder, RagError(ctx.store_problem or "The store could not be opened."), ctx)
        return
    choices = ctx.choices
    turn_settings = ctx.settings.model_copy(update={"temperature": choices["temperature"]})
    try:
        index = ctx.retriever.index.get()
        scope, mode = scope_and_mode(question, index, choices)
        if mode != "search":
            turn = read_on_page(question, scope, mode, index, turn_settings, ctx.llm, ctx.model, recorder, lambda: st.button(
                "Stop", key="stop_reading", icon=":material/stop_circle:", on_click=stop_answer, args=(ctx.history, recorder.message.id)))
        else:
            docs = search_within(ctx.retriever, condensed.query, scope, choices["top_k"], choices["where"]) if scope else None
            turn = prepare_turn(question, turn_settings, ctx.retriever, model=ctx.model, history=turns,
                                where=choices["where"], k=choices["top_k"], query=condensed.query, llm=ctx.llm, docs=docs)
    except RagError as exc:
        fail(recorder, exc, ctx)
        return
    if mode == "search" and not force and not is_relevant(turn.docs, choices["floor"]):
        sentence, figures = refusal(turn, choices["floor"])
        recorder.finish(sentence, {**no_match_meta(turn, choices["floor"]), "figures_compared": figures, "query_note": note,
                                   "searched_only": choices.get("filter")})
        render_assistant(recorder.message, latest=True, actions=ctx.actions)
        return
    recorder.save(**whole_meta(turn, answer_meta(turn, "", floor=choices["floor"]), scope), query_note=note,
                  searched_only=choices.get("filter"), state="streaming")
    controls = st.empty()
    with controls.container(horizontal=True, vertical_alignment="center", key="stop_row"):
        st.button("Stop", key="stop_answer", icon=":material/stop_circle:", on_click=stop_answer,
                  args=(ctx.history, recorder.message.id))
        st.caption(STOP_NOTE)
    status, area = st.empty(), st.empty()
    drawn, every, preparing = 0.0, RENDER_EVERY_S, None
    with closing(answer_pieces(turn, ctx.llm, turn_settings, status)) as pieces:
        for piece in pieces:
            recorder.add(piece)
            preparing = preparing or prepare_in_background(turn.citations, ctx.retriever.embedder)
            if time.monotonic() - drawn >= every:
                started = time.monotonic()
                show_answer(area, recorder.text)
                drawn = time.monotonic()
                every = max(RENDER_EVERY_S, 4 * (drawn - started))
    show_answer(area, recorder.text)
    controls.empty()
    answer = recorder.text
    meta = {**whole_meta(turn, answer_meta(turn, answer, floor=choices["floor"]), scope), "query_note": note,
            "searched_only": choices.get("filter"), "state": "done"}
    if turn.error is not None:
        meta.update(error_meta(turn.error, ctx))
    if preparing is not None and (check := check_meta(answer, turn.citations, preparing, ctx.retriever.embedder)):
        meta["check"] = check
        show_answer(area, answer, check)
    recorder.finish(answer, meta)
    render_answer_extras(recorder.message, latest=True, actions=ctx.actions)


def fail(recorder: AnswerRecorder, exc: RagError, ctx: TurnContext) -> None:
    """Save and show an error that stopped the turn before any answer."""
    meta = error_meta(exc, ctx)
    recorder.finish(meta["error"], {"kind": "error", "error_details": meta["error_details"]})
    show_error(meta)
