"""A DOCX read as a stream: lxml parses its XML straight from the ZIP, a piece at a time, so a limit stops the work
where it is reached instead of after the whole XML has been parsed (python-docx builds the whole tree first: a 248 KB
file whose one paragraph has 3.8 million runs took it 55 s and 1.9 GB).

What is read is what python-docx reads: the body's own paragraphs and tables (not those inside content controls or
tracked insertions), a paragraph's runs and its hyperlinks' runs, tabs and breaks as characters, a cell's own
paragraphs (not a nested table's), and a vertically merged cell's text where python-docx repeats it. No tree of the
body is built (the parser calls BodyReader for each element), so memory stays flat however long a paragraph is; the
small parts beside it (relationships, styles, properties) are read with iterparse, each element dropped once read.
"""
from __future__ import annotations

import bisect
import posixpath
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field

from lxml import etree

from ingest.documents import LoadError

W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
RELATIONSHIP = "{http://schemas.openxmlformats.org/package/2006/relationships}Relationship"
DC_TITLE = "{http://purl.org/dc/elements/1.1/}title"
OFFICE_DOCUMENT = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument"
STYLES = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles"
CORE_PROPERTIES = "http://schemas.openxmlformats.org/package/2006/relationships/metadata/core-properties"
DOCUMENT, BODY, P, R, TBL, TR, TC = (W + name for name in ("document", "body", "p", "r", "tbl", "tr", "tc"))
HYPERLINK, PPR, PSTYLE, TRPR, TCPR = (W + name for name in ("hyperlink", "pPr", "pStyle", "trPr", "tcPr"))
GRID_BEFORE, GRID_SPAN, V_MERGE, STYLE, NAME = (W + name for name in ("gridBefore", "gridSpan", "vMerge", "style", "name"))
VAL, TYPE = W + "val", W + "type"
T, BR = W + "t", W + "br"
RUN_TEXT = {T: "", W + "tab": "\t", W + "ptab": "\t", W + "cr": "\n", W + "noBreakHyphen": "-", BR: ""}  # T's text comes as data
FEED_BYTES = 64 * 2**10
UI_STYLE_NAMES = {"caption": "Caption", "footer": "Footer", "header": "Header",
                  **{f"heading {n}": f"Heading {n}" for n in range(1, 10)}}  # as python-docx names built-in styles
ON = ("1", "true", "on")
SMALL_NUMBER = re.compile(r"\d{1,4}")


@dataclass(frozen=True)
class WordLimits:
    """How much of one DOCX body is read: paragraphs and table rows, runs, and characters of text."""

    blocks: int
    runs: int
    chars: int


@dataclass(frozen=True)
class Paragraph:
    """A body paragraph: its style name (as Word shows it) and its text."""

    style: str
    text: str


@dataclass(frozen=True)
class Row:
    """A table row: each cell's text once (python-docx repeats a cell per grid column it spans, which the outline drops
    as a repeat; repeating it here would let one row of wide cells claim millions of entries)."""

    cells: list[str]


class TableEnd:
    """The end of a table."""


@dataclass
class Cell:
    """A table cell being read: its paragraphs, how many grid columns it spans, and whether it continues a vertical merge."""

    paragraphs: list[str] = field(default_factory=list)
    span: int = 1
    continues: bool = False


def iterparse(stream, events=("end",)):
    """lxml's incremental parser, as python-docx configures it (no entities resolved, no network, blank text dropped)."""
    return etree.iterparse(stream, events=events, remove_blank_text=True, resolve_entities=False, no_network=True)


def dropped(element) -> None:
    """Free an element that has been read, with everything in it."""
    element.clear()
    parent = element.getparent()
    if parent is not None:
        parent.remove(element)


def relationships(archive: zipfile.ZipFile, part: str) -> dict[str, str]:
    """A part's internal relationships, type -> the archive name of the part it points to ("" is the package)."""
    folder, name = posixpath.split(part)
    rels = posixpath.join(folder, "_rels", f"{name}.rels")
    if rels not in archive.namelist():
        return {}
    found = {}
    with archive.open(rels) as stream:
        for _, element in iterparse(stream):
            if element.tag == RELATIONSHIP and element.get("TargetMode") != "External":
                target = element.get("Target", "")
                path = target.lstrip("/") if target.startswith("/") else posixpath.normpath(posixpath.join(folder, target))
                found.setdefault(element.get("Type"), path)
            dropped(element)
    return found


def main_part(archive: zipfile.ZipFile) -> str:
    """The archive name of the document's main part, as the package's relationships name it."""
    main = relationships(archive, "").get(OFFICE_DOCUMENT)
    if main is None or main not in archive.namelist():
        raise LoadError("damaged DOCX (its main part, the document's text, is missing)")
    return main


