"""Discover inputs, diff them against the store, then load, chunk, embed and write what changed."""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ingest.chunking import Chunk, ChunkPlan, chunk_document
from ingest.documents import Document, LoadError
from ingest.loaders import RecordFields, load_path
from rag.embeddings import Embedder
from rag.errors import StoreError
from rag.settings import Settings
from rag.store import batched, open_client, open_collection, store_location

EMBED_BATCH = 256
MANIFEST_PAGE = 5000


@dataclass(frozen=True)
class Source:
    """A file to ingest, the root it was found under, and its document id."""

    path: Path
    root: Path
    doc_id: str


@dataclass
class StoredDoc:
    """What the store holds for one document id."""

    doc_hash: str
    n_chunks: int
    source: str
    root: str
    present: int = 0
    hashes: set = field(default_factory=set)

    def is_complete(self, doc_hash: str) -> bool:
        """True when the store holds exactly this version's chunks."""
        return self.hashes == {doc_hash} and self.present == self.n_chunks


@dataclass
class IngestReport:
    """What a run did."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    chunks_written: int = 0
    seconds: float = 0.0
    dry_run: bool = False


@dataclass
class IngestOptions:
    """Choices of one run."""

    fields: RecordFields = RecordFields()
    reset: bool = False
    dry_run: bool = False


def discover(paths: list[Path], report: IngestReport) -> list[Source]:
    """Every file under the given paths, with ids relative to the path it was found under."""
    sources: list[Source] = []
    for given in paths:
        if not given.exists():
            report.skipped.append((str(given), "does not exist"))
            continue
        root = given.resolve()
        if root.is_file():
            sources.append(Source(root, root, given.name))
            continue
        for folder, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                path = Path(folder) / name
                sources.append(Source(path, root, path.relative_to(root).as_posix()))
    return sources


def read_manifest(collection) -> dict[str, StoredDoc]:
    """What the store holds, per document id, read from the chunks' metadata."""
    stored: dict[str, StoredDoc] = {}
    offset = 0
    while True:
        page = collection.get(include=["metadatas"], limit=MANIFEST_PAGE, offset=offset)
        for meta in page["metadatas"]:
            doc = stored.setdefault(
                meta["doc_id"],
                StoredDoc(meta.get("doc_hash", ""), int(meta.get("n_chunks", 0)), meta.get("source", ""), meta.get("root", "")),
            )
            doc.present += 1
            doc.hashes.add(meta.get("doc_hash", ""))
        if len(page["ids"]) < MANIFEST_PAGE:
            return stored
        offset += MANIFEST_PAGE


def prepare_collection(settings: Settings, embedder: Embedder, plan: ChunkPlan, reset: bool, dry_run: bool):
    """Open (or rebuild) the collection and refuse one whose chunking differs from this plan."""
    if reset and not dry_run:
        client = open_client(settings)
        if settings.collection in [c.name if hasattr(c, "name") else c for c in client.list_collections()]:
            client.delete_collection(settings.collection)
    collection = open_collection(settings, embedder.name, embedder.dimension, create=True)
    stored_plan = (collection.metadata or {}).get("chunking")
    if stored_plan and stored_plan != plan.describe() and collection.count() and not reset:
        raise StoreError(
            f"The store at {store_location(settings)} was chunked with {stored_plan}, the settings now say "
            f"{plan.describe()}. Rebuild it: `python -m ingest --reset PATH ...`."
        )
    return collection


