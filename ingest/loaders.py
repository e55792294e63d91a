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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ingest.code import LANGUAGE_NAMES, LANGUAGES, load_code
from ingest.documents import Document, LoadError, Outline, Problem, Section
from ingest.ebook import load_epub
from ingest.html import load_html
from ingest.mail import load_eml, load_mbox
from ingest.ocr import IMAGE_FORMATS, PageReader, load_image, read_pdf_pages
from ingest.opendocument import load_odt
from ingest.reading import CONTROL, ROW_GROUP_CHARS, Input, Limits, RecordFields, check_archive, clean, megabytes, parsing
from ingest.rtf import load_rtf
from ingest.sheets import load_ods, load_xlsx
from ingest.slides import load_pptx
from ingest.titles import meaningful_title
from rag.core.decoding import decode_utf8_or_legacy

Loaded = tuple[list[Document], list[Problem]]


@dataclass(frozen=True)
class Format:
    """A file format ingest reads: its name as lists show it, its extensions, and how a file of it becomes documents."""

    name: str
    suffixes: tuple[str, ...]
    load: Callable[[Input], Loaded]
    text: bool = False  # read as text: a file larger than RAG_MAX_TEXT_MB is skipped before it is read
    streamed: bool = False  # read from its path as a stream, not held in memory: RAG_MAX_FILE_MB does not apply


