"""A model saying the documents do not answer: such a sentence states nothing to check."""
from __future__ import annotations

import re

REFUSAL = re.compile(
    r"\b(?:documents?|sources?|context|passages?|provided (?:text|information))\b[^.\n]{0,60}?"
    r"\b(?:do(?:es)?\s*(?:not|n't)|cannot|can't|fail to)\s+(?:answer|contain|mention|say|provide|include|cover|address)"
    r"|\bno (?:information|answer|mention)\b[^.\n]{0,60}\b(?:documents?|sources?|context|passages?)\b",
    re.IGNORECASE,
)


def says_not_answered(text: str) -> bool:
    """True when the text says the documents do not answer (or mention, or cover) something."""
    return bool(REFUSAL.search(text))
