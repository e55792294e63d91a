"""Saved messages on the page: the question, the answer with its state, sources, figures, warnings and actions."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from typing import Annotated

import streamlit as st
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from rag.ui.history import DAMAGED_DETAILS, Message
from rag.ui.answer import ALSO_SNIPPET_CHARS, shorten, sources_label
from rag.ui.text import answer_html, notice, text
from rag.ui.verified import WHAT_WAS_CHECKED, checked_answer_html

STALE_AFTER_S = 20  # an answer 'being written' whose last save is older than this was cut off (the app stopped)
STATE_NOTES = {
    "stopped": "Stopped: you pressed Stop. The answer above is incomplete.",
    "interrupted": "Interrupted before it finished (a new question, a changed setting, a reload or the app stopping). "
                   "The answer above is incomplete; ask again for the whole answer.",
    "new_question": "Stopped when you asked the next question. The answer above is incomplete.",
    "writing": "Still being written in another tab or before a reload; reload to see the rest.",
}
UNSTARTED_NOTES = {  # the same ends when not a word of the answer was written yet
    "stopped": "Cancelled before the answer started: you pressed Stop.",
    "interrupted": "Cancelled before the answer started (a new question, a changed setting, a reload or the app "
                   "stopping). Ask again for an answer.",
    "new_question": "Cancelled before the answer started: you asked the next question.",
}


class SavedSource(BaseModel):
    """A source listed under a saved answer, as the page redraws it."""

    number: int | None
    doc_id: str
    title: str
    location: str | None = None
    snippet: str
    score: float
    cited: bool
    details: dict[str, str | int | float | bool] = {}


class SavedQuote(BaseModel):
    """A passage that holds a checked sentence, and its matching sentence."""

    number: int
    quote: str


class SavedSentence(BaseModel):
    """A checked sentence of a saved answer."""

    text: str
    cites: list[int]
    supported: bool
    found_in: int | None
    quote: str | None
    end: int
    quotes: list[SavedQuote] = []


class SavedPassage(BaseModel):
    """A passage a checked sentence opens, as plain sentences."""

    number: int
    text: str


class SavedCheck(BaseModel):
    """The sentence check saved with an answer."""

    summary: str
    sentences: list[SavedSentence]
    passages: list[SavedPassage] = []


def iso_time(value: str) -> str:
    """A time written in ISO 8601, checked."""
    datetime.fromisoformat(value)
    return value


class SavedMeta(BaseModel):
    """A saved message's meta as the page redraws it: each field that is there must be of the kind the page reads;
    fields it does not check are kept as they are (they are shown through rag/ui/text.py like everything else)."""

    model_config = ConfigDict(extra="allow")

    kind: str | None = None
    state: str = "done"
    saved_at: Annotated[str, AfterValidator(iso_time)] | None = None
    query: str = ""
    query_note: str | None = None
    error: str | None = None
    error_details: str | None = None
    missing_model: str | None = None
    truncation: str | None = None
    cut_short: bool = False
    unknown_citations: list[int] = []
    sources: list[SavedSource] = []
    figures: str | None = None
    figures_compared: str | None = None
    searched_only: str | None = None
    reasoning: str | None = None
    check: SavedCheck | None = None


def redrawable(message: Message) -> tuple[Message, tuple[str, ...]]:
    """The message with the meta the page can redraw (none when its fields are damaged), and the damage to say."""
    try:
        meta = SavedMeta.model_validate(message.meta).model_dump(exclude_unset=True)
    except ValidationError:
        return dataclasses.replace(message, meta={}), tuple(dict.fromkeys((*message.damage, DAMAGED_DETAILS)))
    return dataclasses.replace(message, meta=meta), message.damage


def show_damage(damage: tuple[str, ...]) -> None:
    """What of a saved message could not be read back, one line each."""
    for note in damage:
        st.warning(note, icon=":material/broken_image:")


def answer_state(meta: dict, now: datetime | None = None) -> str:
    """done, stopped, interrupted, or writing (another run is still streaming it)."""
    state = meta.get("state", "done")
    if state != "streaming":
        return state
    saved = meta.get("saved_at")
    now = now or datetime.now(timezone.utc)
    fresh = saved and (now - datetime.fromisoformat(saved)).total_seconds() < STALE_AFTER_S
    return "writing" if fresh else "interrupted"


def show_answer(area, content: str, check: dict | None = None) -> None:
    """An answer's Markdown, with nothing in it that can fetch, link out or run (see ui_text.answer_html); once
    checked, with its citations opening their passages and its sentences marked (rag/ui/verified.py)."""
    area.markdown(checked_answer_html(content, check) if check else answer_html(content), unsafe_allow_html=True)


def show_error(meta: dict) -> None:
    """The error in the user's words, with the technical text in a collapsed details line."""
    st.error(notice(meta["error"]), icon=":material/error:")
    if meta.get("error_details"):
        with st.expander("Details", icon=":material/info:"):
            st.text(meta["error_details"])


