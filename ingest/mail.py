"""E-mail (.eml) and mailboxes (.mbox) -> a document per message (its subject the title; from, to and date as metadata;
plain text preferred over HTML), and one per attachment in a format ingest reads (`mail.eml/report.pdf`)."""
from __future__ import annotations

import email.utils
import hashlib
from collections.abc import Callable, Iterator
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path, PurePosixPath

from ingest.documents import Document, LoadError, Problem, Section
from ingest.html import load_html
from ingest.reading import Input, clean, megabytes, one_line, parsing

MAIL_LIBRARY = ("email",)
MAIL_HEADERS = ("from", "to", "subject", "date", "message-id", "received", "mime-version")
LINE_BYTES = 64 * 2**10  # an mbox is read in lines of at most this many bytes, however long its lines are
MAX_ID_CHARS = 200
LoadBytes = Callable[..., tuple[list[Document], list[Problem]]]
Readable = Callable[[Path], bool]  # whether ingest reads a file of this name, asked before an attachment is decoded


def load_eml(source: Input, load_bytes: LoadBytes, readable: Readable) -> tuple[list[Document], list[Problem]]:
    """A saved message and its readable attachments."""
    documents, problems = message_documents(source.raw, source.doc_id, source, load_bytes, readable)
    if not documents:
        raise LoadError("no text in the message or its attachments")
    return documents, problems


def load_mbox(source: Input, load_bytes: LoadBytes, readable: Readable) -> tuple[list[Document], list[Problem]]:
    """Every message of a mailbox, read as a stream: at most RAG_MAX_MESSAGES messages and RAG_MAX_TEXT_MB of text,
    a message larger than RAG_MAX_FILE_MB skipped."""
    documents: list[Document] = []
    problems: list[Problem] = []
    chars = 0
    for number, raw in mbox_messages(source.path, source.limits):
        where = f"message {number:,}"
        if number > source.limits.messages:
            problems.append(Problem("", f"only its first {source.limits.messages:,} messages were read (RAG_MAX_MESSAGES)", False))
            break
        if raw is None:
            problems.append(Problem(where, f"larger than {megabytes(source.limits.file_bytes)} (RAG_MAX_FILE_MB), not read"))
            continue
        try:
            found, found_problems = message_documents(raw, f"{source.doc_id}/{message_key(raw)}", source, load_bytes, readable)
        except LoadError as exc:
            problems.append(Problem(where, str(exc)))
            continue
        if not found and not found_problems:
            problems.append(Problem(where, "no text in the message or its attachments"))
        chars += sum(len(section.text) for document in found for section in document.sections)
        if chars > source.limits.text_chars:
            problems.append(Problem("", f"text cut after message {number - 1:,}: over {megabytes(source.limits.text_chars)} (RAG_MAX_TEXT_MB)", False))
            break
        documents.extend(found)
        problems.extend(Problem(f"{where} {p.where}".strip(), p.reason, p.skipped) for p in found_problems)
    if not documents and not problems:
        raise LoadError("no messages in it")
    return documents, problems


def mbox_messages(path: Path, limits) -> Iterator[tuple[int, bytes | None]]:
    """Each message's bytes (None when it is larger than RAG_MAX_FILE_MB) with its number, split at the "From " lines
    that start messages; lines are read at most LINE_BYTES at a time, so nothing but one message is held in memory."""
    try:
        with open(path, "rb") as mbox:
            lines: list[bytes] = []
            size, number, blank, too_big = 0, 0, True, False
            for line in iter(lambda: mbox.readline(LINE_BYTES), b""):
                if line.startswith(b"From ") and blank:
                    if number:
                        yield number, None if too_big else b"".join(lines)
                    lines, size, number, too_big = [], 0, number + 1, False
                elif not number:
                    if line.strip():
                        raise LoadError("not an mbox (it does not start with a 'From ' line): the file extension is wrong")
                elif not too_big:
                    size += len(line)
                    too_big = size > limits.file_bytes
                    lines.append(line[1:] if line.startswith(b">") and line.lstrip(b">").startswith(b"From ") else line)
                blank = not line.strip()
            if number:
                yield number, None if too_big else b"".join(lines)
    except OSError as exc:
        raise LoadError(f"cannot read: {exc.strerror or exc}") from None


