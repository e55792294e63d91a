"""Path -> documents, by file type; anything unreadable raises LoadError with a reason."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ingest.documents import Document, LoadError, Problem, Section

TEXT_SUFFIXES = {".md": "markdown", ".markdown": "markdown", ".txt": "text", ".text": "text"}
RECORD_SUFFIXES = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl"}
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")


@dataclass(frozen=True)
class RecordFields:
    """Which fields of a JSON record hold its id, text and title."""

    id_field: str = "id"
    text_field: str = "text"
    title_field: str = "title"


def kind_of(path: Path) -> str | None:
    """The loader kind for a path, or None when the format is not supported."""
    suffix = path.suffix.lower()
    return TEXT_SUFFIXES.get(suffix) or RECORD_SUFFIXES.get(suffix)


def read_text(path: Path) -> str:
    """Read a text file as UTF-8, falling back to common encodings, refusing binary content."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LoadError(f"cannot read: {exc.strerror or exc}") from None
    if b"\x00" in raw[:8192]:
        raise LoadError("binary content, not text")
    for encoding in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise LoadError("not decodable as text")


def load_path(path: Path, doc_id: str, fields: RecordFields) -> tuple[list[Document], list[Problem]]:
    """Documents in one file and the reasons any of its records were skipped."""
    kind = kind_of(path)
    if kind is None:
        raise LoadError(f"unsupported file type {path.suffix or '(no extension)'}")
    text = read_text(path)
    if not text.strip():
        raise LoadError("empty file")
    if kind == "markdown":
        return [load_markdown(text, doc_id, path.stem)], []
    if kind == "text":
        return [Document(doc_id, path.stem, [Section(text.strip())])], []
    return load_records(parse_records(text, kind), doc_id, fields)


def load_markdown(text: str, doc_id: str, fallback_title: str) -> Document:
    """A Markdown document split into sections that keep their heading path."""
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    lines: list[str] = []
    title = None
    in_fence = False

    def flush():
        body = "\n".join(lines).strip()
        if body:
            sections.append(Section(body, tuple(h for _, h in path)))
        lines.clear()

    for line in text.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else HEADING.match(line)
        if match:
            flush()
            level, heading = len(match.group(1)), match.group(2).strip()
            if level == 1 and title is None:
                title = heading
            path = [(lvl, h) for lvl, h in path if lvl < level] + [(level, heading)]
        else:
            lines.append(line)
    flush()
    title = title or fallback_title
    for section in sections:
        if section.headings and section.headings[0] == title:
            section.headings = section.headings[1:]
    return Document(doc_id, title, sections)


def parse_records(text: str, kind: str) -> list:
    """The records of a JSON array/object file or a JSON Lines file."""
    if kind == "jsonl":
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise LoadError(f"malformed JSON on line {number}: {exc.msg}") from None
        return records
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LoadError(f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    return data if isinstance(data, list) else [data]


def load_records(records: list, file_id: str, fields: RecordFields) -> tuple[list[Document], list[Problem]]:
    """One document per record; records without text are reported, records sharing an id are merged."""
    documents: list[Document] = []
    problems: list[Problem] = []
    by_id: dict[str, Document] = {}
    for index, record in enumerate(records):
        where = f"record {index + 1}"
        if not isinstance(record, dict):
            problems.append(Problem(where, "not a JSON object"))
            continue
        text = record.get(fields.text_field)
        if not isinstance(text, str) or not text.strip():
            problems.append(Problem(where, f"no text in field {fields.text_field!r} (choose it with --text-field)"))
            continue
        raw_id = record.get(fields.id_field)
        doc_id = str(raw_id) if raw_id not in (None, "") else f"{file_id}#{index + 1}"
        if doc_id in by_id:
            by_id[doc_id].sections.append(Section(text.strip()))
            problems.append(Problem(where, f"duplicate id {doc_id!r}: its text was added to the first record with it", False))
            continue
        title = record.get(fields.title_field)
        metadata = {
            key: value
            for key, value in record.items()
            if key not in (fields.id_field, fields.text_field, fields.title_field)
            and isinstance(value, (str, int, float, bool))
        }
        by_id[doc_id] = Document(doc_id, str(title) if title not in (None, "") else doc_id, [Section(text.strip())], metadata)
        documents.append(by_id[doc_id])
    if not documents and not problems:
        raise LoadError("no records")
    return documents, problems
