"""Discover inputs, diff them against the store, then load, chunk, embed and write what changed.

Loading and chunking run in a thread ahead of the embedder, and writes run in another thread behind it,
so the model is never idle waiting for parsing or for Chroma. The manifest is the chunks' own metadata in
Chroma, so a killed run leaves nothing to reconcile: the next run sees which versions are complete.
"""
from __future__ import annotations

import collections
import hashlib
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ingest.chunking import Chunk, ChunkPlan, chunk_id, chunks_of, document_pieces
from ingest.discovery import Source, discover
from ingest.documents import LoadError
from ingest.loaders import Limits, RecordFields, format_name, load_path
from ingest.ocr import PageReader
from ingest.lock import writer_lock
from ingest.storable import readable_path, storable_documents
from rag.store.changelog import ChangeRecorder, log_name, writable_metadata
from rag.search.embeddings import Embedder, embedder_options, load_embedder_in_background, variant_of
from rag.core.errors import RagError, StoreError
from rag.core.settings import Settings
from rag.store.chroma import VARIANT_KEY, batched, check_embedder, open_client, open_collection, reset_store, store_error, store_location

EMBED_BATCH = 512
FIRST_BATCH = 32
MANIFEST_PAGE = 5000
HEARTBEAT_S = 0.25  # how often a caller hears from a run that is busy reading one file
DONE = object()


@dataclass
class StoredDoc:
    """What the store holds for one document id: its chunk ids per version, and where it came from."""

    source: str
    root: str
    versions: dict[str, list[str]] = field(default_factory=dict)
    expected: dict[str, int] = field(default_factory=dict)

    def has_complete(self, doc_hash: str) -> bool:
        """True when every chunk of this version is in the store."""
        return len(self.versions.get(doc_hash, ())) == self.expected.get(doc_hash, -1)

    def is_current(self, doc_hash: str) -> bool:
        """True when the store holds exactly this version's chunks and nothing else."""
        return self.has_complete(doc_hash) and len(self.versions) == 1

    def other_ids(self, doc_hash: str) -> list[str]:
        """Chunk ids of every version but this one."""
        return [chunk_id for h, ids in self.versions.items() if h != doc_hash for chunk_id in ids]

    def all_ids(self) -> list[str]:
        """Every chunk id of this document."""
        return [chunk_id for ids in self.versions.values() for chunk_id in ids]

    def complete_version(self, hashes: tuple[str, ...], most_chunks: int) -> str | None:
        """The first of these versions the store holds whole in at most most_chunks chunks, or None."""
        return next((h for h in hashes if self.has_complete(h) and self.expected[h] <= most_chunks), None)


@dataclass
class ChunkBudget:
    """How many chunks one file may still store (RAG_MAX_CHUNKS_PER_FILE, all its documents together), and how many
    of its documents were cut short or left out to stay within it."""

    limit: int
    used: int = 0
    cut: int = 0
    left_out: int = 0

    @property
    def left(self) -> int:
        """Chunks the file may still store."""
        return self.limit - self.used

    @property
    def reached(self) -> bool:
        """True when something of the file was not stored for the limit."""
        return bool(self.cut or self.left_out)

    def take(self, chunks: int, cut: bool) -> None:
        """Count a document's chunks, and whether it was cut short."""
        self.used += chunks
        self.cut += cut

    def warning(self, documents: int) -> str:
        """What the limit left out of a file of this many documents, and the setting that sets it."""
        if documents == 1:
            lost = "the rest of its text"
        else:
            parts = ("the end of one record" if self.cut else "", f"{self.left_out:,} of its {documents:,} records" if self.left_out else "")
            lost = " and ".join(part for part in parts if part)
        return f"only its first {self.limit:,} chunks were stored (RAG_MAX_CHUNKS_PER_FILE); left out: {lost}"


def cut_version(doc_hash: str, chunks: int) -> str:
    """The version hash of a document's first chunks only, so a changed limit stores it again and an unchanged one does not."""
    return hashlib.sha256(f"{doc_hash}|first {chunks} chunks".encode()).hexdigest()


