"""Which documents a question is about: the ids given (--doc, the page's picker), or a document the question names by
file name or title when exactly one matches; a name that matches several asks which one instead of guessing."""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path, PurePath

from rag.core.errors import RagError

CLOSE_SHOWN = 5
CLOSE_LIKENESS = 0.7
CANDIDATES_SHOWN = 8
EMPTY_CHECK_BYTES = 4096  # a file this small or smaller is read to see whether it holds only blanks
FILE_NAME = re.compile(r"[\w.-]*\w\.[A-Za-z0-9]{1,5}\b")  # install.md, report-2024.pdf
MIN_TITLE_WORDS = 2  # a one-word title ("Routing", "Install") is too common a word to be taken as a document's name
QUOTED = re.compile(r"[\"“']([^\"”']{3,})[\"”']")


class UnknownDocument(RagError):
    """A scope names a document the store does not hold."""


class AmbiguousDocument(RagError):
    """A name in the question matches several documents."""

    def __init__(self, message: str, candidates: list[str]):
        super().__init__(message)
        self.candidates = candidates


@dataclass(frozen=True)
class DocumentName:
    """What a stored document can be called: its id, title and file name."""

    doc_id: str
    title: str
    file_name: str


def document_names(index) -> list[DocumentName]:
    """Every stored document's names, in store order."""
    names: dict[str, DocumentName] = {}
    for metadata in index.metadatas:
        doc_id = str(metadata.get("doc_id", ""))
        if doc_id and doc_id not in names:
            source = str(metadata.get("source", "")) or doc_id
            names[doc_id] = DocumentName(doc_id, str(metadata.get("title", doc_id)), PurePath(source).name)
    return list(names.values())


def close_matches(name: str, documents: list[DocumentName]) -> list[str]:
    """The ids of the documents whose id, title or file name is most like name."""
    wanted = name.lower()

    def likeness(document: DocumentName) -> float:
        return max(difflib.SequenceMatcher(None, wanted, text.lower()).ratio() for text in (document.doc_id, document.title, document.file_name))

    ranked = sorted(documents, key=likeness, reverse=True)
    return [d.doc_id for d in ranked if likeness(d) >= CLOSE_LIKENESS][:CLOSE_SHOWN]


def resolve_ids(given: list[str], index, what: str = "--doc") -> list[str]:
    """The documents given by id (or unambiguous file name or title), in the order given, each once; what names
    where they were given, for the error."""
    documents = document_names(index)
    by_id = {d.doc_id: d for d in documents}
    scope: list[str] = []
    for name in given:
        if name in by_id:
            found = [name]
        else:
            found = [d.doc_id for d in documents if name.lower() in (d.file_name.lower(), d.title.lower())]
        if len(found) > 1:
            raise AmbiguousDocument(f"{what} {name!r} matches {len(found)} documents: {candidate_list(found)}; give its id.", found)
        if not found:
            on_disk(name, what)
            close = close_matches(name, documents)
            hint = f"the closest: {', '.join(close)}" if close else "none is close; `python -m ingest PATH` adds it"
            raise UnknownDocument(f"{what} {name!r}: no document in the store has this id; {hint}.")
        if found[0] not in scope:
            scope.append(found[0])
    return scope


def on_disk(name: str, what: str) -> None:
    """For a name that is a file here but not in the store: say it is empty, or that ingest has not taken it."""
    path = Path(name)
    try:
        if not path.is_file():
            return
        empty = path.stat().st_size <= EMPTY_CHECK_BYTES and not path.read_bytes().strip()
    except OSError:
        return
    if empty:
        raise UnknownDocument(f"{what} {name!r} is empty: it has no text to read (ingest skips empty files). Add text to it and ingest it.")
    raise UnknownDocument(f"{what} {name!r} is a file here but not in the store: `python -m ingest {name}` adds it, or says why it is skipped.")


def candidate_list(ids: list[str]) -> str:
    """The candidates' ids, the first few when many."""
    shown = ", ".join(ids[:CANDIDATES_SHOWN])
    return shown + (f" and {len(ids) - CANDIDATES_SHOWN} more" if len(ids) > CANDIDATES_SHOWN else "")


def named_in(question: str, index) -> list[str]:
    """The documents a question names by file name, id or title (a title of several words, or quoted); [] when none.
    A name that fits several documents raises AmbiguousDocument listing them."""
    documents = document_names(index)
    lowered = question.lower()
    scope: list[str] = []
    for name in mentioned_names(question):
        key = name.lower()
        found = [d.doc_id for d in documents if key in (d.doc_id.lower(), d.file_name.lower())]
        found = found or [d.doc_id for d in documents if d.title.lower() == key]
        if len(found) > 1:
            raise AmbiguousDocument(
                f"{name!r} names {len(found)} documents: {candidate_list(found)}. Say which one (by its id).", found
            )
        scope += [doc_id for doc_id in found if doc_id not in scope]
    titled = [d for d in documents if len(d.title.split()) >= MIN_TITLE_WORDS and title_in(d.title.lower(), lowered)]
    for title in dict.fromkeys(d.title for d in titled):
        found = [d.doc_id for d in titled if d.title == title]
        if len(found) > 1:
            raise AmbiguousDocument(
                f"{title!r} is the title of {len(found)} documents: {candidate_list(found)}. Say which one (by its id).", found
            )
        if found[0] not in scope:
            scope.append(found[0])
    return scope


def mentioned_names(question: str) -> list[str]:
    """The file names and quoted names in a question."""
    return list(dict.fromkeys([*FILE_NAME.findall(question), *(m.strip() for m in QUOTED.findall(question))]))


def title_in(title: str, text: str) -> bool:
    """True when the title stands in the text as whole words."""
    return re.search(rf"(?<!\w){re.escape(title)}(?!\w)", text) is not None