SIGNATURES = (
    (b"%PDF-", "a PDF"), (b"PK\x03\x04", "a ZIP archive (DOCX, XLSX, ...)"), (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"), (b"\x7fELF", "a program"),
    (b"\x1f\x8b", "gzip-compressed data"), (b"SQLite format 3", "an SQLite database"),
)
MAX_LINE_CHARS = 1_000_000
MAX_METADATA_CHARS = 2000
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")
TABLE_RULE = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")
LOADER_VERSION = "2"
PDF_LIBRARY = ("pypdf",)  # it raises its own errors, and TypeError, AssertionError, NotImplementedError... on damage
DOCX_LIBRARY = ("lxml", "zipfile")  # the XML parser and the ZIP reader under our stream reader (ingest/word.py)
NESTED_TOO_DEEPLY = "JSON nested too deeply to read"

logging.getLogger("pypdf").setLevel(logging.ERROR)


def read_text_file(source: Input) -> Loaded:
    """A text format's documents: decoded, its lines checked, then parsed by its extension."""
    text, problems = decode_text(source.raw)
    suffix = source.path.suffix.lower()
    if suffix in (".json", ".jsonl", ".ndjson"):
        records = parse_records(text, "json" if suffix == ".json" else "jsonl")
        documents, record_problems = load_records(records, source.doc_id, source.fields)
        return documents, problems + record_problems
    check_line_length(text)
    if suffix in (".md", ".markdown"):
        document = load_markdown(text, source.doc_id, source.stem)
    elif suffix in (".html", ".htm", ".xhtml"):
        document = load_html(text, source.doc_id, source.stem)
    elif suffix in (".csv", ".tsv"):
        document = load_csv(text, source.doc_id, source.stem, delimiter="\t" if suffix == ".tsv" else None)
    else:
        document = Document(source.doc_id, source.stem, [Section(text.strip())])
    if not document.sections:
        raise LoadError("no text in it")
    return [document], problems


def read_pdf(source: Input) -> Loaded:
    """A PDF's one document."""
    document, problems = load_pdf(source.raw, source.doc_id, source.stem, source.limits, source.ocr)
    return [document], problems


def read_image(source: Input) -> Loaded:
    """An image's one document, its text read by OCR."""
    limits = source.limits
    suffix = source.path.suffix.lower()
    document, problems = load_image(source.raw, source.doc_id, source.stem, suffix, limits.pixels, limits.pdf_pages, source.ocr)
    return [document], problems


def read_code(source: Input) -> Loaded:
    """A source file's one document, cut at its definitions."""
    text, problems = decode_text(source.raw)
    check_line_length(text)
    document, code_problems = load_code(text, source.doc_id, source.path.name, LANGUAGES[source.path.suffix.lower()])
    if not document.sections:
        raise LoadError("no text in it")
    return [document], problems + code_problems


def read_docx(source: Input) -> Loaded:
    """A DOCX's one document."""
    document, problems = load_docx(source.raw, source.doc_id, source.stem, source.limits)
    return [document], problems


def read_eml(source: Input) -> Loaded:
    """A saved e-mail, and its attachments in a format ingest reads."""
    return load_eml(source, load_bytes, lambda path: format_of(path) is not None)


def read_mbox(source: Input) -> Loaded:
    """A mailbox's messages and their attachments in a format ingest reads, read as a stream."""
    return load_mbox(source, load_bytes, lambda path: format_of(path) is not None)


# The one list of formats: ingest, `--dry-run`, the upload box and the README's list all read it.
FORMATS = [
    Format("Markdown", (".md", ".markdown"), read_text_file, text=True),
    Format("text", (".txt", ".text"), read_text_file, text=True),
    Format("PDF", (".pdf",), read_pdf),
    Format("HTML", (".html", ".htm", ".xhtml"), read_text_file, text=True),
    Format("Word (DOCX)", (".docx",), read_docx),
    Format("CSV/TSV", (".csv", ".tsv"), read_text_file, text=True),
    Format("JSON records", (".json",), read_text_file, text=True),
    Format("JSON Lines records", (".jsonl", ".ndjson"), read_text_file, text=True),
    Format("PowerPoint (PPTX)", (".pptx",), load_pptx),
    Format("Excel workbook (XLSX)", (".xlsx",), load_xlsx),
    Format("OpenDocument spreadsheet (ODS)", (".ods",), load_ods),
    Format("OpenDocument text (ODT)", (".odt",), load_odt),
    Format("Rich Text (RTF)", (".rtf",), load_rtf, text=True),
    Format("EPUB e-book", (".epub",), load_epub),
    Format("e-mail (EML)", (".eml",), read_eml),
    Format("mailbox (MBOX)", (".mbox",), read_mbox, streamed=True),
    *(
        Format(name, tuple(suffix for suffix, of in LANGUAGES.items() if of == language), read_code, text=True)
        for language, name in LANGUAGE_NAMES.items()
    ),
    Format("image (PNG, JPEG, TIFF, WebP)", tuple(IMAGE_FORMATS), read_image),
]
KINDS = {suffix: fmt for fmt in FORMATS for suffix in fmt.suffixes}
CONVERT_HINTS = {".doc": "save it as .docx", ".xls": "save it as .xlsx", ".ppt": "save it as .pptx"}


def format_of(path: Path) -> Format | None:
    """The format a path's extension names, or None when ingest does not read it."""
    return KINDS.get(path.suffix.lower())


def format_name(path: Path) -> str:
    """The format of a file as lists show it."""
    fmt = format_of(path)
    return fmt.name if fmt else f"unsupported ({path.suffix.lower() or 'no extension'})"


def checked_format(path: Path, limits: Limits) -> Format:
    """The file's format, refusing unsupported types, unreadable, huge and empty files before they are read."""
    fmt = format_of(path)
    if fmt is None:
        suffix = path.suffix.lower()
        hint = f" ({CONVERT_HINTS[suffix]})" if suffix in CONVERT_HINTS else ""
        raise LoadError(f"unsupported file type {suffix or '(no extension)'}{hint}")
    try:
        if not path.is_file():
            raise LoadError("not a regular file")
        size = path.stat().st_size
    except OSError as exc:
        raise LoadError(f"cannot read: {exc.strerror or exc}") from None
    if size > limits.file_bytes and not fmt.streamed:
        raise LoadError(f"too large ({megabytes(size)}; the limit is {megabytes(limits.file_bytes)}, RAG_MAX_FILE_MB)")
    if size > limits.text_chars and fmt.text:
        raise LoadError(
            f"too much text ({megabytes(size)}; the limit is {megabytes(limits.text_chars)} a file, RAG_MAX_TEXT_MB): "
            "split it, or raise the limit"
        )
    if size == 0:
        raise LoadError("empty file")
    return fmt


def read_bytes(path: Path, limits: Limits = Limits()) -> bytes:
    """The file's bytes, refusing unsupported types, unreadable, huge and empty files."""
    checked_format(path, limits)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LoadError(f"cannot read: {exc.strerror or exc}") from None
    if not raw.strip():
        raise LoadError("empty file")
    return raw


def load_path(
    path: Path, doc_id: str, fields: RecordFields, limits: Limits = Limits(), ocr: PageReader | None = None
) -> Loaded:
    """Documents in one file and the problems found in it (skipped records, decoding warnings, limits reached);
    scanned pages and images are read by ocr, or refused without it (RAG_OCR=off)."""
    fmt = checked_format(path, limits)
    if fmt.streamed:
        return fmt.load(Input(b"", path, doc_id, fields, limits, ocr))
    return load_bytes(read_bytes(path, limits), path, doc_id, fields, limits, ocr)


def load_bytes(
    raw: bytes, path: Path, doc_id: str, fields: RecordFields, limits: Limits = Limits(), ocr: PageReader | None = None
) -> Loaded:
    """Documents parsed from a file's bytes, by the format its extension names."""
    fmt = format_of(path)
    if fmt is None:
        raise LoadError(f"unsupported file type {path.suffix.lower() or '(no extension)'}")
    if fmt.streamed:
        raise LoadError(f"a {fmt.name} is read only from a file of its own")
    return fmt.load(Input(raw, path, doc_id, fields, limits, ocr))


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
    in_fence = in_table = False
    lines = text.splitlines()
    for number, line in enumerate(lines):
        if FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else HEADING.match(line)
        if match:
            outline.heading(len(match.group(1)), match.group(2).strip())
        elif in_table and "|" in line:
            if not TABLE_RULE.match(line):
                outline.table_row(line.strip())
        elif not in_fence and "|" in line and number + 1 < len(lines) and is_table_rule(lines[number + 1]):
            in_table = True
            outline.table_row(line.strip())
        else:
            in_table = False
            outline.text(line)
    if front_title:
        outline.title = outline.title or front_title
    return outline.document(doc_id, fallback_title)


def is_table_rule(line: str) -> bool:
    """True for the line under a Markdown table's header row (`|---|:--:|`)."""
    return "|" in line and "-" in line and bool(TABLE_RULE.match(line))


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
    return Document(doc_id, meaningful_title(title) or fallback_title, sections), problems


def load_docx(raw: bytes, doc_id: str, fallback_title: str, limits: Limits = Limits()) -> tuple[Document, list[Problem]]:
    """A Word document split at its heading styles, tables as rows of cells; read as a stream that stops at the first
    limit reached (paragraphs and table rows, text runs, characters), keeping what was read before it."""
    check_archive(raw, limits, "DOCX", "word/document.xml")
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
    if meaningful_title(title) and outline.title is None:
        document.title = meaningful_title(title)
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
            outline.table_row(" | ".join(cells))
    else:
        outline.flush()


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