@dataclass
class IngestReport:
    """What a run did."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    formats: list[tuple[str, str]] = field(default_factory=list)  # every file found, with its format
    chunks_written: int = 0
    seconds: float = 0.0
    load_seconds: float = 0.0  # loading the embedder (in the background, while files are read)
    embed_seconds: float = 0.0  # embedding the chunks written
    dry_run: bool = False
    embedded_on: str = ""  # the device, runtime and batch size, when the embedder was loaded


@dataclass
class IngestOptions:
    """Choices of one run."""

    fields: RecordFields = RecordFields()
    reset: bool = False
    dry_run: bool = False


@dataclass
class Work:
    """Chunks to embed and write for one document, and the chunk ids to delete once they are written."""

    doc_id: str
    chunks: list[Chunk]
    delete_after: list[str]


def read_manifest(collection) -> dict[str, StoredDoc]:
    """What the store holds, per document id, read from the chunks' metadata."""
    stored: dict[str, StoredDoc] = {}
    offset = 0
    while True:
        page = collection.get(include=["metadatas"], limit=MANIFEST_PAGE, offset=offset)
        for stored_id, meta in zip(page["ids"], page["metadatas"]):
            meta = meta or {}
            doc = stored.setdefault(str(meta.get("doc_id", stored_id)), StoredDoc(meta.get("source", ""), meta.get("root", "")))
            doc_hash = str(meta.get("doc_hash", ""))
            doc.versions.setdefault(doc_hash, []).append(stored_id)
            doc.expected[doc_hash] = int(meta.get("n_chunks", 0))
            doc.source, doc.root = meta.get("source", doc.source), meta.get("root", doc.root)
        if len(page["ids"]) < MANIFEST_PAGE:
            return stored
        offset += MANIFEST_PAGE


class LazyEmbedder:
    """The embedder named in the settings, loaded only once something must be chunked or embedded.

    An unchanged re-run or a dry run never loads it (nor torch): the collection's metadata names the
    embedder it was built with, which is all the checks before embedding need.
    """

    def __init__(self, name: str, embedder: Embedder | None = None, options: dict | None = None):
        self.name, self.options = name, options or {}
        self.embedder = embedder
        self.loading: Future | None = None
        self.load_seconds = 0.0
        self.check: Callable[[Embedder], None] = lambda embedder: None
        self.lock = threading.Lock()

    @property
    def variant(self) -> str:
        """The variant of the vectors it makes (float32 or int8), known before it is loaded."""
        return self.embedder.variant if self.embedder else variant_of(self.options.get("runtime", "torch"))

    def prefetch(self) -> None:
        """Start loading it in the background."""
        with self.lock:
            if self.embedder is None and self.loading is None:
                started = time.perf_counter()
                self.loading = load_embedder_in_background(self.name, **self.options)
                self.loading.add_done_callback(lambda _: setattr(self, "load_seconds", time.perf_counter() - started))

    def get(self) -> Embedder:
        """The loaded embedder, checked against the store (once it is open)."""
        self.prefetch()
        embedder = self.embedder or self.loading.result()
        self.check(embedder)
        self.embedder = embedder
        return embedder


def collection_names(client) -> list[str]:
    """The names of the collections in the store."""
    return [c.name if hasattr(c, "name") else c for c in client.list_collections()]


def prepare_collection(settings: Settings, embedders: LazyEmbedder, chunking: str, reset: bool, dry_run: bool):
    """The client and the collection (None in a dry run with no store), rebuilt if asked; refuses another chunking.

    The embedder is loaded here only to create a collection (its dimension is recorded with it).
    """
    client = reset_store(settings) if reset and not dry_run else open_client(settings)
    names = collection_names(client)
    if reset and not dry_run and log_name(settings.collection) in names:
        client.delete_collection(log_name(settings.collection))
    exists = settings.collection in names
    if not exists:
        if dry_run:
            return client, None
        embedder = embedders.get()
        collection = open_collection(settings, embedder.name, embedder.dimension, create=True, client=client, variant=embedder.variant)
        return client, collection
    else:
        collection = open_collection(settings, embedders.name, None, create=False, client=client, variant=embedders.variant)
    embedders.check = lambda embedder: check_embedder(collection, embedder.name, embedder.dimension, embedder.variant)
    stored_plan = (collection.metadata or {}).get("chunking")
    if stored_plan and stored_plan != chunking and collection.count() and not reset:
        raise StoreError(
            f"The store at {store_location(settings)} was chunked with {stored_plan}, the settings now say "
            f"{chunking}. Rebuild it: `python -m ingest --reset PATH ...` "
            "(or set RAG_CHUNK_TOKENS and RAG_CHUNK_OVERLAP back)."
        )
    return client, collection