def message_key(raw: bytes) -> str:
    """A message's id in its mailbox: its Message-ID, else a hash of its bytes (both stable when other messages change)."""
    head = raw[: raw.find(b"\n\n") if b"\n\n" in raw else len(raw)]
    message = BytesParser(policy=policy.compat32).parsebytes(head, headersonly=True)
    key = one_line(message.get("message-id", "")).strip("<>")
    return key[:MAX_ID_CHARS].replace("/", "_") if key else "message-" + hashlib.sha256(raw).hexdigest()[:16]


def message_documents(
    raw: bytes, doc_id: str, source: Input, load_bytes: LoadBytes, readable: Readable
) -> tuple[list[Document], list[Problem]]:
    """A message's document (when it has text) and its attachments' documents."""
    with parsing("e-mail", MAIL_LIBRARY):
        message = BytesParser(policy=policy.default).parsebytes(raw)
        if not any(name in message for name in MAIL_HEADERS):
            raise LoadError("not an e-mail (no From, To or Subject header): the file extension is wrong")
        metadata = mail_metadata(message)
        subject = one_line(message.get("subject", "")) or "(no subject)"
        text = body_text(message)
        attachments = list(message.iter_attachments())
    documents, problems = [], []
    if text:
        fields = "\n".join(f"{name.capitalize()}: {value}" for name, value in metadata.items())
        documents.append(Document(doc_id, subject, [Section(f"{fields}\n\n{text}")], metadata))
    taken: set[str] = set()
    for part in attachments:
        name = attachment_name(part, taken)
        if name is None:
            continue
        if not readable(Path(name)):
            problems.append(Problem(f"attachment {name}", f"unsupported file type {Path(name).suffix.lower() or '(no extension)'}", False))
            continue
        try:
            payload = part.get_payload(decode=True) or b""
            found, found_problems = load_bytes(payload, Path(name), f"{doc_id}/{name}", source.fields, source.limits, source.ocr)
        except LoadError as exc:
            problems.append(Problem(f"attachment {name}", str(exc), skipped=False))
            continue
        for document in found:
            document.metadata = {**metadata, "attached_to": subject, **document.metadata}
        documents.extend(found)
        problems.extend(Problem(f"attachment {name} {p.where}".strip(), p.reason, p.skipped) for p in found_problems)
    return documents, problems


def mail_metadata(message: EmailMessage) -> dict:
    """From, to and date, as filterable metadata (the date in ISO 8601 when it parses)."""
    metadata = {}
    for name in ("from", "to"):
        if value := one_line(message.get(name, "")):
            metadata[name] = value
    if date := one_line(message.get("date", "")):
        try:
            metadata["date"] = email.utils.parsedate_to_datetime(date).isoformat()
        except (TypeError, ValueError):
            metadata["date"] = date
    return metadata


def body_text(message: EmailMessage) -> str:
    """The message's text: its plain-text body, else its HTML body's main text."""
    body = message.get_body(preferencelist=("plain", "html"))
    if body is None:
        return ""
    try:
        content = body.get_content()
    except (LookupError, ValueError):  # an unknown or wrong charset
        content = (body.get_payload(decode=True) or b"").decode("utf-8", "replace")
    if body.get_content_subtype() == "html":
        return "\n\n".join(section.text for section in load_html(content, "", "").sections)
    return clean(content).strip()


def attachment_name(part: EmailMessage, taken: set[str]) -> str | None:
    """An attachment's file name as its document id ends (no folders; a second "a.pdf" is "a (2).pdf"), or None."""
    filename = part.get_filename()
    if not filename:
        return None
    name = one_line(PurePosixPath(filename.replace("\\", "/")).name).lstrip(".") or "attachment"
    stem, suffix = Path(name).stem, Path(name).suffix
    candidate, count = name, 1
    while candidate in taken:
        count += 1
        candidate = f"{stem} ({count}){suffix}"
    taken.add(candidate)
    return candidate
