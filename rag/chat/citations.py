"""The [n] markers an answer cites its numbered passages with, read in one place: the page, the answer evaluation
and the follow-up rewrite all agree on what a citation is."""
from __future__ import annotations

import re

# The prompt numbers at most TOP_K_MAX x CHUNKS_PER_DOC (100) passages, so a longer number cites nothing: it is text
# (and int() refuses a string of over 4,300 digits, so an unbounded one could not even be read).
MAX_DIGITS = 4
NUMBER = rf"\d{{1,{MAX_DIGITS}}}"
CITATION = re.compile(rf"\[({NUMBER}(?:\s*,\s*{NUMBER})*)\]")
LEADING_CITATIONS = re.compile(rf"^(?:\s*\[{NUMBER}(?:\s*,\s*{NUMBER})*\])+")


def cited_numbers(text: str) -> set[int]:
    """The passage numbers a text cites: [1], [2][3] and [1, 2] all count; [12345] and longer do not."""
    return {int(n) for group in CITATION.findall(text) for n in group.split(",")}
