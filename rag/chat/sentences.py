"""An answer's sentences with the [n] markers each one cites, and where each ends in the answer."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from rag.chat.citations import CITATION, LEADING_CITATIONS, cited_numbers

SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
LIST_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
LETTER = re.compile(r"[^\W\d_]")


@dataclass(frozen=True)
class Sentence:
    """One sentence of an answer: its text without markers, the source numbers it cites, and the offset in the
    answer just after it (its trailing markers included)."""

    text: str
    cited: frozenset[int]
    end: int = field(default=0, compare=False)


def strip_citations(text: str) -> str:
    """The text without its [n] markers, spaces tidied."""
    text = CITATION.sub("", text)
    return re.sub(r"\s+([.,;:!?])", r"\1", re.sub(r"[ \t]{2,}", " ", text)).strip()


def split_sentences(answer: str) -> list[Sentence]:
    """The answer's sentences; markers written after a full stop ("... done. [2]") belong to the sentence before."""
    pieces: list[list] = []  # [text, end offset]
    start = 0
    for boundary in [*SENTENCE_END.finditer(answer), None]:
        stop = boundary.start() if boundary else len(answer)
        raw = answer[start:stop]
        lead = LEADING_CITATIONS.match(raw)
        if lead and pieces:
            pieces[-1][0] += lead.group(0)
            pieces[-1][1] = start + lead.end()
            raw = raw[lead.end():]
        if raw.strip():
            pieces.append([LIST_BULLET.sub("", raw), stop])
        start = boundary.end() if boundary else stop
    sentences = []
    for piece, end in pieces:
        text = strip_citations(piece)
        if LETTER.search(text):
            sentences.append(Sentence(text, frozenset(cited_numbers(piece)), end))
    return sentences
