"""Rich Text (.rtf) -> its text (striprtf), embedded binary data (\\binN) left out first."""
from __future__ import annotations

import re

from ingest.documents import Document, LoadError, Problem, Section
from ingest.reading import Input, clean, megabytes, parsing

BINARY = re.compile(rb"\\bin(\d{1,10}) ?")  # \binN: N raw bytes follow, which no text reader may see
RTF_LIBRARY = ("striprtf", "re")


def load_rtf(source: Input) -> tuple[list[Document], list[Problem]]:
    """The document's text as one section; binary data it embeds is left out with a note."""
    if not source.raw.lstrip()[:5] == b"{\\rtf":
        raise LoadError("not an RTF (no {\\rtf header): the file extension is wrong")
    from striprtf.striprtf import rtf_to_text

    raw, dropped = without_binary(source.raw)
    with parsing("RTF", RTF_LIBRARY):
        text = clean(rtf_to_text(raw.decode("latin-1"), errors="replace")).strip()
    problems = [Problem("", f"{dropped:,} bytes of embedded binary data left out", False)] if dropped else []
    if not text:
        raise LoadError("no text in it")
    if len(text) > source.limits.text_chars:
        raise LoadError(f"too much text ({megabytes(len(text))}; the limit is {megabytes(source.limits.text_chars)} a file, RAG_MAX_TEXT_MB)")
    return [Document(source.doc_id, source.stem, [Section(text)])], problems


def without_binary(raw: bytes) -> tuple[bytes, int]:
    """RTF without the raw bytes each \\binN control word announces, and how many bytes were left out."""
    parts, at, dropped = [], 0, 0
    while match := BINARY.search(raw, at):
        parts.append(raw[at : match.start()])
        size = int(match.group(1))
        at = match.end() + size
        dropped += min(size, len(raw) - match.end())
    parts.append(raw[at:])
    return b"".join(parts), dropped