def ingest(
    paths: list[Path],
    settings: Settings,
    embedder: Embedder | None = None,
    options: IngestOptions = IngestOptions(),
    on_progress: Callable[[str, int], None] = lambda kind, n: None,
) -> IngestReport:
    """Bring the store in line with the given paths and report what changed.

    on_progress(kind, n) is called with ("files", total files), ("file", 1) per file read,
    ("planned", n) for chunks queued for embedding, ("chunks", n) for chunks written, ("ocr_pages", n) for pages about
    to be read by OCR and ("ocr", 1) per page read, and ("waiting", 0) every
    HEARTBEAT_S while a file is being read. An exception raised by on_progress (e.g. IngestCancelled) stops the run
    and frees the lock.
    Without an embedder, the one named in the settings is loaded if (and only when) something must be embedded.
    """
    started = time.perf_counter()
    report = IngestReport(dry_run=options.dry_run)
    embedders = LazyEmbedder(embedder.name if embedder else settings.embed_model, embedder, embedder_options(settings))
    chunking = ChunkPlan(settings.chunk_tokens, settings.chunk_overlap, 0).describe()
    with writer_lock(settings, active=not options.dry_run), store_errors(settings):
        client, collection = prepare_collection(settings, embedders, chunking, options.reset, options.dry_run)
        stored = read_manifest(collection) if collection is not None else {}
        exclude = set() if settings.chroma_url else {os.path.realpath(settings.store_dir)}
        sources = discover(paths, report.skipped, exclude)
        on_progress("files", len(sources))
        planner = Planner(stored, report, embedders, settings, options, Limits.from_settings(settings))
        if options.dry_run:
            for _ in planner.works(sources, on_progress):
                pass
        else:
            recorder = ChangeRecorder(client, collection)
            stamp(collection, embedders, chunking)
            run = WriteRun(collection, embedders, recorder, planner, on_progress, settings)
            report.chunks_written = run.run(sources)
            report.embed_seconds = run.embed_seconds
        removed = sorted(vanished(stored, planner.seen, planner.loaded, paths, {source.name for source in sources}))
        report.removed.extend(removed)
        if not options.dry_run:
            delete_ids(collection, recorder, [chunk_id for doc_id in removed for chunk_id in stored[doc_id].all_ids()])
            finished = recorder.finished()
            if finished or report.added or report.updated or report.removed:
                stamp(collection, embedders, chunking, finished)
    report.seconds = time.perf_counter() - started
    report.load_seconds = embedders.load_seconds
    if embedders.embedder is not None:
        report.embedded_on = embedders.embedder.describe()
    return report


