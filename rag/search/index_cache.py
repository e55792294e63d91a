"""Keeps a collection's chunk index current: loaded from its saved copy, caught up from the change log, saved back.

A full read of the collection happens only when there is no usable saved copy or the change log cannot
prove an incremental update exact (it was pruned past the copy, or the chunk count disagrees once no
ingest is running). Chroma stays the source of truth; the saved file is a cache.
"""
from __future__ import annotations

import bisect
import json
import logging
import threading
import time
import weakref
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.search import index_file
from rag.store.changelog import ChangeLogDamaged, Changes, done_mark, read_changes, run_state
from rag.search.chunk_index import ChunkIndex, chunk_tokens, passing
from rag.core.errors import RagError, StoreError
from rag.store.chroma import chroma_call, from_chroma

PAGE = 5000
RECHECK_SECONDS = 0.5
log = logging.getLogger(__name__)


@dataclass
class Loading:
    """How far the index has got, for a progress line: stage, chunks done and chunks in all."""

    stage: str = "waiting"
    done: int = 0
    total: int = 0


def collection_version(collection) -> tuple:
    """What changes whenever an ingest writes: chunk count, finished-ingest generation, last run started, and the
    collection's id (new after `ingest --reset`)."""
    metadata = collection.metadata or {}
    return collection.count(), metadata.get("generation", metadata.get("updated_at")), run_state(metadata)[0], str(collection.id)


def is_quiet(metadata: dict | None) -> bool:
    """True when no ingest run is in progress (or one was killed and nothing has run since: then it is over)."""
    started, done = run_state(metadata)
    return started == done


