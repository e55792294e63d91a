"""kill -9 in the middle of `python -m ingest`, then a re-run: the store equals a clean run's, chunk for chunk."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import chromadb
from chromadb.api.shared_system_client import SharedSystemClient

from ingest.pipeline import IngestOptions, ingest
from rag.core.settings import Settings
from tests.test_ingest import without_seq

REPO = Path(__file__).resolve().parent.parent
WORDS = "river otter beaver heron kayak paddle canoe forest valley bridge harbour lantern meadow orchard".split()


def write_corpus(folder: Path, version: int) -> None:
    """60 Markdown files of a few chunks each; version 2 edits most, deletes five and adds five."""
    for i in range(60):
        path = folder / f"part{i % 4}" / f"page{i:02d}.md"
        if version == 2 and i >= 55:
            path.unlink(missing_ok=True)
            continue
        edited = version == 2 and i % 4 != 3
        body = "\n\n".join(
            " ".join(WORDS[(i + j + k) % len(WORDS)] for k in range(60)) + ("." if not edited else " edited.")
            for j in range(5)
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# Page {i}\n\n## Part {i % 4}\n\n{body}\n")
    if version == 2:
        for i in range(60, 65):
            (folder / "new").mkdir(exist_ok=True)
            (folder / "new" / f"page{i}.md").write_text(f"# Page {i}\n\nA new page about the {WORDS[i % len(WORDS)]}.\n")


def snapshot(store: Path) -> dict[str, tuple[str, dict]]:
    """Chunk ids with their text and metadata; every chunk's own vector must find it first (an intact index).

    Chroma caches each store's index per process; dropping that cache makes this read what is on disk now.
    """
    SharedSystemClient.clear_system_cache()
    collection = chromadb.PersistentClient(str(store)).get_collection("docs")
    got = collection.get(include=["documents", "metadatas", "embeddings"])
    found = collection.query(query_embeddings=[list(e) for e in got["embeddings"]], n_results=1)["ids"]
    assert [i for i, f in zip(got["ids"], found) if f != [i]] == [], "chunks their own vector does not find: a damaged index"
    return {i: (d, without_seq(m)) for i, d, m in zip(got["ids"], got["documents"], got["metadatas"])}


def writes(store: Path) -> int:
    """How many record writes Chroma has logged, read with sqlite so the test holds no Chroma client."""
    path = store / "chroma.sqlite3"
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as db:
            return db.execute("select coalesce(max(seq_id), 0) from embeddings_queue").fetchone()[0]
    except sqlite3.Error:
        return 0


def chunk_count(store: Path) -> int:
    """Chunks in the store, as a fresh client sees them (it replays Chroma's write log first)."""
    SharedSystemClient.clear_system_cache()
    return chromadb.PersistentClient(str(store)).get_collection("docs").count()


def run_and_kill(docs: Path, store: Path, sig: int = signal.SIGKILL) -> subprocess.Popen:
    """Start `python -m ingest` and send it sig as soon as it has written its first batch; SIGINT is Ctrl-C."""
    before = writes(store)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")} | {"RAG_STORE_DIR": str(store), "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-m", "ingest", str(docs)], cwd=store.parent, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if writes(store) > before:
            process.send_signal(sig)
            break
        time.sleep(0.05)
    process.wait(timeout=60)
    expected = 130 if sig == signal.SIGINT else -sig
    assert process.returncode == expected, f"the ingest ended before it could be stopped: {process.stderr.read()}"
    return process


def finish(docs: Path, store: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")} | {"RAG_STORE_DIR": str(store), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "ingest", str(docs)], cwd=store.parent, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr


def test_kill_9_mid_ingest_and_mid_update_then_rerun_equals_a_clean_run(tmp_path, embedder):
    docs, store = tmp_path / "docs", tmp_path / "store"
    write_corpus(docs, 1)
    clean = Settings(store_dir=tmp_path / "clean")
    ingest([docs], clean, embedder, IngestOptions())
    clean_v1 = snapshot(clean.store_dir)
    assert len(clean_v1) > 100

    run_and_kill(docs, store)
    assert 0 < chunk_count(store) < len(clean_v1)
    SharedSystemClient.clear_system_cache()
    report = ingest([docs], Settings(store_dir=store), embedder, IngestOptions())
    assert report.added and not report.skipped
    assert snapshot(store) == clean_v1

    write_corpus(docs, 2)
    fresh = Settings(store_dir=tmp_path / "fresh")
    ingest([docs], fresh, embedder, IngestOptions())
    clean_v2 = snapshot(fresh.store_dir)

    run_and_kill(docs, store)
    assert snapshot(store) != clean_v2
    finish(docs, store)
    assert snapshot(store) == clean_v2
