"""An OpenDocument text (.odt) -> sections at its headings, lists as paragraphs, tables as rows under their header."""
from __future__ import annotations

import io

from ingest.documents import Document, LoadError, Outline, Problem
from ingest.reading import Input, Limits, check_archive, clean, megabytes, one_line, parsing

ODF_LIBRARY = ("odf", "zipfile", "xml")
CONTAINERS = ("text:section", "text:list", "text:list-item", "text:list-header", "text:soft-page-break", "text:index-body")


class OdtReader:
    """Feeds an ODT body to an outline, stopping at RAG_MAX_PARAGRAPHS paragraphs and rows or RAG_MAX_TEXT_MB of text."""

    def __init__(self, outline: Outline, limits: Limits):
        self.outline, self.limits = outline, limits
        self.blocks = self.chars = 0
        self.stopped = ""

    def walk(self, node) -> None:
        """Read node's children in document order."""
        from odf.teletype import extractText

        for child in node.childNodes:
            if self.stopped:
                return
            tag = getattr(child, "tagName", "")
            if tag in ("text:h", "text:p"):
                text = clean(extractText(child)).strip()
                if not text or not self.count(text):
                    continue
                if tag == "text:h":
                    self.outline.heading(int(child.getAttribute("outlinelevel") or 1), text)
                else:
                    self.outline.text(text)
                    self.outline.text("")
            elif tag == "table:table":
                self.table(child)
            elif tag in CONTAINERS:
                self.walk(child)

    def table(self, table) -> None:
        """A table's rows, its first row the header of each chunk."""
        from odf.table import TableRow

        for row in table.getElementsByType(TableRow):
            cells = [one_line(cell) for cell in row_texts(row)]
            line = " | ".join(cell for cell in cells if cell)
            if line and self.count(line):
                self.outline.table_row(line)
        self.outline.flush()

    def count(self, text: str) -> bool:
        """Count a block against the limits; False once one is reached (and the reading stops)."""
        self.blocks += 1
        self.chars += len(text)
        if self.blocks > self.limits.paragraphs:
            self.stopped = f"{self.limits.paragraphs:,} paragraphs and table rows (RAG_MAX_PARAGRAPHS)"
        elif self.chars > self.limits.text_chars:
            self.stopped = f"{megabytes(self.limits.text_chars)} of text (RAG_MAX_TEXT_MB)"
        return not self.stopped


def row_texts(row) -> list[str]:
    """The text of a table row's own cells."""
    from odf.teletype import extractText

    return [extractText(cell) for cell in row.childNodes if getattr(cell, "tagName", "") == "table:table-cell"]


def load_odt(source: Input) -> tuple[list[Document], list[Problem]]:
    """One document split at its headings; reading stops at the first limit reached, keeping what was read."""
    check_archive(source.raw, source.limits, "ODT", "content.xml")
    from odf.dc import Title
    from odf.opendocument import load
    from odf.teletype import extractText

    outline = Outline(first_h1_is_title=False)
    with parsing("ODT", ODF_LIBRARY):
        book = load(io.BytesIO(source.raw))
        if book.mimetype != "application/vnd.oasis.opendocument.text":
            raise LoadError("not a text document but another OpenDocument file: the file extension is wrong")
        reader = OdtReader(outline, source.limits)
        reader.walk(book.text)
        titles = book.meta.getElementsByType(Title)
        title = one_line(extractText(titles[0])) if titles else ""
    document = outline.document(source.doc_id, title or source.stem)
    if not document.sections:
        raise LoadError("no text in it")
    problems = [Problem("", f"only the first {reader.stopped} were read", False)] if reader.stopped else []
    return [document], problems