class Planner:
    """Loads and chunks the sources, deciding per document whether it is new, changed or unchanged."""

    def __init__(
        self, stored: dict[str, StoredDoc], report: IngestReport, embedders: LazyEmbedder, settings: Settings,
        options: IngestOptions, limits: Limits = Limits(),
    ):
        self.stored, self.report, self.embedders, self.settings, self.options = stored, report, embedders, settings, options
        self.limits = limits
        self.seen: dict[str, str] = {}
        self.loaded: set[str] = set()
        self.given: set[str] = set()
        self.labels: dict[str, str] = {}

    def works(self, sources: list[Source], on_progress):
        """Yield the work for every document that must be (re)written, in source order."""
        report = self.report
        self.given = {source.name for source in sources}
        reader = PageReader(on_progress) if self.settings.ocr == "auto" else None
        for source in sources:
            owner = source.name
            report.formats.append((owner, format_name(source.path)))
            try:
                documents, problems = load_path(source.path, source.doc_id, self.options.fields, self.limits, reader)
            except LoadError as exc:
                report.skipped.append((owner, str(exc)))
                on_progress("file", 1)
                continue
            except Exception as exc:  # a parser bug on a hostile file must not stop the run
                report.skipped.append((owner, f"could not be read ({type(exc).__name__}: {str(exc)[:120]})"))
                on_progress("file", 1)
                continue
            self.loaded.add(owner)
            problems.extend(storable_documents(documents, source.doc_id))
            warnings = []
            for problem in problems:
                entry = (f"{owner} {problem.where}".strip(), problem.reason)
                (report.skipped if problem.skipped else warnings).append(entry)
            changes = len(report.added) + len(report.updated)
            budget = ChunkBudget(self.limits.chunks)
            for document in documents:
                work = self.decide(document, source, owner, budget)
                if work is not None:
                    yield work
            if budget.reached:
                warnings.append((owner, budget.warning(len(documents))))
            if len(report.added) + len(report.updated) > changes:  # said once, by the run that stores what it is about
                report.warnings.extend(warnings)
            on_progress("file", 1)

    def decide(self, document, source: Source, owner: str, budget: ChunkBudget) -> Work | None:
        """The work one document needs, recording in the report what happens to it; its chunks count against the
        file's budget, and a document past it is cut short or left out (a stored version of it is then removed)."""
        report = self.report
        if document.doc_id in self.seen:
            report.skipped.append((f"{owner} {document.doc_id}", f"same document id as in {self.seen[document.doc_id]}"))
            return None
        previous = self.stored.get(document.doc_id)
        moved = bool(previous and previous.source and previous.source != owner)
        if moved and previous.source not in self.given and Path(previous.source).exists():
            report.skipped.append(
                (owner, f"document id {document.doc_id!r} already comes from {previous.source}; ingest a common parent folder")
            )
            return None
        if not budget.left:
            budget.left_out += 1
            return None
        self.seen[document.doc_id] = owner
        self.labels[document.doc_id] = owner if document.doc_id == source.doc_id else f"{owner} {document.doc_id}"
        whole_hash = document.content_hash()
        cut_hash = cut_version(whole_hash, budget.left)
        stored = None if moved or not previous else previous.complete_version((whole_hash, cut_hash), budget.left)
        if stored:
            budget.take(previous.expected[stored], cut=stored == cut_hash)
            if previous.is_current(stored):
                report.unchanged.append(document.doc_id)
                return None
        (report.updated if previous else report.added).append(document.doc_id)
        if stored:
            return Work(document.doc_id, [], previous.other_ids(stored))
        if self.options.dry_run:
            return None
        embedder = self.embedders.get()
        plan = ChunkPlan(self.settings.chunk_tokens, self.settings.chunk_overlap, embedder.max_tokens)
        pieces = document_pieces(document, embedder.token_offsets, plan, limit=budget.left + 1)
        cut = len(pieces) > budget.left
        doc_hash = cut_hash if cut else whole_hash
        chunks = chunks_of(document, pieces[: budget.left], doc_hash, embedder.token_offsets)
        budget.take(len(chunks), cut)
        for chunk in chunks:
            chunk.metadata.update(source=owner, root=source.root_name)
        return Work(document.doc_id, chunks, previous.other_ids(doc_hash) if previous else [])

    def refused(self, doc_id: str, reason: str) -> None:
        """Report a document the store refused: skipped, with its earlier version (if any) kept."""
        for listed in (self.report.added, self.report.updated):
            if doc_id in listed:
                listed.remove(doc_id)
        self.report.skipped.append((self.labels.get(doc_id, doc_id), reason))


@dataclass
class Batch:
    """Embedded chunks to write, and per document the old chunk ids to delete once its new chunks are all written."""

    chunks: list[Chunk]
    vectors: list
    deletes: list[tuple[str, list[str]]]


def is_refusal(exc: BaseException) -> bool:
    """True when the store refused the data itself (a bad name, value or id), not when the store failed."""
    from chromadb.errors import DuplicateIDError, InvalidArgumentError

    return isinstance(exc, (ValueError, TypeError, InvalidArgumentError, DuplicateIDError))


