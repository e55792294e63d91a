"""What every loader shares: the limits on one input, text cleaning, and the checks of a ZIP container before it is read."""
from __future__ import annotations

import io
import re
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ingest.documents import LoadError
from ingest.ocr import PageReader
from rag.core.errors import raised_within

ROW_GROUP_CHARS = 700  # rows of a table (CSV, sheet) grouped into one section
CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
ZIP_SIGNATURE = b"PK\x03\x04"
OLE_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # a Compound File: an encrypted Office file, or an old .doc/.xls/.ppt
ENCRYPTED_PACKAGE = "EncryptedPackage".encode("utf-16-le")  # the stream an encrypted OOXML file keeps its ZIP in
ZIP_CONTENTS = (  # an entry that tells which format a ZIP container is, to name it when the extension lies
    ("word/document.xml", "a DOCX"), ("ppt/presentation.xml", "a PPTX"), ("xl/workbook.xml", "an XLSX"),
    ("META-INF/container.xml", "an EPUB"), ("content.xml", "an OpenDocument file"),
)


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
    sheet_rows: int = 100_000
    messages: int = 10_000
    pixels: int = 50_000_000

    @classmethod
    def from_settings(cls, settings) -> Limits:
        """The limits the settings give."""
        return cls(
            int(settings.max_file_mb * 2**20), int(settings.max_text_mb * 2**20), int(settings.max_unpacked_mb * 2**20),
            settings.max_archive_entries, settings.max_pdf_pages, settings.max_paragraphs, settings.max_runs,
            settings.max_chunks_per_file, settings.max_sheet_rows, settings.max_messages, settings.max_pixels,
        )


@dataclass(frozen=True)
class Input:
    """One file to load: its bytes (empty for a format read as a stream from its path), name, id, and the run's choices."""

    raw: bytes
    path: Path
    doc_id: str
    fields: RecordFields = RecordFields()
    limits: Limits = Limits()
    ocr: PageReader | None = None  # reads scanned pages and images; None when RAG_OCR=off

    @property
    def stem(self) -> str:
        """The file name without its extension: the title of a file that names none."""
        return self.path.stem


def megabytes(size: int) -> str:
    """A size for messages."""
    if size < 2**20:
        return f"{size / 2**10:,.0f} KB"
    return f"{size / 2**20:,.1f} MB" if size < 10 * 2**20 else f"{size / 2**20:,.0f} MB"


def clean(text: str) -> str:
    """Text without control characters other than tabs and line breaks."""
    return CONTROL.sub("", text.replace("\r\n", "\n"))


def one_line(text: object) -> str:
    """A title, name or cell as one line of clean text."""
    return " ".join(clean(str(text)).split())


@contextmanager
def parsing(kind: str, library: tuple[str, ...]):
    """What the parsing library raises on a damaged file becomes LoadError("damaged KIND (...)"); our own errors pass."""
    try:
        yield
    except Exception as exc:
        if not raised_within(exc, library):
            raise
        raise LoadError(f"damaged {kind} ({type(exc).__name__}: {str(exc)[:120]})") from None


def check_archive(raw: bytes, limits: Limits, kind: str = "DOCX", main_entry: str = "") -> None:
    """Refuse what is not a ZIP container of this kind (encrypted, another format), or would unpack to too much.

    Python's zipfile never unpacks an entry past the size its directory declares, so the declared sizes bound the work.
    """
    if raw.startswith(OLE_SIGNATURE):
        if ENCRYPTED_PACKAGE in raw:
            raise LoadError(f"the {kind} is password-protected (encrypted); save a copy without a password")
        raise LoadError(f"not {named(kind)} but an older binary Office file (.doc, .xls, .ppt); save it as {kind}")
    if not raw.startswith(ZIP_SIGNATURE):
        raise LoadError(f"not {named(kind)} (not a ZIP container): the file extension is wrong")
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise LoadError(f"damaged {kind} ({type(exc).__name__}: {str(exc)[:120]})") from None
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
    names = {entry.filename for entry in entries}
    other = next((name for entry, name in ZIP_CONTENTS if entry in names), None)
    if main_entry and main_entry not in names and other:
        raise LoadError(f"not {named(kind)} but {other} (no {main_entry} in it): the file extension is wrong")


def named(kind: str) -> str:
    """A format's name with its article, as it is read out ("a DOCX", "an XLSX", "an ODT")."""
    return ("an " if kind[0] in "AEFHILMNORSX" else "a ") + kind
