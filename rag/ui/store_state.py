"""The store as the page shows it: counts, formats, last ingest, filter choices and example questions."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import PurePosixPath

from ingest.documents import INTERNAL_FIELDS
from rag.core.errors import StoreError
from rag.core.question_words import PREPOSITIONS, words

MAX_FILTER_VALUES = 50
FOLDER = "folder"
EXAMPLES = 3
EXAMPLE_CHARS = (4, 80)
QUESTION_WORDS = frozenset("how what why where which who when".split())
DETERMINERS = frozenset("the a an my your our its their this these those".split())
STATEMENT_WORDS = frozenset("is are was were not cannot doesn isn won don fails failed".split())  # "doesn't" is "doesn t"


@dataclass
class StoreSummary:
    """What the store holds and what can be filtered on."""

    documents: int = 0
    chunks: int = 0
    embedder: str = ""
    updated_at: str = ""
    fields: dict[str, list] = field(default_factory=dict)
    folders: dict[str, list[str]] = field(default_factory=dict)
    formats: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    doc_ids: frozenset[str] = frozenset()


def folders_of(doc_id: str) -> list[str]:
    """Every folder a file's document id sits under: 'a/b/c.md' -> ['a', 'a/b']."""
    parents = PurePosixPath(doc_id).parents
    return [p.as_posix() for p in reversed(parents) if p.as_posix() not in (".", "")]


def store_version(collection) -> tuple[int, str]:
    """What changes when the store's contents change: its chunk count and last ingest time."""
    try:
        return collection.count(), str((collection.metadata or {}).get("updated_at", ""))
    except Exception as exc:  # Chroma raises many kinds when its folder or server goes away
        raise StoreError(f"Cannot read the store: {exc}") from None


def format_of(metadata: dict) -> str:
    """A chunk's file format as the user knows it: its source file's extension."""
    suffix = PurePosixPath(str(metadata.get("source") or metadata.get("doc_id", ""))).suffix.lower().lstrip(".")
    return suffix or "text"


def example_question(metadata: dict) -> str | None:
    """A question a chunk's heading or title suggests, as a person would ask it: a title that is a question as it is,
    else one made from the heading (see ask_about)."""
    title = " ".join(str(metadata.get("title", "")).split())
    if title.endswith("?") and EXAMPLE_CHARS[0] <= len(title) <= EXAMPLE_CHARS[1]:
        return title
    heading = " ".join(str(metadata.get("headings", "")).split(" > ")[-1].split())
    topic = heading if heading and heading != title else title
    if not EXAMPLE_CHARS[0] <= len(topic) <= EXAMPLE_CHARS[1] or not any(c.isalpha() for c in topic):
        return None
    return ask_about(topic)


def ask_about(topic: str) -> str | None:
    """A natural question on a heading: 'Adding documents' -> 'How do I go about adding documents?', 'The first answer
    is slow' -> 'What if the first answer is slow?', 'Model not found' -> 'What to do about “Model not found”?', 'The
    ingest command' -> 'Tell me about the ingest command.'; None for a heading that opens with a preposition ('In the
    browser'), which names no topic on its own; a heading that opens with a question word is asked as it is."""
    found = words(topic)
    if not found or found[0] in PREPOSITIONS:
        return None
    if found[0] == "when":
        return f"What happens {lowercase_first(topic)}?"
    if found[0] in QUESTION_WORDS:
        return f"{topic}?"
    if found[0] in DETERMINERS and STATEMENT_WORDS & set(found):
        return f"What if {lowercase_first(topic)}?"
    if STATEMENT_WORDS & set(found):
        return f"What to do about “{topic}”?"
    if found[0].endswith("ing") and len(found[0]) > 4:
        return f"How do I go about {lowercase_first(topic)}?"
    return f"Tell me about {lowercase_first(topic)}."


def lowercase_first(topic: str) -> str:
    """The heading with its first word in lower case when it is a common word in a title's capital ('The', 'Adding',
    'Supported'); any other first word may be a name ('Ollama', 'JSON') and keeps its capitals."""
    first, space, rest = topic.partition(" ")
    common = first.lower() in DETERMINERS | QUESTION_WORDS or first.lower().endswith(("ing", "ed"))
    return (first.lower() if common and first[1:].islower() else first) + space + rest


def pick_examples(candidates: dict[str, list[str]]) -> list[str]:
    """Up to EXAMPLES questions, each from another document, spread over the documents in id order."""
    docs = sorted(candidates)
    if not docs:
        return []
    step = max(1, len(docs) // EXAMPLES)
    picked: list[str] = []
    for doc_id in docs[::step] + docs:
        question = next((q for q in candidates[doc_id] if q not in picked), None)
        if question and len(picked) < EXAMPLES:
            picked.append(question)
    return picked


def ingested_ago(updated_at: str, now: datetime | None = None, zone=None) -> str:
    """When the last ingest finished, relative and in local time: '3 minutes ago (14:03)'."""
    try:
        when = datetime.fromisoformat(updated_at)
    except ValueError:
        return "unknown"
    when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    seconds = max(0, int((now - when).total_seconds()))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            relative = f"{count} {unit}{'s' if count != 1 else ''} ago"
            break
    else:
        relative = "just now"
    local = when.astimezone(zone)
    clock = local.strftime("%H:%M") if seconds < 86400 else local.strftime("%Y-%m-%d %H:%M")
    return f"{relative} ({clock})"


def summarise_store(collection, metadatas: list[dict]) -> StoreSummary:
    """Summarise every chunk's metadata (as the chunk index holds it) under the collection's own stamps."""
    meta = collection.metadata or {}
    summary = StoreSummary(embedder=str(meta.get("embedder", "")), updated_at=str(meta.get("updated_at", "")))
    values: dict[str, set] = {}
    doc_ids: set[str] = set()
    formats: dict[str, str] = {}
    examples: dict[str, list[str]] = {}
    for chunk in metadatas:
        summary.chunks += 1
        doc_ids.add(chunk["doc_id"])
        formats.setdefault(chunk["doc_id"], format_of(chunk))
        question = example_question(chunk)
        if question and question not in examples.setdefault(chunk["doc_id"], []):
            examples[chunk["doc_id"]].append(question)
        for key, value in chunk.items():
            if key not in INTERNAL_FIELDS and isinstance(value, (str, int, bool)):
                values.setdefault(key, set()).add(value)
    summary.documents = len(doc_ids)
    summary.doc_ids = frozenset(doc_ids)
    summary.formats = dict(Counter(formats.values()).most_common())
    summary.examples = pick_examples(examples)
    summary.fields = {
        key: sorted(found, key=str) for key, found in sorted(values.items()) if 1 < len(found) <= MAX_FILTER_VALUES
    }
    folders: dict[str, list[str]] = {}
    for doc_id in sorted(doc_ids):
        for folder in folders_of(doc_id):
            folders.setdefault(folder, []).append(doc_id)
    summary.folders = folders
    return summary


def filter_where(summary: StoreSummary, field_name: str | None, value) -> dict | None:
    """The Chroma filter for a sidebar choice: a folder becomes the list of its documents' ids."""
    if not field_name or value is None:
        return None
    if field_name == FOLDER:
        return {"doc_id": {"$in": summary.folders.get(value, [])}}
    return {field_name: value}