class StoreWriter:
    """Writes batches to the collection; a batch the store refuses is retried record by record, and a document with a
    refused chunk is left out whole: its chunks written so far are removed and its earlier version is kept."""

    def __init__(self, collection, recorder: ChangeRecorder):
        self.collection, self.recorder = collection, recorder
        self.limit = max_batch(collection)
        self.refused: dict[str, str] = {}
        self.written = 0

    def write(self, batch: Batch) -> int:
        """Write a batch and its deletions; the number of chunks the store took."""
        kept = [(c, v) for c, v in zip(batch.chunks, batch.vectors) if c.metadata["doc_id"] not in self.refused]
        taken = 0
        for part in batched(kept, self.limit):
            taken += self.upsert([c for c, _ in part], [v for _, v in part])
        delete_ids(self.collection, self.recorder, [i for doc_id, ids in batch.deletes if doc_id not in self.refused for i in ids])
        self.written += taken
        return taken

    def upsert(self, chunks: list[Chunk], vectors: list) -> int:
        """Write chunks in one call, or one by one when the store refuses the call; the number written."""
        metadatas = self.recorder.tagged([c.metadata for c in chunks])
        try:
            self.collection.upsert(
                ids=[c.id for c in chunks], documents=[c.text for c in chunks], metadatas=metadatas, embeddings=vectors
            )
            return len(chunks)
        except Exception as exc:
            if not is_refusal(exc):
                raise
        taken = 0
        for chunk, metadata, vector in zip(chunks, metadatas, vectors):
            if chunk.metadata["doc_id"] in self.refused:
                continue
            try:
                self.collection.upsert(ids=[chunk.id], documents=[chunk.text], metadatas=[metadata], embeddings=[vector])
                taken += 1
            except Exception as exc:
                if not is_refusal(exc):
                    raise
                self.refuse(chunk, exc)
        return taken

    def refuse(self, chunk: Chunk, exc: Exception) -> None:
        """Leave the chunk's document out: the chunks of it written so far (those before this one) are removed."""
        meta = chunk.metadata
        self.refused[meta["doc_id"]] = (
            f"the store refused chunk {meta['chunk_index'] + 1} of {meta['n_chunks']} "
            f"({type(exc).__name__}: {str(exc)[:160]}); the document was not stored, an earlier version is kept"
        )
        delete_ids(self.collection, self.recorder, [chunk_id(meta["doc_id"], meta["doc_hash"], i) for i in range(meta["n_chunks"])])
        self.written -= meta["chunk_index"]


class WriteRun:
    """One run's embed-and-write loop: the planner reads and chunks files in a thread ahead of the embedder (this
    thread), and the store writer writes in a thread behind it, so the model never waits for parsing or for Chroma.

    on_progress is only ever called from the caller's thread (the app's callback draws Streamlit widgets).
    A document's old chunks are deleted only after all of its new chunks have been written.
    """

    def __init__(self, collection, embedders: LazyEmbedder, recorder: ChangeRecorder, planner: Planner, on_progress, settings: Settings):
        self.embedders, self.planner, self.on_progress, self.settings = embedders, planner, on_progress, settings
        self.store = StoreWriter(collection, recorder)
        self.planned: queue.Queue = queue.Queue(maxsize=256)
        self.to_write: queue.Queue = queue.Queue(maxsize=2)
        self.written_events: collections.deque = collections.deque()
        self.failure: list[BaseException] = []
        self.stop = threading.Event()
        self.embed_seconds = 0.0

    def run(self, sources: list[Source]) -> int:
        """Plan, embed and write every source's changed documents; the number of chunks written."""
        producer = threading.Thread(target=self.produce, args=(sources,), name="ingest-plan", daemon=True)
        writer = threading.Thread(target=self.write, name="ingest-write", daemon=True)
        producer.start()
        writer.start()
        try:
            self.embed()
        finally:
            self.stop.set()  # the planner only reads files: it may finish its current one after the lock is freed
            self.to_write.put(DONE)
            writer.join()
        self.relay_written()
        if self.failure:
            exc = self.failure[0]
            raise store_failure(exc, self.settings) if isinstance(exc, Exception) else exc
        for doc_id, reason in self.store.refused.items():
            self.planner.refused(doc_id, reason)
        return self.store.written

    def hand_over(self, item) -> None:
        """Queue planned work or a progress event for the embedder; once the run stopped, nobody reads: drop it."""
        while not self.stop.is_set():
            try:
                return self.planned.put(item, timeout=HEARTBEAT_S)
            except queue.Full:
                continue

    def relay(self, kind: str, n: int) -> None:
        """Hand a progress event of the planner's over; once the run stopped, stop reading too (a scan's OCR is long)."""
        if self.stop.is_set():
            raise RunStopped
        self.hand_over((kind, n))

    def produce(self, sources: list[Source]) -> None:
        """The planner's thread: every document's work, then DONE."""
        try:
            for work in self.planner.works(sources, self.relay):
                if self.stop.is_set():
                    return
                self.hand_over(work)
        except RunStopped:
            return
        except BaseException as exc:  # re-raised in the caller's thread
            self.failure.append(exc)
        finally:
            self.hand_over(DONE)

    def write(self) -> None:
        """The writer's thread: write each batch in order; after a failure, only drain the queue."""
        while (batch := self.to_write.get()) is not DONE:
            if self.failure:
                continue
            try:
                self.written_events.append(self.store.write(batch))
            except BaseException as exc:
                self.failure.append(exc)

    def relay_written(self) -> None:
        """Tell the caller, from its own thread, how many chunks were written since it last heard."""
        while self.written_events:
            self.on_progress("chunks", self.written_events.popleft())

    def embed(self) -> None:
        """Batch the planned chunks (small first, then larger), embed them, and queue them for the writer."""
        sent = queued = 0
        limit = FIRST_BATCH  # small first batches: the first chunks are searchable (and safe) within seconds
        batch: list[Chunk] = []
        waiting: list[tuple[int, str, list[str]]] = []  # (chunks queued through its document, doc id, ids to delete)
        finished = False
        while not finished and not self.failure:
            try:
                item = self.planned.get(timeout=HEARTBEAT_S)
            except queue.Empty:
                self.on_progress("waiting", 0)  # while one big file is read: the caller may cancel by raising here
                continue
            self.relay_written()
            if item is DONE:
                finished = True
            elif isinstance(item, tuple):
                self.on_progress(*item)
                continue
            else:
                self.on_progress("planned", len(item.chunks))
                batch.extend(item.chunks)
                queued += len(item.chunks)
                if item.delete_after:
                    waiting.append((queued, item.doc_id, item.delete_after))
            while batch and (len(batch) >= limit or finished) or (finished and waiting):
                part, batch = batch[:limit], batch[limit:]
                limit = min(limit * 2, EMBED_BATCH)
                sent += len(part)
                deletes = [(doc_id, ids) for end, doc_id, ids in waiting if end <= sent]
                waiting = [entry for entry in waiting if entry[0] > sent]
                vectors = self.embed_part(part) if part else []
                self.to_write.put(Batch(part, vectors, deletes))


    def embed_part(self, part: list[Chunk]) -> list:
        """The vectors of one batch, its time counted apart from the model's load."""
        embedder = self.embedders.get()
        started = time.perf_counter()
        vectors = embedder.embed([chunk.embed_text for chunk in part])
        self.embed_seconds += time.perf_counter() - started
        return vectors


