"""Which way a question is answered, by a small rule on its words and its scope (no model call): "search" retrieves
passages; "whole" reads the scoped documents whole (in parts when they do not fit); --mode or the page overrides it."""
from __future__ import annotations

import re
from typing import Literal

Mode = Literal["search", "whole", "parts"]
MODES: tuple[str, ...] = ("search", "whole", "parts")

# Questions about a document as a whole: summaries, main points, outlines, comparisons, "list every X", "what is it
# about". A question about one thing in it ("what does it say about pricing?") is a search within the scope.
WHOLE_DOCUMENT = re.compile(
    r"\b(summari[sz]\w*|summary|summaries|tl;?dr|gist|overview|outline|main (?:points?|ideas?|topics?|takeaways?)"
    r"|key (?:points?|ideas?|takeaways?|findings?)|table of contents|compar\w*|contrast\w*|differences?|differ"
    r"|versus|vs\.?"
    r"|(?:list|name|enumerate) (?:all|every|each)|every (?:\w+ )?(?:mentioned|listed)|all the \w+ (?:it|they) (?:mentions?|lists?)"
    r"|(?:what\W*s|what (?:is|are)) (?:this|that|it|the|these|those)\b[^?]*\babout\s*\??\s*$"
    r"|r[ée]sum[ée]\w*|zusammenfass\w*|resum\w*)(?!\w)",
    re.IGNORECASE,
)
COMPARE = re.compile(r"\b(compar\w*|contrast\w*|differences?|differ|versus|vs\.?)(?!\w)", re.IGNORECASE)


def is_whole_document_question(question: str) -> bool:
    """True when the question asks about documents as a whole rather than about one thing in them."""
    return WHOLE_DOCUMENT.search(question) is not None


def is_comparison(question: str, scope: list[str]) -> bool:
    """True when the question compares two or more scoped documents."""
    return len(scope) >= 2 and COMPARE.search(question) is not None


def choose_mode(question: str, scope: list[str], override: str | None = None) -> Mode:
    """The mode asked for, else "whole" for a whole-document question over a scope, else "search"."""
    if override:
        return override  # type: ignore[return-value]
    return "whole" if scope and is_whole_document_question(question) else "search"
