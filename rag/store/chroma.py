"""Opens the Chroma collection, embedded on disk or on a Chroma server, and guards its embedder."""
from __future__ import annotations

import errno
import os
import re
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from contextlib import closing, contextmanager
from pathlib import Path
from urllib.parse import urlparse

import httpx

from rag.core.errors import EmbedderMismatch, RagError, StoreError, raised_within
from rag.core.settings import Settings

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
DATABASE = "chroma.sqlite3"
DAMAGE_SIGNS = ("malformed", "not a database", "(code: 11)", "(code: 26)", "file is encrypted", "no such table", "corrupt")
FULL_SIGNS = ("disk is full", "no space left")
FULL_HINTS = ("(code: 13)", "compaction", "i/o error", "(code: 10)")  # Chroma's words when a write found no room
FULL_BELOW_BYTES = 64 * 2**20  # a write that failed with less free space than this failed because the disk is full


class StoreDamaged(StoreError):
    """The embedded store's files are damaged: it must be rebuilt."""


class ChromaPanic(RuntimeError):
    """A panic of Chroma's Rust core (pyo3's PanicException derives from BaseException, past every `except Exception`)."""


def is_panic(exc: BaseException) -> bool:
    """True for pyo3's PanicException, which Chroma's Rust core raises on a damaged database."""
    return type(exc).__name__ == "PanicException"


def from_chroma(exc: BaseException) -> bool:
    """True for a failure of Chroma (raised inside its code, or a panic of its Rust core), not for a bug of ours."""
    if is_panic(exc) or isinstance(exc, ChromaPanic):
        return True
    return isinstance(exc, Exception) and raised_within(exc, ("chromadb",))


PANIC_HEADER = re.compile(rb"thread '[^'\n]*'(?: \(\d+\))? panicked at ")
BACKTRACE_FRAME = re.compile(rb"\s+(?:\d+:|at )")


def without_panic_reports(written: bytes) -> bytes:
    """What was written to stderr less each report of a panic in Rust: the blank line before it, its header and
    message, its backtrace (RUST_BACKTRACE) and its closing note."""
    kept: list[bytes] = []
    report = backtrace = False
    for line in written.splitlines(keepends=True):
        if PANIC_HEADER.match(line):
            if kept and kept[-1] == b"\n":
                kept.pop()
            report, backtrace = True, False
        elif report and line.startswith(b"stack backtrace:"):
            backtrace = True
        elif report and line.startswith(b"note: "):
            report = False
        elif report and backtrace and not BACKTRACE_FRAME.match(line):
            report = False  # a full backtrace has no closing note: the report ended with its last frame
            kept.append(line)
        elif not report:
            kept.append(line)
    return b"".join(kept)