class RunStopped(Exception):
    """The run stopped (cancelled, or failed) while the planner was still reading a file."""


def store_failure(exc: Exception, settings: Settings) -> Exception:
    """A failure while planning or writing, as the user should see it: a full disk, a damaged store, or what it said."""
    if isinstance(exc, (LoadError, StoreError)):
        return exc
    return store_error(exc, settings, "Writing to", " Nothing is lost: run the ingest again.")


@contextmanager
def store_errors(settings: Settings):
    """Turn a store failure outside the writer thread (reading the manifest, stamping) into the sentence the user needs."""
    try:
        yield
    except (RagError, LoadError):
        raise
    except Exception as exc:
        raise store_failure(exc, settings) from None


def max_batch(collection) -> int:
    """The largest write the Chroma client accepts."""
    try:
        return min(5000, collection._client.get_max_batch_size())
    except Exception:
        return 1000


def vanished(stored: dict[str, StoredDoc], seen: dict[str, str], loaded: set[str], paths: list[Path], found: set[str]) -> set[str]:
    """Stored documents whose file left an ingested folder (it was not found there), or whose record left a re-read file."""
    roots = {readable_path(Path(p).resolve()) for p in paths if Path(p).is_dir()}
    return {
        doc_id
        for doc_id, doc in stored.items()
        if doc_id not in seen and (doc.source in loaded or (doc.root in roots and doc.source not in found))
    }


def delete_ids(collection, recorder: ChangeRecorder, ids: list[str]) -> None:
    """Delete chunks by id, in batches, each logged before it is deleted."""
    for part in batched(ids, 1000):
        recorder.log_deletions(part)
        collection.delete(ids=part)


def stamp(collection, embedders: LazyEmbedder, chunking: str, finished: dict | None = None) -> None:
    """Record the embedder and chunking on the collection; when finished, also the run, the time and a new generation.

    Readers in other processes (the app) compare `generation` to know when to reopen the store.
    """
    current = collection.metadata or {}
    dimension = embedders.embedder.dimension if embedders.embedder else current.get("dimension")
    metadata = writable_metadata(current, embedder=embedders.name, dimension=dimension, chunking=chunking,
                                 **{VARIANT_KEY: embedders.variant})
    if finished is not None:
        metadata.update(finished, updated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), generation=str(time.time_ns()))
    if any(current.get(key) != value for key, value in metadata.items()):
        collection.modify(metadata=metadata)
