"""Path -> documents, by file type; anything that cannot be read raises LoadError with the reason."""
from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
import sys
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ingest.code import LANGUAGES, load_code
from ingest.documents import Document, LoadError, Outline, Problem, Section
from ingest.ocr import IMAGE_FORMATS, PageReader, load_image, read_pdf_pages
from rag.core.errors import raised_within
from rag.core.decoding import decode_utf8_or_legacy

KINDS = {
    ".md": "markdown", ".markdown": "markdown", ".txt": "text", ".text": "text",
    ".pdf": "pdf", ".html": "html", ".htm": "html", ".xhtml": "html", ".docx": "docx",
    ".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl",
    **dict.fromkeys(LANGUAGES, "code"), **dict.fromkeys(IMAGE_FORMATS, "image"),
}
CONVERT_HINTS = {
    ".doc": "save it as .docx", ".rtf": "save it as .docx", ".odt": "save it as .docx",
    ".xlsx": "export the sheets as CSV", ".xls": "export the sheets as CSV", ".pptx": "export it as PDF",
}
SIGNATURES = (
    (b"%PDF-", "a PDF"), (b"PK\x03\x04", "a ZIP archive (DOCX, XLSX, ...)"), (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"), (b"\x7fELF", "a program"),
    (b"\x1f\x8b", "gzip-compressed data"), (b"SQLite format 3", "an SQLite database"),
)
MAX_LINE_CHARS = 1_000_000
ROW_GROUP_CHARS = 700
MAX_METADATA_CHARS = 2000
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")
CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
LOADER_VERSION = "2"
PDF_LIBRARY = ("pypdf",)  # it raises its own errors, and TypeError, AssertionError, NotImplementedError... on damage
DOCX_LIBRARY = ("lxml", "zipfile")  # the XML parser and the ZIP reader under our stream reader (ingest/word.py)
NESTED_TOO_DEEPLY = "JSON nested too deeply to read"

logging.getLogger("pypdf").setLevel(logging.ERROR)


@dataclass(frozen=True)
class RecordFields:
    """Which fields of a JSON record hold its id, text and title."""

    id_field: str = "id"
    text_field: str = "text"
    title_field: str = "title"


@dataclass(frozen=True)
class Limits:
    """How much one input may make ingest read, unpack and parse (RAG_MAX_* settings)."""

    file_bytes: int = 200 * 2**20
    text_chars: int = 20 * 2**20
    unpacked_bytes: int = 100 * 2**20
    archive_entries: int = 1000
    pdf_pages: int = 2000
    paragraphs: int = 50_000
    runs: int = 1_000_000
    chunks: int = 10_000
    pixels: int = 50_000_000

    @classmethod
    def from_settings(cls, settings) -> Limits:
        """The limits the settings give."""
        return cls(
            int(settings.max_file_mb * 2**20), int(settings.max_text_mb * 2**20), int(settings.max_unpacked_mb * 2**20),
            settings.max_archive_entries, settings.max_pdf_pages, settings.max_paragraphs, settings.max_runs,
            settings.max_chunks_per_file, settings.max_pixels,
        )


def megabytes(size: int) -> str:
    """A size for messages."""
    if size < 2**20:
        return f"{size / 2**10:,.0f} KB"
    return f"{size / 2**20:,.1f} MB" if size < 10 * 2**20 else f"{size / 2**20:,.0f} MB"


def kind_of(path: Path) -> str | None:
    """The loader kind for a path, or None when the format is not supported."""
    return KINDS.get(path.suffix.lower())


def read_bytes(path: Path, limits: Limits = Limits()) -> bytes:
    """The file's bytes, refusing unsupported types, unreadable, huge and empty files."""
    suffix = path.suffix.lower()
    if suffix not in KINDS:
        hint = f" ({CONVERT_HINTS[suffix]})" if suffix in CONVERT_HINTS else ""
        raise LoadError(f"unsupported file type {suffix or '(no extension)'}{hint}")
    try:
        if not path.is_file():
            raise LoadError("not a regular file")
        size = path.stat().st_size
        if size > limits.file_bytes:
            raise LoadError(f"too large ({megabytes(size)}; the limit is {megabytes(limits.file_bytes)}, RAG_MAX_FILE_MB)")
        if size > limits.text_chars and kind_of(path) not in ("pdf", "docx", "image"):
            raise LoadError(
                f"too much text ({megabytes(size)}; the limit is {megabytes(limits.text_chars)} a file, RAG_MAX_TEXT_MB): "
                "split it, or raise the limit"
            )
        raw = path.read_bytes()
    except OSError as exc:
        raise LoadError(f"cannot read: {exc.strerror or exc}") from None
    if not raw.strip():
        raise LoadError("empty file")
    return raw


def load_path(
    path: Path, doc_id: str, fields: RecordFields, limits: Limits = Limits(), ocr: PageReader | None = None
) -> tuple[list[Document], list[Problem]]:
    """Documents in one file and the problems found in it (skipped records, decoding warnings, limits reached);
    scanned pages and images are read by ocr, or refused without it (RAG_OCR=off)."""
    return load_bytes(read_bytes(path, limits), path, doc_id, fields, limits, ocr)


def load_bytes(
    raw: bytes, path: Path, doc_id: str, fields: RecordFields, limits: Limits = Limits(), ocr: PageReader | None = None
) -> tuple[list[Document], list[Problem]]:
    """Documents parsed from a file's bytes, by the kind its extension names."""
    kind = kind_of(path)
    if kind == "pdf":
        document, problems = load_pdf(raw, doc_id, path.stem, limits, ocr)
        return [document], problems
    if kind == "image":
        document, problems = load_image(raw, doc_id, path.stem, path.suffix.lower(), limits.pixels, limits.pdf_pages, ocr)
        return [document], problems
    if kind == "docx":
        document, problems = load_docx(raw, doc_id, path.stem, limits)
        return [document], problems
    text, problems = decode_text(raw)
    if kind in ("json", "jsonl"):
        documents, record_problems = load_records(parse_records(text, kind), doc_id, fields)
        return documents, problems + record_problems
    check_line_length(text)
    if kind == "code":
        document, code_problems = load_code(text, doc_id, path.name, LANGUAGES[path.suffix.lower()])
        problems += code_problems
    elif kind == "markdown":
        document = load_markdown(text, doc_id, path.stem)
    elif kind == "html":
        document = load_html(text, doc_id, path.stem)
    elif kind == "csv":
        document = load_csv(text, doc_id, path.stem, delimiter="\t" if path.suffix.lower() == ".tsv" else None)
    else:
        document = Document(doc_id, path.stem, [Section(text.strip())])
    if not document.sections:
        raise LoadError("no text in it")
    return [document], problems


def decode_text(raw: bytes) -> tuple[str, list[Problem]]:
    """Text from bytes: UTF-8 (with or without BOM), UTF-16 with BOM, else cp1252/latin-1 with a warning."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return clean(raw.decode("utf-16")), []
        except UnicodeDecodeError:
            raise LoadError("starts like UTF-16 but is not decodable") from None
    for signature, what in SIGNATURES:
        if raw.lstrip()[: len(signature)] == signature:
            raise LoadError(f"content is {what}, not text: the file extension is wrong")
    if b"\x00" in raw[:8192]:
        raise LoadError("binary content, not text")
    text, not_utf8 = decode_utf8_or_legacy(raw)
    problems = [Problem("", not_utf8, skipped=False)] if not_utf8 else []
    head = text[:8192]
    if head and len(CONTROL.findall(head)) > len(head) * 0.05:
        raise LoadError("binary content, not text")
    return clean(text), problems


def clean(text: str) -> str:
    """Text without control characters other than tabs and line breaks."""
    return CONTROL.sub("", text.replace("\r\n", "\n"))


def check_line_length(text: str, where: str = "a single line") -> None:
    """Refuse text with a line too long to be prose (minified or generated data)."""
    longest = max(map(len, text.split("\n")), default=0)
    if longest > MAX_LINE_CHARS:
        raise LoadError(
            f"{where} of {longest:,} characters, too long to be readable text "
            f"(the limit is {MAX_LINE_CHARS:,}); break it into lines"
        )


def load_markdown(text: str, doc_id: str, fallback_title: str) -> Document:
    """A Markdown document split into sections that keep their heading path."""
    text, front_title = strip_front_matter(text)
    outline = Outline()
    in_fence = False
    for line in text.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else HEADING.match(line)
        if match:
            outline.heading(len(match.group(1)), match.group(2).strip())
        else:
            outline.text(line)
    if front_title:
        outline.title = outline.title or front_title
    return outline.document(doc_id, fallback_title)


def strip_front_matter(text: str) -> tuple[str, str | None]:
    """Markdown without its YAML front matter, and the title the front matter gives."""
    if not text.startswith("---\n"):
        return text, None
    end = text.find("\n---", 4)
    if end == -1 or text.count("\n", 0, end) > 60:
        return text, None
    title = None
    for line in text[4:end].splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "title" and value.strip():
            title = value.strip().strip("\"'")
    return text[end + 4 :].lstrip("-\n"), title


HTML_DROP = (
    "script", "style", "noscript", "template", "svg", "canvas", "iframe", "object", "embed",
    "form", "button", "select", "textarea", "nav", "aside", "menu", "dialog",
)
HTML_CHROME = ("header", "footer")
HTML_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
HTML_BLOCKS = {
    "p", "div", "section", "article", "main", "li", "ul", "ol", "dl", "dt", "dd", "blockquote", "figure",
    "figcaption", "table", "thead", "tbody", "tfoot", "tr", "caption", "address", "details", "summary", "hr",
    "header", "footer", "body", "html",
}


def load_html(text: str, doc_id: str, fallback_title: str) -> Document:
    """The main text of an HTML page, without scripts, styles and navigation, split at its headings."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(text, "lxml")
    page_title = " ".join(soup.title.get_text().split()) if soup.title else ""
    for tag in soup(HTML_DROP):
        tag.decompose()
    for tag in soup.select('[role="navigation"], [role="banner"], [role="contentinfo"], [aria-hidden="true"], [hidden]'):
        tag.decompose()
    main = soup.find("main") or soup.find(attrs={"role": "main"}) or soup.find("article")
    if main is None:
        main = soup.body or soup
        for tag in main(HTML_CHROME):
            tag.decompose()
    outline = Outline()
    try:
        HtmlWalker(outline).walk(main)
    except RecursionError:
        raise LoadError("HTML nested too deeply to read") from None
    return outline.document(doc_id, page_title or fallback_title)


class HtmlWalker:
    """Feeds an HTML tree to an Outline: headings start sections, blocks become paragraphs."""

    def __init__(self, outline: Outline):
        self.outline = outline
        self.buffer: list[str] = []

    def walk(self, node) -> None:
        """Visit the children of node in document order."""
        from bs4 import NavigableString
        from bs4.element import PreformattedString

        for child in node.children:
            if isinstance(child, NavigableString):
                if not isinstance(child, PreformattedString):
                    self.buffer.append(str(child))
            elif child.name in HTML_HEADINGS:
                self.paragraph()
                self.outline.heading(HTML_HEADINGS[child.name], child.get_text(" "))
            elif child.name == "br":
                self.buffer.append("\n")
            elif child.name == "pre":
                self.paragraph()
                self.outline.text(child.get_text().strip("\n"))
                self.outline.text("")
            elif child.name in ("td", "th"):
                self.walk(child)
                self.buffer.append(" | ")
            elif child.name in HTML_BLOCKS:
                self.paragraph()
                self.walk(child)
                self.paragraph()
            else:
                self.walk(child)

    def paragraph(self) -> None:
        """Close the paragraph being collected."""
        lines = [" ".join(line.split()).strip(" |") for line in "".join(self.buffer).split("\n")]
        self.buffer.clear()
        text = "\n".join(line for line in lines if line)
        if text:
            self.outline.text(text)
            self.outline.text("")


@contextmanager
def parsing(kind: str, library: tuple[str, ...]):
    """What the parsing library raises on a damaged file becomes LoadError("damaged KIND (...)"); our own errors pass."""
    try:
        yield
    except Exception as exc:
        if not raised_within(exc, library):
            raise
        raise LoadError(f"damaged {kind} ({type(exc).__name__}: {str(exc)[:120]})") from None


def load_pdf(
    raw: bytes, doc_id: str, fallback_title: str, limits: Limits = Limits(), ocr: PageReader | None = None
) -> tuple[Document, list[Problem]]:
    """One section per PDF page that has text, with its page number, a page without a text layer read by ocr when
    given; pages and text beyond the limits are left out."""
    if b"%PDF-" not in raw[:1024]:
        raise LoadError("not a PDF (no %PDF- header): the file extension is wrong")
    from pypdf import PdfReader

    sections, problems, chars, scanned = [], [], 0, []
    with parsing("PDF", PDF_LIBRARY):
        reader = PdfReader(io.BytesIO(raw))
        if reader.is_encrypted and not reader.decrypt(""):
            raise LoadError("the PDF is password-protected; save an unprotected copy")
        pages = len(reader.pages)
        if pages > limits.pdf_pages:
            problems.append(Problem("", f"only the first {limits.pdf_pages:,} of {pages:,} pages were read (RAG_MAX_PDF_PAGES)", False))
        for number in range(1, min(pages, limits.pdf_pages) + 1):
            text = clean(reader.pages[number - 1].extract_text() or "").strip()
            if text:
                chars += len(text)
                if chars > limits.text_chars:
                    problems.append(Problem("", f"text cut after page {number - 1:,}: over {megabytes(limits.text_chars)} (RAG_MAX_TEXT_MB)", False))
                    break
                sections.append(Section(text, (), {"page": number}))
            else:
                scanned.append(number)
        title = (reader.metadata.title if reader.metadata else None) or ""
    if scanned and ocr is not None:
        read, ocr_problems = read_pdf_pages(raw, scanned, ocr, limits.pixels)
        sections = sorted(sections + read, key=lambda section: section.metadata["page"])
        problems += ocr_problems
    if not sections and ocr is None:
        raise LoadError("no text layer in the PDF (scanned pages?); set RAG_OCR=auto to read it with OCR")
    if not sections:
        raise LoadError("no text in the PDF, neither in a text layer nor found by OCR")
    return Document(doc_id, " ".join(str(title).split()) or fallback_title, sections), problems


def check_archive(raw: bytes, limits: Limits) -> None:
    """Refuse a ZIP container with too many entries or that would unpack to too much (a ZIP bomb).

    Python's zipfile never unpacks an entry past the size its directory declares, so the declared sizes bound the work.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise LoadError(f"damaged DOCX ({type(exc).__name__}: {str(exc)[:120]})") from None
    if len(entries) > limits.archive_entries:
        raise LoadError(
            f"its ZIP container holds {len(entries):,} files, more than the limit of {limits.archive_entries:,} "
            "(RAG_MAX_ARCHIVE_ENTRIES)"
        )
    unpacked = sum(entry.file_size for entry in entries)
    if unpacked > limits.unpacked_bytes:
        raise LoadError(
            f"it would unpack to {megabytes(unpacked)} from {megabytes(len(raw))}, more than the limit of "
            f"{megabytes(limits.unpacked_bytes)} (RAG_MAX_UNPACKED_MB)"
        )


def load_docx(raw: bytes, doc_id: str, fallback_title: str, limits: Limits = Limits()) -> tuple[Document, list[Problem]]:
    """A Word document split at its heading styles, tables as rows of cells; read as a stream that stops at the first
    limit reached (paragraphs and table rows, text runs, characters), keeping what was read before it."""
    if not raw.startswith(b"PK\x03\x04"):
        raise LoadError("not a DOCX (not a ZIP container): the file extension is wrong")
    check_archive(raw, limits)
    from ingest.word import WordLimits, read_word

    outline = Outline(first_h1_is_title=False)
    with parsing("DOCX", DOCX_LIBRARY), zipfile.ZipFile(io.BytesIO(raw)) as archive:
        reader, blocks, title = read_word(archive, WordLimits(limits.paragraphs, limits.runs, limits.text_chars))
        for block in blocks:
            add_word_block(outline, block)
    problems = [Problem("", f"only the first {docx_limit(limits, reader.stopped)} were read", False)] if reader.stopped else []
    document = outline.document(doc_id, fallback_title)
    if not document.sections:
        raise LoadError("no text in it")
    if title.strip() and outline.title is None:
        document.title = " ".join(title.split())
    return document, problems


def add_word_block(outline: Outline, block) -> None:
    """Feed a DOCX paragraph (the Title style titles it, Heading N starts a section), table row or table end to an outline."""
    from ingest.word import Paragraph, Row

    if isinstance(block, Paragraph):
        if block.style == "Title" and outline.title is None:
            outline.flush()
            outline.title = " ".join(block.text.split()) or None
        elif level := heading_level(block.style):
            outline.heading(level, block.text)
        elif block.text.strip():
            outline.text(clean(block.text))
            outline.text("")
    elif isinstance(block, Row):
        cells: list[str] = []
        for text in (" ".join(cell.split()) for cell in block.cells):
            if text and (not cells or cells[-1] != text):
                cells.append(text)
        if cells:
            outline.text(" | ".join(cells))
    else:
        outline.text("")


def docx_limit(limits: Limits, reached: str) -> str:
    """The limit that stopped reading a DOCX, as its warning names it."""
    return {
        "blocks": f"{limits.paragraphs:,} paragraphs and table rows (RAG_MAX_PARAGRAPHS)",
        "runs": f"{limits.runs:,} text runs (RAG_MAX_RUNS)",
        "chars": f"{megabytes(limits.text_chars)} of text (RAG_MAX_TEXT_MB)",
    }[reached]


def heading_level(style: str) -> int:
    """The outline level of a Word paragraph style: Heading N is N, anything else 0."""
    match = re.fullmatch(r"Heading (\d)", style or "")
    return int(match.group(1)) if match else 0


def load_csv(text: str, doc_id: str, fallback_title: str, delimiter: str | None = None) -> Document:
    """Groups of CSV rows, each row written as `column: value` pairs so every chunk carries the header."""
    if delimiter is None:
        try:
            delimiter = csv.Sniffer().sniff(text[:65536], delimiters=",;\t|").delimiter
        except csv.Error:
            delimiter = ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    sections: list[Section] = []
    try:
        header = next((row for row in reader if any(cell.strip() for cell in row)), None)
        if header is None:
            raise LoadError("no rows in it")
        names = [" ".join(name.split()) or f"column {i + 1}" for i, name in enumerate(header)]
        lines: list[str] = []
        first = last = 0
        for row in reader:
            line_number = reader.line_num
            pairs = [
                f"{names[i] if i < len(names) else f'column {i + 1}'}: {' '.join(value.split())}"
                for i, value in enumerate(row)
                if value.strip()
            ]
            if not pairs:
                continue
            first = first or line_number
            last = line_number
            lines.append("; ".join(pairs))
            if sum(map(len, lines)) >= ROW_GROUP_CHARS:
                sections.append(Section("\n".join(lines), (), {"rows": f"{first}-{last}"}))
                lines, first = [], 0
        if lines:
            sections.append(Section("\n".join(lines), (), {"rows": f"{first}-{last}"}))
    except csv.Error as exc:
        raise LoadError(f"malformed CSV at line {reader.line_num}: {exc}") from None
    if not sections:
        raise LoadError("a header but no data rows")
    return Document(doc_id, fallback_title, sections)


def parse_records(text: str, kind: str) -> list[tuple[str, object]]:
    """The records of a JSON array/object file or a JSON Lines file, each with where it was found."""
    if kind == "jsonl":
        return [(f"line {number}", parse_line(line)) for number, line in enumerate(text.split("\n"), start=1) if line.strip()]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LoadError(f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise LoadError(NESTED_TOO_DEEPLY) from None
    except ValueError:
        raise LoadError(number_too_long()) from None
    data = data if isinstance(data, list) else [data]
    return [(f"record {index + 1}", record) for index, record in enumerate(data)]


def parse_line(line: str) -> object:
    """One JSON Lines record, or the LoadError that says why this line (and only it) cannot be read."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        return LoadError(f"malformed JSON: {exc.msg} at column {exc.colno}")
    except RecursionError:
        return LoadError(NESTED_TOO_DEEPLY)
    except ValueError:
        return LoadError(number_too_long())


def number_too_long() -> str:
    """Why json.loads refused an integer: Python converts at most sys.get_int_max_str_digits() digits."""
    return f"a number of more than {sys.get_int_max_str_digits():,} digits, too long to read"


def load_records(records: list[tuple[str, object]], file_id: str, fields: RecordFields) -> tuple[list[Document], list[Problem]]:
    """One document per record; records without text are reported, records sharing an id are merged."""
    documents: list[Document] = []
    problems: list[Problem] = []
    by_id: dict[str, tuple[str, Document]] = {}
    for index, (where, record) in enumerate(records):
        if isinstance(record, LoadError):
            problems.append(Problem(where, str(record)))
            continue
        if not isinstance(record, dict):
            problems.append(Problem(where, f"not a JSON object but {type(record).__name__}"))
            continue
        text = record.get(fields.text_field)
        if not isinstance(text, str) or not text.strip():
            problems.append(Problem(where, f"no text in field {fields.text_field!r} (choose it with --text-field)"))
            continue
        try:
            check_line_length(text, "its text has a line")
        except LoadError as exc:
            problems.append(Problem(where, str(exc)))
            continue
        text = clean(text).strip()
        raw_id = record.get(fields.id_field)
        doc_id = str(raw_id) if raw_id not in (None, "") and not isinstance(raw_id, (dict, list)) else f"{file_id}#{index + 1}"
        if doc_id in by_id:
            first_where, first = by_id[doc_id]
            first.sections.append(Section(text))
            problems.append(Problem(where, f"duplicate id {doc_id!r} (first at {first_where}): its text was added to that document", False))
            continue
        title = record.get(fields.title_field)
        document = Document(doc_id, clean(str(title)).strip() if title not in (None, "") else doc_id, [Section(text)], record_metadata(record, fields))
        by_id[doc_id] = (where, document)
        documents.append(document)
    if not documents and not problems:
        raise LoadError("no records")
    return documents, problems


def record_metadata(record: dict, fields: RecordFields) -> dict:
    """The record's other scalar fields, as Chroma can store and filter them."""
    metadata = {}
    for key, value in record.items():
        if not key or key in (fields.id_field, fields.text_field, fields.title_field):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            continue
        if isinstance(value, str) and len(value) > MAX_METADATA_CHARS:
            continue
        if isinstance(value, (str, int, float, bool)):
            metadata[key] = value
    return metadata