class HeldStderr:
    """The process's stderr (fd 2) sent to a temporary file while a Chroma call that may panic runs, restored when the
    last such call ends; what was written meanwhile (by any thread) is then passed on, less the reports of panics in
    Chroma's Rust core (one of its worker threads may write one; the failure is said in one line instead)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.users = 0
        self.saved = -1
        self.file = None

    def enter(self) -> None:
        with self.lock:
            if self.users == 0:
                sys.stderr.flush()
                self.file = tempfile.TemporaryFile()
                self.saved = os.dup(2)
                os.dup2(self.file.fileno(), 2)
            self.users += 1

    def leave(self) -> None:
        with self.lock:
            self.users -= 1
            if self.users:
                return
            sys.stderr.flush()
            os.dup2(self.saved, 2)
            os.close(self.saved)
            with self.file:
                self.file.seek(0)
                passed_on = without_panic_reports(self.file.read())
            with open(2, "wb", closefd=False) as stderr:
                stderr.write(passed_on)


HELD_STDERR = HeldStderr()


@contextmanager
def chroma_call():
    """Run a Chroma call whose Rust core may panic (keep it to Chroma's own work: stderr is held meanwhile): a panic
    becomes a ChromaPanic, and the report Rust wrote to the process's stderr is dropped, the rest passed on."""
    HELD_STDERR.enter()
    try:
        yield
    except BaseException as exc:
        if is_panic(exc):
            raise ChromaPanic(str(exc)) from None
        raise
    finally:
        HELD_STDERR.leave()


def database_file(settings: Settings) -> Path:
    """The embedded store's SQLite file."""
    return settings.store_dir / DATABASE


def free_bytes(folder: Path) -> int | None:
    """Free space on the disk holding folder, or None when it cannot be read."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def store_error(exc: BaseException, settings: Settings, doing: str = "Using", fix: str = "") -> StoreError:
    """A Chroma or file-system failure as the sentence the user needs: a damaged store, a full disk, or what it said."""
    text = f"{type(exc).__name__}: {exc}"
    lowered = text.lower()
    if not settings.chroma_url:
        free = free_bytes(settings.store_dir)
        said_full = (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or any(s in lowered for s in FULL_SIGNS)
        looks_full = any(sign in lowered for sign in FULL_HINTS) and free is not None and free < FULL_BELOW_BYTES
        if said_full or looks_full:
            shown = f"{free / 2**20:.1f} MB free" if free is not None else "no space left"
            return StoreError(
                f"The disk holding the store at {settings.store_dir} is full ({shown}). Free some space, then run "
                "again; what was written before is kept."
            )
        if any(sign in lowered for sign in DAMAGE_SIGNS) or database_damaged(database_file(settings)):
            return StoreDamaged(
                f"The store database {database_file(settings)} is damaged ({str(exc)[:120]}). Rebuild it with "
                "`python -m ingest --reset PATH ...` (conversations and uploads are kept), or move that file aside."
            )
    return StoreError(f"{doing} the store at {store_location(settings)} failed ({text[:200]}).{fix}")


def database_damaged(path: Path) -> bool:
    """True when SQLite's own check (a read-only PRAGMA quick_check) finds the database file damaged: for a failure
    whose words Chroma did not make plain (its compactor, its log store)."""
    if not path.is_file():
        return False
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)) as db:
            return db.execute("PRAGMA quick_check").fetchone()[0] != "ok"
    except sqlite3.DatabaseError as exc:
        return any(sign in str(exc).lower() for sign in ("malformed", "not a database", "corrupt"))


def open_client(settings: Settings, create: bool = True):
    """A Chroma client for the configured folder or server, with telemetry off; a missing folder is made only to create."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if settings.chroma_url:
        url = urlparse(settings.chroma_url if "://" in settings.chroma_url else f"http://{settings.chroma_url}")
        port = url.port or (443 if url.scheme == "https" else 8000)
        check_server_answers(settings, f"{url.scheme}://{url.hostname or '127.0.0.1'}:{port}", port)
        try:
            client = chromadb.HttpClient(
                host=url.hostname or "127.0.0.1", port=port, ssl=url.scheme == "https", settings=chroma_settings,
            )
        except Exception as exc:
            raise StoreError(
                f"Cannot reach the Chroma server at {settings.chroma_url} ({exc}). "
                f"Start it with `chroma run --path DIR --port {port}` or unset RAG_CHROMA_URL."
            ) from None
        session = getattr(getattr(client, "_server", None), "_session", None)
        if isinstance(session, httpx.Client):  # Chroma's client waits forever by default
            session.timeout = httpx.Timeout(settings.store_timeout, connect=settings.connect_timeout)
        return client
    if not create and not database_file(settings).is_file():
        raise StoreError(
            f"The store at {settings.store_dir} has no collection {settings.collection!r}. The folder has no {DATABASE}: "
            "run `python -m ingest` first (or `python -m ingest PATH` for your documents), or set RAG_STORE_DIR to "
            "where the store is."
        )
    try:
        settings.store_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"Cannot make the store folder {settings.store_dir} ({exc.strerror or exc}). Check RAG_STORE_DIR.") from None
    try:
        with chroma_call():
            return chromadb.PersistentClient(path=str(settings.store_dir), settings=chroma_settings)
    except Exception as exc:
        from chromadb.api.shared_system_client import SharedSystemClient

        SharedSystemClient.clear_system_cache()  # else this process keeps a half-made client for the folder
        raise store_error(exc, settings, "Opening") from None