def style_names(archive: zipfile.ZipFile, part: str | None) -> tuple[dict[str, str], str]:
    """Paragraph style names by style id, and the default paragraph style's name (both as python-docx gives them)."""
    names: dict[str, str] = {}
    default = ""
    if part is None or part not in archive.namelist():
        return names, default
    style, name = None, None  # the style being read (its attributes come with its start) and its w:name
    with archive.open(part) as stream:
        for event, element in iterparse(stream, ("start", "end")):
            if event == "start":
                if element.tag == STYLE:
                    style, name = dict(element.attrib), None
                elif element.tag == NAME and style is not None and name is None and element.getparent().tag == STYLE:
                    name = element.get(VAL)
                continue
            if element.tag == STYLE and style is not None:
                kind, shown = style.get(TYPE), UI_STYLE_NAMES.get(name, name) or ""
                if kind in (None, "paragraph") and style.get(W + "styleId") is not None:
                    names[style[W + "styleId"]] = shown
                if kind == "paragraph" and style.get(W + "default") in ON:
                    default = shown
                style = None
            dropped(element)
    return names, default


def core_title(archive: zipfile.ZipFile) -> str:
    """The title in the document's core properties, or ""."""
    part = relationships(archive, "").get(CORE_PROPERTIES)
    if part is None or part not in archive.namelist():
        return ""
    with archive.open(part) as stream:
        for _, element in iterparse(stream):
            if element.tag == DC_TITLE:
                return element.text or ""
            dropped(element)
    return ""


def small_number(value: str | None, default: int) -> int:
    """A count from an attribute (a grid span), or default when it is missing or not a plausible count."""
    return int(value) if value and SMALL_NUMBER.fullmatch(value) else default