def render_user(message: Message) -> None:
    """Redraw a saved question."""
    st.markdown(text(message.content))
    show_damage(message.damage)


def render_assistant(message: Message, latest: bool, actions) -> None:
    """Redraw a saved answer or notice; only the latest turn offers actions (ask anyway, pull)."""
    message, damage = redrawable(message)
    show_damage(damage)
    meta = message.meta
    kind = meta.get("kind")
    if kind == "no_match":
        st.markdown(text(message.content))
        if meta.get("figures_compared"):
            with st.expander("How close the documents came", icon=":material/info:"):
                st.caption(text(meta["figures_compared"]))
        st.caption(searched_line(meta))
        if latest:
            with st.container(horizontal=True):
                st.button("Ask the model anyway", key=f"ask_anyway_{message.id}", on_click=actions.ask_anyway,
                          args=(message.id,))
                if meta.get("searched_only"):
                    st.button("Clear filter", key=f"clear_filter_{message.id}", icon=":material/filter_alt_off:",
                              on_click=actions.clear_filter)
        return
    if kind == "error":
        show_error({"error": message.content, "error_details": meta.get("error_details")})
        return
    if message.content:
        show_answer(st, message.content, meta.get("check"))
    state = answer_state(meta)
    notes = STATE_NOTES if message.content or state == "writing" else UNSTARTED_NOTES
    if state in notes:
        st.caption(notes[state])
    render_answer_extras(message, latest, actions)


def render_answer_extras(message: Message, latest: bool, actions) -> None:
    """Everything under an answer's text: error, warnings, sources, figures."""
    meta = message.meta
    if meta.get("check"):
        st.caption(text(meta["check"]["summary"]), help=WHAT_WAS_CHECKED)
    if meta.get("error"):
        show_error(meta)
        if meta.get("missing_model") and latest:
            model = meta["missing_model"]
            st.button(text(f"Pull {model}"), key=f"pull_missing_{message.id}", on_click=actions.request_pull, args=(model,))
    if meta.get("truncation"):
        st.warning(text(meta["truncation"]))
    if meta.get("cut_short"):
        st.warning("The answer reached its length limit (RAG_ANSWER_TOKENS) and stops there.")
    if meta.get("unknown_citations"):
        numbers = ", ".join(f"[{n}]" for n in meta["unknown_citations"])
        st.warning(text(f"The answer cites {numbers}, which the model was not given."))
    if meta.get("reasoning"):
        with st.expander("The model's reasoning (not part of the answer, not checked)", icon=":material/psychology:"):
            st.markdown(answer_html(meta["reasoning"]), unsafe_allow_html=True)  # as inert as the answer itself
    if "sources" in meta:
        render_sources(meta, expanded=latest)
    if meta.get("figures"):
        st.caption(text(meta["figures"]))


def render_sources(meta: dict, expanded: bool) -> None:
    """The query searched and the sources, cited first, each by score; every string shown as text."""
    sources = meta.get("sources", [])
    cited = [s for s in sources if s["cited"]]
    others = [s for s in sources if not s["cited"]]
    with st.expander(sources_label(sources), expanded=expanded, icon=":material/description:"):
        st.caption(searched_line(meta))
        if meta.get("query_note"):
            st.caption(text(meta["query_note"]))
        for heading, group in (("Cited in the answer", cited), ("Also retrieved", others)):
            if not group:
                continue
            st.markdown(f"**{heading}**")
            for source in group:
                render_source(source)


def searched_line(meta: dict) -> str:
    """What was searched for, and the filter it was searched within, as text."""
    within = f" (searched only {meta['searched_only']})" if meta.get("searched_only") else ""
    return "Searched for: " + text(f"{meta.get('query', '')}{within}")


def render_source(source: dict) -> None:
    """One source: [n] title · heading or page · metadata · score · id, then its words as plain text."""
    parts = [f"**{text(source['title'])}**"]
    if source.get("location"):
        parts.append(text(source["location"]))
    parts.extend(text(f"{key}: {value}") for key, value in (source.get("details") or {}).items())
    parts.append(f"score {max(source['score'], 0.0):.3f}")  # a fused score below 0 means no likeness, as 0 does
    parts.append(text(source["doc_id"]))
    number = f"\\[{source['number']}\\] " if source.get("number") is not None else ""
    st.markdown(number + " · ".join(parts))
    words = source["snippet"] if source["cited"] else shorten(source["snippet"], ALSO_SNIPPET_CHARS)
    st.caption(text(words))