def ingest(
    paths: list[Path],
    settings: Settings,
    embedder: Embedder,
    options: IngestOptions = IngestOptions(),
    on_progress: Callable[[str, int], None] = lambda kind, n: None,
) -> IngestReport:
    """Bring the store in line with the given paths and report what changed."""
    started = time.perf_counter()
    report = IngestReport(dry_run=options.dry_run)
    plan = ChunkPlan(settings.chunk_tokens, settings.chunk_overlap, embedder.max_tokens)
    collection = prepare_collection(settings, embedder, plan, options.reset, options.dry_run)
    stored = {} if options.reset and options.dry_run else read_manifest(collection)
    sources = discover(paths, report)
    on_progress("files", len(sources))

    pending: list[Chunk] = []
    seen: dict[str, str] = {}
    loaded: set[str] = set()
    rewritten: dict[str, str] = {}
    for source in sources:
        try:
            documents, problems = load_path(source.path, source.doc_id, options.fields)
        except LoadError as exc:
            report.skipped.append((str(source.path), str(exc)))
            on_progress("file", 1)
            continue
        loaded.add(str(source.path))
        for problem in problems:
            entry = (f"{source.path} {problem.where}", problem.reason)
            (report.skipped if problem.skipped else report.warnings).append(entry)
        for document in documents:
            owner = str(source.path)
            if document.doc_id in seen:
                report.skipped.append((f"{owner} {document.doc_id}", f"same document id as in {seen[document.doc_id]}"))
                continue
            seen[document.doc_id] = owner
            previous = stored.get(document.doc_id)
            if previous and previous.source and previous.source != owner and Path(previous.source).exists():
                report.skipped.append(
                    (owner, f"document id {document.doc_id!r} already comes from {previous.source}; ingest a common parent folder")
                )
                continue
            doc_hash = document.content_hash()
            if previous and previous.is_complete(doc_hash):
                report.unchanged.append(document.doc_id)
                continue
            (report.updated if previous else report.added).append(document.doc_id)
            if previous:
                rewritten[document.doc_id] = doc_hash
            chunks = chunk_document(document, doc_hash, embedder.token_offsets, plan)
            for chunk in chunks:
                chunk.metadata.update(source=owner, root=str(source.root))
            pending.extend(chunks)
            if len(pending) >= EMBED_BATCH and not options.dry_run:
                report.chunks_written += write_chunks(collection, embedder, pending)
                on_progress("chunks", len(pending))
                pending = []
        on_progress("file", 1)
    if not options.dry_run:
        report.chunks_written += write_chunks(collection, embedder, pending)
        on_progress("chunks", len(pending))
    else:
        report.chunks_written = 0
    removed = vanished(stored, seen, loaded, paths)
    report.removed.extend(sorted(removed))
    if not options.dry_run:
        delete_documents(collection, sorted(removed))
        delete_old_versions(collection, rewritten)
        stamp(collection, embedder, plan)
    report.seconds = time.perf_counter() - started
    return report


def write_chunks(collection, embedder: Embedder, chunks: list[Chunk]) -> int:
    """Embed and upsert chunks, in batches the store accepts."""
    if not chunks:
        return 0
    vectors = embedder.embed([chunk.embed_text for chunk in chunks])
    limit = max_batch(collection)
    for start in range(0, len(chunks), limit):
        part = chunks[start : start + limit]
        collection.upsert(
            ids=[c.id for c in part],
            documents=[c.text for c in part],
            metadatas=[c.metadata for c in part],
            embeddings=vectors[start : start + limit],
        )
    return len(chunks)


def max_batch(collection) -> int:
    """The largest write the Chroma client accepts."""
    try:
        return min(5000, collection._client.get_max_batch_size())
    except Exception:
        return 1000


def vanished(stored: dict[str, StoredDoc], seen: dict[str, str], loaded: set[str], paths: list[Path]) -> set[str]:
    """Stored documents whose file left an ingested folder, or whose record left a re-read file."""
    roots = {str(p.resolve()) for p in paths if p.is_dir()}
    return {
        doc_id
        for doc_id, doc in stored.items()
        if doc_id not in seen
        and (doc.source in loaded or (doc.root in roots and not Path(doc.source).exists()))
    }


def delete_documents(collection, doc_ids: list[str]) -> None:
    """Delete every chunk of the given documents."""
    for part in batched(doc_ids, 100):
        collection.delete(where={"doc_id": {"$in": part}})


def delete_old_versions(collection, rewritten: dict[str, str]) -> None:
    """Delete the chunks of rewritten documents that belong to an earlier version."""
    for doc_id, doc_hash in rewritten.items():
        collection.delete(where={"$and": [{"doc_id": doc_id}, {"doc_hash": {"$ne": doc_hash}}]})


def stamp(collection, embedder: Embedder, plan: ChunkPlan) -> None:
    """Record the embedder, chunking and time of this ingest on the collection."""
    metadata = {
        key: value for key, value in (collection.metadata or {}).items() if not key.startswith("hnsw:")
    }
    metadata.update(
        embedder=embedder.name,
        dimension=embedder.dimension,
        chunking=plan.describe(),
        updated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    collection.modify(metadata=metadata)
