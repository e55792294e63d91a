"""`rag.ask` over whole documents: "part 3 of 12" on stderr while reading, Ctrl-C keeps the notes so far, the answer
streamed, then the line saying how it was read and the sections it cites."""
from __future__ import annotations

import sys

from rag.chat.citations import cited_numbers
from rag.chat.mode import is_comparison
from rag.chat.turn import stream_answer
from rag.chat.whole import WholeReader, WholeTurn
from rag.core.settings import Settings
from rag.core.terminal import safe_line, safe_stream, safe_text
from rag.llm.backend import Backend


class PartProgress:
    """Writes "part 3 of 12" on stderr: one live line on a terminal, one line per part otherwise."""

    def __init__(self):
        self.live = sys.stderr.isatty()
        self.shown = False

    def __call__(self, number: int, total: int) -> None:
        text = f"reading part {number} of {total}"
        print(f"\r{text}..." if self.live else text, end="" if self.live else "\n", file=sys.stderr, flush=True)
        self.shown = True

    def clear(self) -> None:
        """Clear the live line."""
        if self.shown and self.live:
            print("\r\033[K", end="", file=sys.stderr, flush=True)


def cited_sections(turn: WholeTurn) -> list:
    """The sections the answer cites, in number order."""
    numbers = cited_numbers(turn.answer)
    return [c for c in turn.citations if c.number in numbers]


def sections_json(turn: WholeTurn) -> list[dict]:
    """The cited sections as JSON-ready dicts."""
    return [{"number": c.number, "doc_id": c.doc_id, "title": c.title, "location": c.location, "text": c.text,
             "metadata": c.metadata} for c in cited_sections(turn)]


def print_sections(turn: WholeTurn) -> None:
    """How the documents were read, then the sections the answer cites."""
    print(f"\n({safe_line(turn.reading.summary())})")
    print("Sources:")
    cited = cited_sections(turn)
    if not cited:
        print("  (the answer cites no section)")
    for c in cited:
        where = f" ({safe_line(c.location)})" if c.location else ""
        print(f"  [{c.number}] {safe_line(c.doc_id)}: {safe_line(c.title)}{where}")


def read_whole(question: str, settings: Settings, llm: Backend, model: str, index, scope: list[str], mode: str,
               as_json: bool) -> WholeTurn:
    """Read the scope (whole, or in parts with progress on stderr) and stream the answer unless stopped."""
    progress = PartProgress()
    reader = WholeReader(settings, llm, model, progress=progress)
    try:
        turn = reader.prepare(question, index, scope, compare=is_comparison(question, scope), force_parts=mode == "parts")
    finally:
        progress.clear()
    if turn.reading.stopped:
        if not as_json:
            print(safe_text(turn.answer))
        return turn
    for piece in safe_stream(stream_answer(turn, llm, settings)):
        if not as_json:
            print(piece, end="", flush=True)
    if not as_json and turn.answer:
        print()
    return turn