def check_server_answers(settings: Settings, base: str, port: int) -> None:
    """Raise unless the Chroma server answers its heartbeat within the deadlines (a server that accepts and never
    answers would otherwise hang every command: Chroma's own client has no timeout)."""
    try:
        httpx.get(f"{base}/api/v2/heartbeat", timeout=httpx.Timeout(settings.store_timeout, connect=settings.connect_timeout))
    except httpx.TimeoutException as exc:
        if isinstance(exc, httpx.ConnectTimeout):
            waited = f"did not accept a connection within {settings.connect_timeout:g} s"
        else:
            waited = f"accepted the connection but did not answer within {settings.store_timeout:g} s (RAG_STORE_TIMEOUT)"
        raise StoreError(
            f"The Chroma server at {settings.chroma_url} {waited}. Check that it runs and is not stuck "
            f"(`chroma run --path DIR --port {port}`), or unset RAG_CHROMA_URL."
        ) from None
    except httpx.HTTPError as exc:
        raise StoreError(
            f"Cannot reach the Chroma server at {settings.chroma_url} ({type(exc).__name__}). "
            f"Start it with `chroma run --path DIR --port {port}` or unset RAG_CHROMA_URL."
        ) from None


def reset_store(settings: Settings):
    """A client whose collection is gone, to rebuild it; a damaged store's files are first moved aside, other files kept."""
    try:
        client = open_client(settings)
        if settings.collection in [c.name if hasattr(c, "name") else c for c in client.list_collections()]:
            client.delete_collection(settings.collection)
        return client
    except StoreDamaged:
        pass
    except StoreError:
        raise
    except Exception as exc:
        failure = store_error(exc, settings, "Resetting")
        if not isinstance(failure, StoreDamaged):
            raise failure from None
    move_damaged_aside(settings)
    return open_client(settings)


def move_damaged_aside(settings: Settings) -> Path:
    """Move Chroma's files (the database and its index folders) into damaged-<time>/ in the store; keep the rest."""
    from chromadb.api.shared_system_client import SharedSystemClient

    SharedSystemClient.clear_system_cache()
    aside = settings.store_dir / time.strftime("damaged-%Y%m%d-%H%M%S")
    aside.mkdir()
    for entry in settings.store_dir.iterdir():
        if entry.name.startswith(DATABASE) or (entry.is_dir() and is_index_folder(entry.name)):
            entry.rename(aside / entry.name)
    return aside


def is_index_folder(name: str) -> bool:
    """True for Chroma's per-collection index folders, named by a UUID."""
    parts = name.split("-")
    return [len(p) for p in parts] == [8, 4, 4, 4, 12] and all(c in "0123456789abcdef" for c in name.replace("-", ""))


VARIANT_KEY, FLOAT32, INT8 = "embedder_variant", "float32", "int8"  # a store without the key was embedded in float32


def store_location(settings: Settings) -> str:
    """Where the store lives, for messages."""
    return settings.chroma_url or str(settings.store_dir)


def open_collection(settings: Settings, embedder_name: str, dimension: int | None, *, create: bool, client=None,
                    variant: str | None = None):
    """The collection, created if asked, refusing one built with another embedder (its dimension and variant checked
    when given)."""
    client = client or open_client(settings)
    try:
        if create:
            collection = client.get_or_create_collection(
                settings.collection,
                embedding_function=None,
                metadata={"embedder": embedder_name, "dimension": dimension, "hnsw:space": "cosine"}
                | ({VARIANT_KEY: variant} if variant else {}),
            )
        else:
            collection = client.get_collection(settings.collection, embedding_function=None)
    except Exception as exc:
        message = str(exc).lower()
        if not create and ("does not exist" in message or "not found" in message):
            raise StoreError(
                f"The store at {store_location(settings)} has no collection {settings.collection!r}. "
                "Run `python -m ingest` first (or `python -m ingest PATH` for your documents)."
            ) from None
        raise store_error(exc, settings) from None
    try:
        check_embedder(collection, embedder_name, dimension, variant)
    except StoreError:
        raise
    except Exception as exc:
        raise store_error(exc, settings) from None
    return collection


