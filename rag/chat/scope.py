"""Which documents a question is about: the ids given (--doc, the page's picker), or a document the question names by
file name or title when exactly one matches; a name that matches several asks which one instead of guessing."""
from __future__ import annotations

import difflib
import re
import weakref
from dataclasses import dataclass
from pathlib import Path, PurePath

from rag.chat.mode import is_whole_document_question
from rag.core.errors import RagError

CLOSE_SHOWN = 5
CLOSE_LIKENESS = 0.7
CANDIDATES_SHOWN = 8
EMPTY_CHECK_BYTES = 4096  # a file this small or smaller is read to see whether it holds only blanks
FILE_NAME = re.compile(r"[\w.-]*\w\.[A-Za-z0-9]{1,5}\b")  # install.md, report-2024.pdf
MIN_TITLE_WORDS = 2  # a one-word title ("Routing", "Install") is too common a word to be taken as a document's name
MAX_TITLE_WORDS = 16  # longer titles are named by file name or in quotes
WORDS = re.compile(r"\w+")
# A question that speaks of a document: only then is a title in it taken as naming one (a question may share its words
# with a record's title, as FAQ questions do, without asking about that record alone).
DOCUMENT_CUE = re.compile(
    r"\b(?:page|file|document|doc|report|article|chapter|guide|paper|contract|handbook|manual|book|pdf|slides?)s?\b",
    re.IGNORECASE,
)
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
    """Every stored document's names (read from its first chunk), in store order."""
    derived = index.derived
    names = []
    for position, doc_id in enumerate(derived.doc_ids):
        metadata = index.metadatas[derived.chunks_of(position)[0]]
        source = str(metadata.get("source", "")) or doc_id
        names.append(DocumentName(doc_id, str(metadata.get("title", doc_id)), PurePath(source).name))
    return names


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
    documents = catalogue(index).documents
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
    """The documents a question names by file name, id or quoted name, or by a title of several words when it speaks
    of a document ("the Getting started page", "summarise Getting started"); [] when none. A name that fits several
    documents raises AmbiguousDocument listing them."""
    names = catalogue(index)
    scope: list[str] = []
    whole = is_whole_document_question(question)
    for name in mentioned_names(question):
        found = names.by_name.get(name.lower()) or names.by_title.get(title_key(name), [])
        if not found and whole and is_document_file(name):
            close = close_matches(name, names.documents)
            hint = f"the closest: {', '.join(close)}" if close else "`python -m ingest PATH` adds it"
            raise UnknownDocument(f"{name!r} names no document in the store; {hint}.")
        named(name, found, scope)
    if whole or DOCUMENT_CUE.search(question):
        words = WORDS.findall(question.lower())
        for size in range(min(names.longest_title, len(words)), MIN_TITLE_WORDS - 1, -1):
            for start in range(len(words) - size + 1):
                named(" ".join(words[start:start + size]), names.by_title.get(" ".join(words[start:start + size]), []), scope)
    return scope


def is_document_file(name: str) -> bool:
    """True when a name ends in the suffix of a format ingest reads (install.md, report.pdf)."""
    from ingest.loaders import KINDS  # the loaders' imports cost 85 ms: paid only for a file name not in the store

    return PurePath(name).suffix.lower() in KINDS


def named(name: str, found: list[str], scope: list[str]) -> None:
    """Add the one document a name fits to the scope; a name that fits several is the question which one."""
    if len(found) > 1:
        raise AmbiguousDocument(f"{name!r} names {len(found)} documents: {candidate_list(found)}. Say which one (by its id).", found)
    scope += [doc_id for doc_id in found if doc_id not in scope]


def mentioned_names(question: str) -> list[str]:
    """The file names and quoted names in a question."""
    return list(dict.fromkeys([*FILE_NAME.findall(question), *(m.strip() for m in QUOTED.findall(question))]))


def title_key(title: str) -> str:
    """A title as compared with the question's words: lower-cased words joined by single spaces."""
    return " ".join(WORDS.findall(title.lower()))


@dataclass
class Catalogue:
    """The stored documents' names, indexed: ids and file names (lower-cased), and titles of several words."""

    documents: list[DocumentName]
    by_name: dict[str, list[str]]
    by_title: dict[str, list[str]]
    longest_title: int


CATALOGUES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # one per chunk index (a refresh makes a new one)


def catalogue(index) -> Catalogue:
    """The names of the index's documents, built once per index."""
    if index not in CATALOGUES:
        documents = document_names(index)
        by_name: dict[str, list[str]] = {}
        by_title: dict[str, list[str]] = {}
        for d in documents:
            for key in dict.fromkeys((d.doc_id.lower(), d.file_name.lower())):
                by_name.setdefault(key, []).append(d.doc_id)
            key = title_key(d.title)
            if len(key.split()) >= MIN_TITLE_WORDS:
                by_title.setdefault(key, []).append(d.doc_id)
        longest = max((len(key.split()) for key in by_title), default=0)
        CATALOGUES[index] = Catalogue(documents, by_name, by_title, min(longest, MAX_TITLE_WORDS))
    return CATALOGUES[index]
