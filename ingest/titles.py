"""Titles that files carry in their own metadata (a PDF's Title, a DOCX's core title), kept only when they name the
document: placeholders such as 'about:blank', 'Untitled' or 'Document1' give way to the file name."""
from __future__ import annotations

import re

PLACEHOLDER = re.compile(
    r"(untitled( document)?|document\s*\d*|doc\d*|title|none|null|unknown|no title|new document|presentation\s*\d*|"
    r"book\s*\d*|slide\s*\d*|page\s*\d*|\W*)",
    re.IGNORECASE,
)
ADDRESS = re.compile(r"(about|https?|file|ftp|data|blob|javascript|mailto):\S*", re.IGNORECASE)  # about:blank, https://..., file:///...
FILE_NAME = re.compile(r"\S+\.(docx?|pdf|html?|txt|md|rtf|odt|pptx?|xlsx?)", re.IGNORECASE)
OFFICE_PREFIX = re.compile(r"^Microsoft (Word|PowerPoint|Excel) - ", re.IGNORECASE)


def meaningful_title(embedded: str | None) -> str | None:
    """The embedded title in one line, or None when it is a placeholder, an address or a bare file name."""
    title = OFFICE_PREFIX.sub("", " ".join(str(embedded or "").split()))
    if not title or PLACEHOLDER.fullmatch(title) or ADDRESS.fullmatch(title) or FILE_NAME.fullmatch(title):
        return None
    return title