def check_embedder(collection, embedder_name: str, dimension: int | None, variant: str | None = None) -> None:
    """Raise if the collection was built with a different embedder, or dimension or variant when given."""
    meta = collection.metadata or {}
    stored_name, stored_dim = meta.get("embedder"), meta.get("dimension")
    if stored_name is None:
        if dimension is not None:
            check_vector_size(collection, embedder_name, dimension)
        return
    if stored_name != embedder_name or (dimension is not None and int(stored_dim) != dimension):
        raise EmbedderMismatch(
            f"The store was built with embedder {stored_name!r} ({stored_dim} dims) but RAG_EMBED_MODEL is "
            f"{embedder_name!r}{'' if dimension is None else f' ({dimension} dims)'}. Rebuild it: `python -m ingest --reset PATH ...`, "
            f"or set RAG_EMBED_MODEL={stored_name}."
        )
    stored_variant = meta.get(VARIANT_KEY, FLOAT32)
    if variant is not None and stored_variant != variant:
        raise EmbedderMismatch(
            f"The store was embedded by the {stored_variant} variant of {stored_name!r} but RAG_EMBED_RUNTIME makes "
            f"{variant} vectors, and the two are not mixed in one store. Set RAG_EMBED_RUNTIME="
            f"{'onnx-int8' if stored_variant == INT8 else 'torch or onnx'}, or rebuild it: `python -m ingest --reset PATH ...`."
        )


def check_vector_size(collection, embedder_name: str, dimension: int) -> None:
    """Raise if a collection that does not name its embedder holds vectors of another size than the embedder's."""
    peek = collection.get(limit=1, include=["embeddings"])
    vectors = peek.get("embeddings")
    if vectors is not None and len(vectors) and len(vectors[0]) != dimension:
        raise EmbedderMismatch(
            f"The store's vectors have {len(vectors[0])} dimensions, but RAG_EMBED_MODEL {embedder_name!r} makes "
            f"{dimension}; the store does not say which embedder built it. Rebuild it: `python -m ingest --reset PATH ...`, "
            "or set RAG_EMBED_MODEL to the model that built it."
        )


class LiveCollection:
    """A collection whose view can be renewed: an embedded Chroma keeps a stale view of files another process changed."""

    def __init__(self, collection, settings: Settings | None = None, client=None):
        self.collection, self.settings, self.client = collection, settings, client

    def fresh(self):
        """The collection with its count and metadata read anew (enough to notice a change)."""
        return self.client.get_collection(self.collection.name, embedding_function=None) if self.client else self.collection

    def describe_failure(self, exc: Exception) -> str:
        """What went wrong with the store, and how to fix it when it is a server that is down."""
        if isinstance(exc, RagError):
            return str(exc)  # already said in the user's words
        if self.settings is not None and self.settings.chroma_url:
            return (
                f"the Chroma server at {self.settings.chroma_url} did not answer ({type(exc).__name__}). "
                "Check that it runs (`chroma run --path DIR --port PORT`) and that RAG_CHROMA_URL points at it."
            )
        if self.settings is not None:
            return str(store_error(exc, self.settings, "Reading"))
        return f"the store did not answer ({exc})."

    def reopen(self):
        """Drop this process's cached view of an embedded store and open the collection again."""
        if self.settings is not None and not self.settings.chroma_url:
            from chromadb.api.shared_system_client import SharedSystemClient

            SharedSystemClient.clear_system_cache()
            self.client = open_client(self.settings, create=False)
        self.collection = self.fresh()
        return self.collection


def batched(items: list, size: int):
    """Yield consecutive slices of at most size items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
