"""The store's ingest lock: two ingests (the CLI, the app's upload box) never write at once."""
from __future__ import annotations

import os
import re
from contextlib import contextmanager

from rag.core.errors import StoreError
from rag.core.settings import Settings

LOCK_NAME = "ingest.lock"


@contextmanager
def writer_lock(settings: Settings, active: bool):
    """Hold the store's ingest lock, so two ingests (the CLI, the app's upload box) never write at once.

    An flock is released by the kernel when its process dies, so a killed run leaves no stale lock.
    A Chroma server serialises writes itself and needs no lock.
    """
    if not active or settings.chroma_url:
        yield
        return
    try:
        import fcntl
    except ImportError:  # Windows: no flock; one ingest at a time is then up to the user
        yield
        return
    lock = settings.store_dir / LOCK_NAME
    try:
        settings.store_dir.mkdir(parents=True, exist_ok=True)
        handle = open(lock, "a+b")
    except OSError as exc:
        raise StoreError(
            f"Cannot open the ingest lock {lock} ({exc.strerror or exc}). Check RAG_STORE_DIR; if no ingest is running, "
            "remove that file or folder, then run again."
        ) from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = lock_holder(handle.read(64))
            raise StoreError(
                f"Another ingest ({holder}) is writing to the store at {settings.store_dir}. "
                "Wait for it to finish, then run again."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}".encode())
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def lock_holder(content: bytes) -> str:
    """Who holds the lock, as its file says ("pid 123"); anything else in it is not shown."""
    match = re.fullmatch(rb"pid (\d{1,10})", content.strip())
    return f"pid {match.group(1).decode()}" if match else "another process"
