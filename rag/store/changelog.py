"""What each ingest changed, recorded in Chroma so every reader (any process, any machine) can follow it.

Every write batch of an ingest run gets a sequence number `run * SPAN + n`, stored in the written
chunks' metadata (`ingest_seq`) atomically with the chunks. Deletions are logged in a side collection
before they happen. The collection metadata holds the run counters: `rev_started` when a run first
writes, `rev_done` when it finishes. A reader that has applied everything up to a sequence number reads
only the chunks tagged later and the deletions logged later; ids logged as deleted are looked up
again, so a run killed between logging and deleting is still read exactly.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field

from rag.core.settings import CHANGELOG_SUFFIX

SPAN = 10**9
SEQ_KEY = "ingest_seq"
STARTED, DONE, KEPT_FROM = "rev_started", "rev_done", "log_kept_from"
KEEP_RUNS = 200
PAGE = 5000
LOG_IDS = 1000


class ChangeLogDamaged(Exception):
    """An entry of the deletion log cannot be read: the log cannot say what changed."""


def log_name(collection_name: str) -> str:
    """The side collection holding a collection's deletion log."""
    return f"{collection_name}{CHANGELOG_SUFFIX}"


def run_state(metadata: dict | None) -> tuple[int, int]:
    """(last run started, last run finished) from a collection's metadata."""
    metadata = metadata or {}
    return int(metadata.get(STARTED, 0)), int(metadata.get(DONE, 0))


def writable_metadata(metadata: dict | None, **changes) -> dict:
    """A collection's metadata with changes, without the index settings Chroma refuses to modify."""
    current = {key: value for key, value in (metadata or {}).items() if not key.startswith("hnsw:")}
    return {**current, **changes}


class ChangeRecorder:
    """One ingest run's side of the log: numbers its write batches and logs its deletions before they happen."""

    def __init__(self, client, collection):
        self.client, self.collection = client, collection
        self.run: int | None = None
        self.batches = 0
        self.lock = threading.Lock()

    def next_seq(self) -> int:
        """The next batch's sequence number; the first call starts the run in the collection's metadata."""
        with self.lock:
            if self.run is None:
                started, done = run_state(self.collection.metadata)
                self.run = max(started, done) + 1
                self.collection.modify(metadata=writable_metadata(self.collection.metadata, **{STARTED: self.run}))
            self.batches += 1
            return self.run * SPAN + self.batches

    def tagged(self, metadatas: list[dict]) -> list[dict]:
        """The batch's metadatas carrying its sequence number."""
        seq = self.next_seq()
        return [{**metadata, SEQ_KEY: seq} for metadata in metadatas]

    def log_deletions(self, ids: list[str]) -> None:
        """Record that these chunk ids are about to be deleted."""
        if not ids:
            return
        seq = self.next_seq()
        log = self.client.get_or_create_collection(log_name(self.collection.name), embedding_function=None)
        parts = [ids[start : start + LOG_IDS] for start in range(0, len(ids), LOG_IDS)]
        log.add(
            ids=[f"{seq}-{n}" for n in range(len(parts))],
            documents=[json.dumps(part) for part in parts],
            metadatas=[{"seq": seq}] * len(parts),
            embeddings=[[0.0]] * len(parts),
        )

    def finished(self) -> dict:
        """Metadata marking the run finished (empty if it changed nothing), pruning the log of old runs."""
        if self.run is None:
            return {}
        kept_from = int((self.collection.metadata or {}).get(KEPT_FROM, 0))
        if self.run - KEEP_RUNS > kept_from:
            kept_from = self.run - KEEP_RUNS
            try:
                log = self.client.get_collection(log_name(self.collection.name), embedding_function=None)
                log.delete(where={"seq": {"$lt": kept_from * SPAN}})
            except Exception:  # no log yet: nothing to prune
                pass
        return {DONE: self.run, KEPT_FROM: kept_from}


@dataclass
class Changes:
    """Chunks written or rewritten since a sequence number, ids removed since, and the new sequence number."""

    ids: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    metadatas: list[dict] = field(default_factory=list)
    vectors: list = field(default_factory=list)
    removed: set[str] = field(default_factory=set)
    seq: int = 0

    def add(self, page: dict) -> None:
        """Take in one page of a Chroma get()."""
        self.ids += page["ids"]
        self.texts += page["documents"]
        self.metadatas += page["metadatas"]
        if len(page["ids"]):
            import numpy as np  # here, so that importing the change log (ingest, the app) does not import numpy

            self.vectors.append(np.asarray(page["embeddings"], dtype=np.float32))


def done_mark(metadata: dict | None) -> int:
    """The highest sequence number a finished (or, superseded, dead) run can have used."""
    return run_state(metadata)[1] * SPAN + SPAN - 1


def read_changes(client, collection, since: int) -> Changes | None:
    """What changed after sequence number since, or None when the log cannot say (no client, or pruned that far).

    Fetch the collection (and so its metadata) just before calling: every run finished by then is read in full.
    """
    metadata = collection.metadata or {}
    if client is None or (since + 1) // SPAN < int(metadata.get(KEPT_FROM, 0)):
        return None
    changes = Changes(seq=max(since, done_mark(metadata)))
    offset = 0
    while True:
        page = collection.get(
            where={SEQ_KEY: {"$gt": since}}, include=["documents", "metadatas", "embeddings"], limit=PAGE, offset=offset
        )
        changes.add(page)
        if len(page["ids"]) < PAGE:
            break
        offset += PAGE
    written = max((int(m.get(SEQ_KEY, 0)) for m in changes.metadatas), default=0)
    changes.seq = max(changes.seq, written)
    logged = logged_deletions(client, collection.name, since) - set(changes.ids)
    if logged:
        present = collection.get(ids=sorted(logged), include=["documents", "metadatas", "embeddings"])
        changes.add(present)
        changes.removed = logged - set(present["ids"])
    return changes


def logged_deletions(client, collection_name: str, since: int) -> set[str]:
    """Every chunk id logged as deleted after sequence number since; ChangeLogDamaged when an entry is unreadable."""
    try:
        log = client.get_collection(log_name(collection_name), embedding_function=None)
    except Exception:  # no run has deleted anything yet
        return set()
    entries = log.get(where={"seq": {"$gt": since}}, include=["documents"])
    return {chunk_id for entry, document in zip(entries["ids"], entries["documents"]) for chunk_id in logged_ids(entry, document)}


def logged_ids(entry: str, document: str | None) -> list[str]:
    """The chunk ids one log entry names: a JSON list of strings, or ChangeLogDamaged (truncated, say)."""
    try:
        ids = json.loads(document)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ChangeLogDamaged(f"the change log entry {entry} is unreadable ({type(exc).__name__}: {str(exc)[:80]})") from None
    if not isinstance(ids, list) or not all(isinstance(chunk_id, str) for chunk_id in ids):
        raise ChangeLogDamaged(f"the change log entry {entry} is not a list of chunk ids")
    return ids
