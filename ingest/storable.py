"""Loaded documents and file names made acceptable to the store: no lone surrogates, no metadata names it reserves."""
from __future__ import annotations

import os
import re

from ingest.documents import Document, Problem

SURROGATE = re.compile("[\ud800-\udfff]")
RESERVED_PREFIXES = ("chroma:", "$", "#")  # Chroma refuses names starting with $ or #, and drops or refuses chroma:*
RESERVED_NOTE = "the store reserves names starting with $, # or chroma:"
INT64 = range(-(2**63), 2**63)  # the integers the store keeps exactly; it refuses or rounds the others


def readable_path(path: object) -> str:
    """A path as text the store accepts: bytes that are not UTF-8 shown as \\xff escapes (readable, and stable run to run)."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def without_surrogates(text: str) -> str:
    """Text with every lone surrogate (which UTF-8 cannot encode) replaced by U+FFFD."""
    return SURROGATE.sub("\ufffd", text)


def unreserved_name(key: str) -> str:
    """A metadata name without the prefixes the store reserves ("$or" -> "or", "chroma:document" -> "document")."""
    while key.startswith(RESERVED_PREFIXES):
        prefix = next(p for p in RESERVED_PREFIXES if key.startswith(p))
        key = key[len(prefix) :]
    return key


def storable_documents(documents: list, file_id: str) -> list[Problem]:
    """Make a file's documents storable; one warning per kind of fix, naming the record, or how many records had it."""
    fixed: dict[str, list[str]] = {}
    for document in documents:
        label = "" if document.doc_id == file_id else without_surrogates(document.doc_id)
        for problem in make_storable(document, label):
            fixed.setdefault(problem.reason, []).append(label)
    return [
        Problem(labels[0], reason, skipped=False) if len(labels) == 1
        else Problem("", f"{reason}, in {len(labels):,} records (the first {labels[0]})", skipped=False)
        for reason, labels in fixed.items()
    ]


def make_storable(document: Document, where: str) -> list[Problem]:
    """Fix in place what the store would refuse in a document, returning a warning for each kind of fix."""
    fixed: list[str] = []

    def clean(text: str, part: str) -> str:
        cleaned = without_surrogates(text)
        if cleaned != text and part not in fixed:
            fixed.append(part)
        return cleaned

    document.doc_id = clean(document.doc_id, "its id")
    document.title = clean(document.title, "its title")
    for section in document.sections:
        section.text = clean(section.text, "its text")
        section.headings = tuple(clean(heading, "a heading") for heading in section.headings)
    problems: list[Problem] = []
    document.metadata = storable_metadata(document.metadata, clean, problems, where)
    for section in document.sections:
        section.metadata = storable_metadata(section.metadata, clean, problems, where)
    if fixed:
        problems.insert(0, Problem(where, f"lone surrogate escapes in {', '.join(fixed)} replaced by U+FFFD", skipped=False))
    return problems


def storable_metadata(metadata: dict, clean, problems: list[Problem], where: str) -> dict:
    """Metadata with surrogate-free names and values, and reserved names renamed (or dropped when the name is taken)."""
    kept: dict = {}
    renamed: list[tuple[str, str, object]] = []
    for key, value in metadata.items():
        key = clean(key, "a metadata name")
        value = clean(value, "a metadata value") if isinstance(value, str) else value
        if isinstance(value, int) and value not in INT64:
            problems.append(Problem(where, f"metadata field {key!r}: a number too large for the store, kept as text", skipped=False))
            value = str(value)
        name = unreserved_name(key)
        if name == key:
            kept[key] = value
        else:
            renamed.append((key, name, value))
    for key, name, value in renamed:
        if not name or name in kept:
            why = "the name would be empty" if not name else f"{name!r} is already a field"
            problems.append(Problem(where, f"metadata field {key!r} dropped ({RESERVED_NOTE}; {why})", skipped=False))
        else:
            kept[name] = value
            problems.append(Problem(where, f"metadata field {key!r} renamed to {name!r} ({RESERVED_NOTE})", skipped=False))
    return kept