class ChunkIndexCache:
    """The current chunk index of one collection, refreshed from the change log when another ingest wrote."""

    def __init__(self, live, path: Path | None = None, preread: Future | None = None):
        self.live, self.path, self.preread = live, path, preread
        self.index: ChunkIndex | None = None
        self.collection_id: str | None = None  # the collection the index was built from
        self.seq = 0
        self.checked_at = 0.0
        self.lock = threading.Lock()
        self.loading = Loading()
        self.saver: threading.Thread | None = None
        self.unsaved = False
        self.full_builds = 0
        self.refresh_seconds = 0.0

    def get(self, recheck: bool = False) -> ChunkIndex:
        """The index, brought up to date if the collection changed (checked every RECHECK_SECONDS, or now if asked).

        While another thread is bringing it up to date, the current index is returned at once.
        """
        if self.index is not None and not self.lock.acquire(blocking=False):
            return self.index
        if self.index is None:
            self.lock.acquire()
        try:
            now = time.monotonic()
            if self.index is None:
                self.load()
                self.checked_at = now
            elif recheck or now - self.checked_at > RECHECK_SECONDS:
                self.checked_at = now
                if collection_version(self.live.fresh()) != self.index.version:
                    self.refresh(self.live.reopen())
            return self.index
        except RagError:
            raise
        except BaseException as exc:  # Chroma raises many kinds, a damaged database even a Rust panic
            if not from_chroma(exc):
                raise
            raise StoreError(self.live.describe_failure(exc)) from None
        finally:
            self.lock.release()

    def watch(self) -> None:
        """Keep the index current from a background thread, so searches never wait for a refresh."""
        cache = weakref.ref(self)

        def loop():
            while (alive := cache()) is not None:
                try:
                    alive.get()
                except RagError as exc:  # the store may be down for a while; searches report it
                    log.debug("chunk index: refresh failed (%s)", exc)
                except Exception:  # a bug of ours: logged with its traceback, and the index is kept watched
                    log.exception("chunk index: refresh failed")
                del alive
                time.sleep(RECHECK_SECONDS)

        threading.Thread(target=loop, name="chunk-index-watch", daemon=True).start()

    def load(self) -> None:
        """Start from the saved copy when it matches this collection and embedder, else read everything."""
        collection = self.live.collection
        self.loading = Loading("opening the saved index")
        try:
            header, index = self.saved_copy(collection)
        except index_file.IndexFileDamaged as exc:
            log.warning("chunk index: the saved copy %s cannot be used (%s); rebuilding it from the store", self.path, exc)
            self.rebuild(collection)
            return
        except index_file.IndexFileError as exc:
            log.info("chunk index: rebuilding (%s)", exc)
            self.rebuild(collection)
            return
        self.index, self.collection_id, self.seq = index, header.collection_id, header.seq
        self.refresh(collection)
        self.loading = Loading("ready", len(self.index.ids), len(self.index.ids))

    def saved_copy(self, collection) -> tuple[index_file.Header, ChunkIndex]:
        """The saved index (read ahead if it was) if it is whole and was built from this collection with its embedder."""
        if self.path is None:
            raise index_file.IndexFileError("no cache folder")
        preread, self.preread = self.preread, None
        header, index = preread.result() if preread is not None else saved_index(self.path)
        metadata = collection.metadata or {}
        if header.collection_id != str(collection.id):
            raise index_file.IndexFileError("it was built from another collection")
        if header.embedder != metadata.get("embedder") or header.dimension != int(metadata.get("dimension", -1)):
            raise index_file.IndexFileError(f"it was built with embedder {header.embedder!r} ({header.dimension} dims)")
        return header, index

    def refresh(self, collection) -> None:
        """Apply what changed since self.seq; rebuild when the log cannot prove the result exact, or the collection is
        another one (rebuilt by `ingest --reset`: its sequence numbers start again)."""
        started = time.perf_counter()
        with chroma_call():  # a read of a damaged database may make Chroma's core panic
            version = collection_version(collection)
        if str(collection.id) != self.collection_id:
            log.info("chunk index: the collection was replaced (ingest --reset); rebuilding")
            self.rebuild(collection)
            return
        try:
            with chroma_call():
                changes = read_changes(self.live.client, collection, self.seq)
        except ChangeLogDamaged as exc:
            log.warning("chunk index: %s; rebuilding from the store instead of following the log", exc)
            changes = None
        if changes is None:
            self.rebuild(collection)
            return
        if changes.ids or changes.removed:
            self.index = apply_changes(self.index, changes, version)
            self.unsaved = True
        else:
            self.index.version = version
        self.seq = changes.seq
        self.refresh_seconds = time.perf_counter() - started
        if self.verified(collection, version):
            self.save()

    def verified(self, collection, version: tuple) -> bool:
        """False (after rebuilding) when no ingest ran while reading and still the count disagrees."""
        if not (is_quiet(collection.metadata) and run_state(self.fresh_metadata()) == run_state(collection.metadata)):
            return False
        if len(self.index.ids) != version[0]:
            log.warning("chunk index: %d chunks after an update, the store has %d; rebuilding", len(self.index.ids), version[0])
            self.rebuild(collection)
            return False
        return True

    def rebuild(self, collection) -> None:
        """Read every chunk of the collection, page by page, and index it."""
        self.full_builds += 1
        with chroma_call():
            version = collection_version(collection)
        seq = done_mark(collection.metadata)
        total = version[0]
        self.loading = Loading("reading chunks", 0, total)
        changes = Changes()
        offset = 0
        while True:
            with chroma_call():  # page by page: stderr is held only while Chroma reads
                page = collection.get(include=["documents", "metadatas", "embeddings"], limit=PAGE, offset=offset)
            changes.add(page)
            self.loading = Loading("reading chunks", len(changes.ids), max(total, len(changes.ids)))
            if len(page["ids"]) < PAGE:
                break
            offset += PAGE
        self.loading = Loading("indexing chunks", len(changes.ids), len(changes.ids))
        self.index, self.collection_id, self.seq = build_index(changes, version), str(collection.id), seq
        self.unsaved = True
        self.loading = Loading("ready", len(self.index.ids), len(self.index.ids))
        if is_quiet(collection.metadata) and run_state(self.fresh_metadata()) == run_state(collection.metadata):
            self.save()

    def fresh_metadata(self) -> dict | None:
        """The collection's metadata read anew from Chroma."""
        with chroma_call():
            return self.live.fresh().metadata

    def save(self) -> None:
        """Write the current index to its file in a background thread (one at a time, the latest wins)."""
        if self.path is None or not self.unsaved:
            return
        self.unsaved = False
        index, seq, metadata = self.index, self.seq, self.live.collection.metadata or {}
        header = index_file.Header(
            self.collection_id, str(metadata.get("embedder")), int(metadata.get("dimension", index.vectors.shape[1])),
            seq, len(index.ids), index.version[1],
        )
        saved = index_file.Saved(header, index.ids, index.texts, index.metadatas, index.vectors, index.terms)
        previous = self.saver

        def write():
            if previous is not None:
                previous.join()
            try:
                index_file.save(self.path, saved)
            except OSError as exc:
                log.warning("chunk index: could not save to %s (%s)", self.path, exc)

        self.saver = threading.Thread(target=write, name="chunk-index-save")
        self.saver.start()

    def wait_saved(self) -> None:
        """Block until the last save has been written."""
        if self.saver is not None:
            self.saver.join()


