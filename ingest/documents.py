"""The data that flows from loaders to chunking: documents made of titled sections."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

# The metadata fields ingest writes into chunks for its own use (identity, place in the file, bookkeeping), as
# opposed to the fields a document brings (a record's course, ...): only those are shown and offered as filters.
INTERNAL_FIELDS = frozenset({
    "doc_id", "title", "headings", "chunk_index", "n_chunks", "doc_hash",  # every chunk (ingest/chunking.py)
    "page", "rows", "lines",  # the PDF page, the CSV rows or the source lines it comes from (ingest/loaders.py, code.py)
    "slide", "sheet", "chapter",  # the slide, sheet or e-book chapter it comes from (ingest/slides.py, sheets.py, ebook.py)
    "source", "root",  # the file and the folder it was found under (ingest/pipeline.py)
    "ingest_seq",  # the write batch's change sequence number (rag/store/changelog.py)
})


@dataclass
class Section:
    """A run of text under one heading path (or one page), with its own metadata."""

    text: str
    headings: tuple[str, ...] = ()
    metadata: dict = field(default_factory=dict)
    header: str = ""  # a table's header row, repeated at the top of each of its chunks


@dataclass
class Document:
    """One citable unit: a file or a record."""

    doc_id: str
    title: str
    sections: list[Section]
    metadata: dict = field(default_factory=dict)

    def content_hash(self) -> str:
        """A hash of everything that ends up in the store for this document."""
        payload = json.dumps(
            [self.title, self.metadata, [(s.text, s.headings, s.metadata, *([s.header] if s.header else [])) for s in self.sections]],
            sort_keys=True,
            ensure_ascii=False,
            default=str,
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Problem:
    """Something wrong with part of an input: skipped, or only worth a warning."""

    where: str
    reason: str
    skipped: bool = True


class LoadError(Exception):
    """A file or record that cannot be ingested; the message is the reason shown to the user."""


class Outline:
    """Builds heading-aware sections from a stream of headings and text blocks, as Markdown, HTML and DOCX give."""

    def __init__(self, first_h1_is_title: bool = True):
        self.first_h1_is_title = first_h1_is_title
        self.sections: list[Section] = []
        self.path: list[tuple[int, str]] = []
        self.lines: list[str] = []
        self.rows: list[str] = []
        self.title: str | None = None

    def heading(self, level: int, text: str) -> None:
        """Start a section under a heading of the given level (1 = top)."""
        self.flush()
        text = " ".join(text.split())
        if not text:
            return
        if level == 1 and self.title is None and self.first_h1_is_title:
            self.title = text
        self.path = [(lvl, h) for lvl, h in self.path if lvl < level] + [(level, text)]

    def text(self, line: str) -> None:
        """Add a line of body text to the current section."""
        if self.rows:
            self.flush()
        self.lines.append(line)

    def table_row(self, line: str) -> None:
        """Add a row to the table being read: a section of its own, whose first row is the header of each chunk."""
        if not self.rows:
            self.flush()
        self.rows.append(line)

    def flush(self) -> None:
        """Close the current section (or table)."""
        path = tuple(h for _, h in self.path)
        body = "\n".join(self.lines).strip()
        if body:
            self.sections.append(Section(body, path))
        if self.rows:
            self.sections.append(Section("\n".join(self.rows), path, header=self.rows[0] if len(self.rows) > 1 else ""))
        self.lines.clear()
        self.rows.clear()

    def document(self, doc_id: str, fallback_title: str, metadata: dict | None = None) -> Document:
        """The finished document; the title heading is not repeated in each heading path."""
        self.flush()
        title = self.title or fallback_title
        for section in self.sections:
            if section.headings and section.headings[0] == title:
                section.headings = section.headings[1:]
        return Document(doc_id, title, self.sections, metadata or {})


def location_of(metadata: dict) -> str:
    """Where in its file a chunk comes from, as a citation says it: page, slide, sheet and rows, chapter, or headings
    (with the source lines, for code)."""
    headings = metadata.get("headings", "") or ""
    if metadata.get("page"):
        return f"page {metadata['page']}"
    if metadata.get("slide"):
        return f"slide {metadata['slide']}"
    if metadata.get("rows"):
        rows = f"rows {metadata['rows']}"
        return f"{metadata['sheet']}, {rows}" if metadata.get("sheet") else rows
    if metadata.get("chapter"):
        return f"chapter {metadata['chapter']}" + (f": {headings}" if headings else "")
    if metadata.get("lines"):
        return f"{headings}, lines {metadata['lines']}" if headings else f"lines {metadata['lines']}"
    return headings