class BodyReader:
    """lxml's parser target for a main part: reads the body as paragraphs, table rows and table ends (no tree is built),
    stopping at the first limit reached.

    What was read before the limit is kept, the paragraph being read up to that point (a table row being read is left
    out); `stopped` then names the limit, as a field of WordLimits.
    """

    def __init__(self, limits: WordLimits, styles: dict[str, str], default_style: str):
        self.limits, self.styles, self.default_style = limits, styles, default_style
        self.stopped: str | None = None
        self.blocks: list[Paragraph | Row | TableEnd] = []  # read and not yet taken
        self.counted = self.runs = self.chars = 0
        self.path: list[str] = []  # the tags from the root to the element being read
        self.text_depth = 0  # the depth of the paragraph whose runs are being read (a body or top-level cell one)
        self.run_depth = 0  # the depth of the run being read, when it belongs to that paragraph
        self.parts: list[str] = []
        self.style: str | None = None
        self.cell: Cell | None = None
        self.row: list[Cell] = []
        self.grid_before = 0
        self.above: tuple[list[int], list[int], list[str]] = ([], [], [])  # the row above: its cells' grid columns and texts

    def read(self, stream) -> Iterator[Paragraph | Row | TableEnd]:
        """The body's blocks in document order, the stream parsed a piece at a time until a limit is reached."""
        parser = etree.XMLParser(target=self, remove_blank_text=True, resolve_entities=False, no_network=True)
        while not self.stopped and (piece := stream.read(FEED_BYTES)):
            parser.feed(piece)
            yield from self.taken()
        if not self.stopped:
            parser.close()
        yield from self.taken()

    def taken(self) -> list[Paragraph | Row | TableEnd]:
        """The blocks read since last asked."""
        blocks, self.blocks = self.blocks, []
        return blocks

    def start(self, tag: str, attributes) -> None:
        """An element starts (the parser's call)."""
        if self.stopped:
            return
        path = self.path
        path.append(tag)
        depth = len(path)
        if depth == 1 and tag != DOCUMENT:
            raise LoadError(f"not a Word document (its main part is {etree.QName(tag).localname}): the file extension is wrong")
        if tag == R:
            self.runs += 1
            if self.runs > self.limits.runs:
                return self.stop("runs")
            in_paragraph = depth == self.text_depth + 1 or (depth == self.text_depth + 2 and path[-2] == HYPERLINK)
            self.run_depth = depth if self.text_depth and in_paragraph else 0
        elif self.run_depth and depth == self.run_depth + 1 and tag in RUN_TEXT:
            self.add_text(run_piece(tag, attributes))
        elif tag == P and ((depth == 3 and path[1] == BODY) or (depth == 6 and self.in_top_table(5))):
            if depth == 3 and not self.count_block():
                return
            self.text_depth, self.parts, self.style = depth, [], None
        elif tag == PSTYLE and self.text_depth and depth == self.text_depth + 2 and path[-2] == PPR and self.style is None:
            self.style = attributes.get(VAL)
        elif tag == TR and depth == 4 and self.in_top_table(4):
            self.row, self.grid_before = [], 0
            self.count_block()
        elif tag == TC and depth == 5 and self.in_top_table(4):
            self.cell = Cell()
        elif tag == GRID_BEFORE and depth == 6 and path[4] == TRPR and self.in_top_table(4):
            self.grid_before = small_number(attributes.get(VAL), 0)
        elif tag in (GRID_SPAN, V_MERGE) and self.cell is not None and depth == 7 and path[5] == TCPR:
            if tag == GRID_SPAN:
                self.cell.span = small_number(attributes.get(VAL), 1)
            else:
                self.cell.continues = attributes.get(VAL, "continue") == "continue"
        elif tag == TBL and depth == 3 and path[1] == BODY:
            self.above = ([], [], [])

    def data(self, text: str) -> None:
        """Characters inside an element (the parser's call): kept when they are the text of a run being read."""
        if not self.stopped and self.run_depth and len(self.path) == self.run_depth + 1 and self.path[-1] == T:
            self.add_text(text)

    def end(self, tag: str) -> None:
        """An element ends (the parser's call)."""
        if self.stopped:
            return
        depth = len(self.path)
        if tag == P and depth == self.text_depth:
            self.paragraph_read()
        elif tag == TC and depth == 5 and self.cell is not None:
            self.row.append(self.cell)
            self.cell = None
        elif tag == TR and depth == 4 and self.in_top_table(4):
            self.blocks.append(self.row_read())
        elif tag == TBL and depth == 3 and self.path[1] == BODY:
            self.blocks.append(TableEnd())
        elif tag == R and depth == self.run_depth:
            self.run_depth = 0
        self.path.pop()

    def close(self) -> None:
        """The end of the part (the parser's call)."""

    def add_text(self, text: str) -> None:
        """Add text to the paragraph being read; what passes the limit of characters is left out, and stops the reading."""
        room = self.limits.chars - self.chars
        self.parts.append(text[:room])
        self.chars += len(text)
        if self.chars > self.limits.chars:
            self.stop("chars")

    def in_top_table(self, depth: int) -> bool:
        """True when the path down to depth (a row's or cell's) runs through a table that is a direct child of the body."""
        path = self.path
        return path[1] == BODY and path[2] == TBL and path[3] == TR and (depth == 4 or path[4] == TC)

    def count_block(self) -> bool:
        """Count a paragraph or table row; False once there are more than the limit."""
        self.counted += 1
        return self.counted <= self.limits.blocks or self.stop("blocks")

    def stop(self, limit: str) -> bool:
        """Stop reading: keep the paragraph read so far, end a table being read, and name the limit."""
        if self.text_depth == 3:
            self.paragraph_read()
        elif len(self.path) > 3 and self.path[1] == BODY and self.path[2] == TBL:
            self.blocks.append(TableEnd())
        self.stopped = limit
        return False

    def paragraph_read(self) -> None:
        """A paragraph has been read: a body paragraph is a block, a cell's paragraph goes to its cell."""
        text = "".join(self.parts)
        body = self.text_depth == 3
        self.text_depth, self.parts = 0, []
        if body:
            self.blocks.append(Paragraph(self.styles.get(self.style, self.default_style) or "", text))
        elif self.cell is not None:
            self.cell.paragraphs.append(text)

    def row_read(self) -> Row:
        """A row's cells, a cell that continues a vertical merge taking the text of the cell above it."""
        starts, ends, texts, column = [], [], [], self.grid_before
        for cell in self.row:
            text = "\n".join(cell.paragraphs)
            texts.append(self.text_above(column, text) if cell.continues else text)
            starts.append(column)
            column += cell.span
            ends.append(column)
        self.above, self.row = (starts, ends, texts), []
        return Row(texts)

    def text_above(self, column: int, own: str) -> str:
        """The text of the cell above that covers this grid column, or the cell's own when there is none."""
        starts, ends, texts = self.above
        at = bisect.bisect_right(starts, column) - 1
        return texts[at] if at >= 0 and column < ends[at] else own


def run_piece(tag: str, attributes) -> str:
    """What a run's child other than its text stands for: a tab, a line break, a hyphen, or nothing (a page break)."""
    if tag == BR:
        return "\n" if attributes.get(TYPE, "textWrapping") == "textWrapping" else ""
    return RUN_TEXT[tag]


def read_word(archive: zipfile.ZipFile, limits: WordLimits) -> tuple[BodyReader, Iterator[Paragraph | Row | TableEnd], str]:
    """The body reader of a DOCX, its blocks (read as they are taken), and the core properties' title."""
    main = main_part(archive)
    styles, default = style_names(archive, relationships(archive, main).get(STYLES))
    reader = BodyReader(limits, styles, default)
    return reader, stream_blocks(archive, main, reader), core_title(archive)


def stream_blocks(archive: zipfile.ZipFile, main: str, reader: BodyReader) -> Iterator[Paragraph | Row | TableEnd]:
    """The main part's blocks, read from the archive as they are asked for."""
    with archive.open(main) as stream:
        yield from reader.read(stream)