def saved_index(path: Path) -> tuple[index_file.Header, ChunkIndex]:
    """The saved index read back and indexed, not yet checked against the collection."""
    saved = index_file.load(path)
    return saved.header, ChunkIndex(saved.ids, saved.texts, saved.metadatas, saved.vectors, (), saved.terms)


def read_ahead(path: Path) -> Future:
    """saved_index in a daemon thread (reading a file has no side effects), so it overlaps opening the store."""
    future: Future = Future()

    def run():
        try:
            future.set_result(saved_index(path))
        except BaseException as exc:  # handed to ChunkIndexCache.load, which rebuilds on IndexFileError
            future.set_exception(exc)

    threading.Thread(target=run, name="read-saved-index", daemon=True).start()
    return future


def sorted_records(changes: Changes) -> tuple[list[int], np.ndarray]:
    """The positions of the records in id order (the last of repeated ids), and their vectors stacked."""
    last = {chunk_id: n for n, chunk_id in enumerate(changes.ids)}
    order = [last[chunk_id] for chunk_id in sorted(last)]
    vectors = np.concatenate(changes.vectors) if changes.vectors else np.zeros((0, 0), np.float32)
    return order, vectors


def build_index(changes: Changes, version: tuple) -> ChunkIndex:
    """An index of the records, in id order."""
    order, vectors = sorted_records(changes)
    ids = [changes.ids[n] for n in order]
    texts = [changes.texts[n] for n in order]
    metadatas = [changes.metadatas[n] for n in order]
    return ChunkIndex(ids, texts, metadatas, vectors[order] if len(order) else vectors, version)


def apply_changes(index: ChunkIndex, changes: Changes, version: tuple) -> ChunkIndex:
    """The index with the changed records replaced or added and the removed ones dropped, still in id order."""
    order, vectors = sorted_records(changes)
    new_ids = [changes.ids[n] for n in order]
    new_texts = [changes.texts[n] for n in order]
    new_metadatas = [changes.metadatas[n] for n in order]
    gone = changes.removed | set(new_ids)
    dropped = sorted(p for chunk_id in gone if (p := position(index.ids, chunk_id)) is not None)
    kept_ids = without(index.ids, dropped)
    slots = [bisect.bisect_left(kept_ids, chunk_id) for chunk_id in new_ids]
    ids = spliced(kept_ids, slots, new_ids)
    texts = spliced(without(index.texts, dropped), slots, new_texts)
    metadatas = spliced(without(index.metadatas, dropped), slots, new_metadatas)
    kept_vectors = np.delete(index.vectors, dropped, axis=0) if dropped else index.vectors
    if not kept_ids:
        kept_vectors = np.zeros((0, vectors.shape[1]), np.float32)
    merged = np.insert(kept_vectors, slots, vectors[order], axis=0) if order else kept_vectors.copy()
    tokens = chunk_tokens(new_texts, new_metadatas)
    terms = index.terms.spliced(np.array(dropped, np.int64), np.array(slots, np.int64), tokens)
    refreshed = ChunkIndex(ids, texts, metadatas, merged, version, terms)
    for key, mask in index.masks.items():  # each filter is matched against the new records only
        refreshed.masks[key] = np.insert(np.delete(mask, dropped), slots, passing(new_metadatas, json.loads(key)))
    return refreshed


def without(items: list, positions: list[int]) -> list:
    """The items but those at the given positions (ascending), copied by slices."""
    if not positions:
        return items
    kept, start = [], 0
    for at in positions:
        kept += items[start:at]
        start = at + 1
    return kept + items[start:]


def spliced(items: list, slots: list[int], new: list) -> list:
    """A copy of items with new[j] inserted before items[slots[j]] (slots ascending), copied by slices."""
    merged, start = [], 0
    for slot, item in zip(slots, new):
        merged += items[start:slot]
        merged.append(item)
        start = slot
    return merged + items[start:]


def position(ids: list[str], chunk_id: str) -> int | None:
    """Where chunk_id sits in the sorted ids, or None."""
    at = bisect.bisect_left(ids, chunk_id)
    return at if at < len(ids) and ids[at] == chunk_id else None

