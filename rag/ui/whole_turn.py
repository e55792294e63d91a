"""A whole-document turn on the page: the scope and mode of a question, "part 3 of 12" while reading in parts, the
notes so far saved with the answer at every part (so Stop keeps them), and what is saved under the answer."""
from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from rag.chat.mode import choose_mode, is_comparison
from rag.chat.scope import named_in
from rag.chat.whole import WholeReader, WholeTurn, covered_text
from rag.core.settings import Settings
from rag.llm.backend import Backend
from rag.ui.text import text


def scope_and_mode(question: str, index, choices: dict) -> tuple[list[str], str]:
    """The documents the question is asked of (the picker's, else one the question names) and how to read them."""
    scope = list(choices.get("scope") or []) or named_in(question, index)
    return scope, choose_mode(question, scope, choices.get("mode"))


def notes_line(done: int, total: int) -> str:
    """What the saved answer says while notes are being taken (and after a Stop)."""
    return f"Notes on {covered_text(done)} of {total} (Stop keeps them; asking again reads only the parts not read yet)"


def read_on_page(question: str, scope: list[str], mode: str, index, settings: Settings, llm: Backend, model: str,
                 recorder, draw_stop: Callable[[], None]) -> WholeTurn:
    """Read the scope with a Stop button and "Reading part 3 of 12" shown; the notes so far are saved at every part."""
    controls, status = st.empty(), st.empty()
    reader: WholeReader | None = None

    def progress(number: int, total: int) -> None:
        notes = reader.reading.notes if reader and reader.reading else []
        recorder.pieces[:] = ["\n\n".join(n.block() for n in notes)]
        recorder.save(figures=notes_line(number - 1, total), scope=scope)
        status.info(text(f"Reading part {number} of {total}…"), icon=":material/menu_book:")  # where Stop can land

    with controls.container():
        draw_stop()
    reader = WholeReader(settings, llm, model, progress=progress)
    with st.spinner(text(f"Reading {', '.join(scope)}…")):
        turn = reader.prepare(question, index, scope, compare=is_comparison(question, scope), force_parts=mode == "parts")
    controls.empty()
    status.empty()
    recorder.pieces.clear()
    return turn


def whole_meta(turn, meta: dict, scope: list[str]) -> dict:
    """An answer's saved meta with its scope, and for a whole-document turn how it was read and only the cited sections."""
    reading = getattr(turn, "reading", None)
    if reading is None:
        return {**meta, "scope": scope}
    cited = [source for source in meta.get("sources", []) if source["cited"]]
    return {**meta, "scope": reading.scope, "sources": cited, "figures": f"{reading.summary()} · {meta.get('figures', '')}"}
