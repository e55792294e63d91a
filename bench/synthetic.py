"""Synthetic stores for the scale benchmarks: random unit vectors and texts drawn from the FAQ's vocabulary.

Embedding a million chunks would take days on 2 cores and search cost does not depend on what the
vectors mean, so the vectors are given; the texts give BM25 a realistic term distribution. Chunks
carry the metadata an ingest writes (doc_id, doc_hash, n_chunks, ...) so a later ingest can update them.
"""
from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FAQ = ROOT.parent / "shared" / "data" / "faq"
CHUNKS_PER_DOC = 3


def faq_vocabulary() -> tuple[list[str], list[str]]:
    """The FAQ's words (with their frequencies) and its course names."""
    records = json.loads((FAQ / "documents-with-ids.json").read_text())
    return " ".join(r["text"] for r in records).split(), sorted({r["course"] for r in records})


def fill(collection, count: int, dimension: int, start: int = 0, batch: int = 5000, seed: int = 7) -> float:
    """Add chunks start..start+count to the collection; returns the seconds spent writing."""
    vocabulary, courses = faq_vocabulary()
    rng = np.random.default_rng(seed + start)
    words = random.Random(seed + start)
    seconds = 0.0
    for first in range(start, start + count, batch):
        size = min(batch, start + count - first)
        vectors = rng.standard_normal((size, dimension)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        ids, texts, metas = [], [], []
        for n in range(first, first + size):
            doc = n // CHUNKS_PER_DOC
            ids.append(f"d{doc}:{doc:012x}:{n % CHUNKS_PER_DOC}")
            texts.append(" ".join(words.choices(vocabulary, k=60)))
            metas.append({
                "doc_id": f"d{doc}", "title": f"Synthetic page {doc}", "headings": "", "course": courses[doc % len(courses)],
                "chunk_index": n % CHUNKS_PER_DOC, "n_chunks": CHUNKS_PER_DOC, "doc_hash": f"{doc:012x}",
                "source": f"/synthetic/d{doc}", "root": "/synthetic",
            })
        started = time.perf_counter()
        collection.add(ids=ids, embeddings=vectors, documents=texts, metadatas=metas)
        seconds += time.perf_counter() - started
    return seconds


def start_chroma_server(path: Path) -> tuple[subprocess.Popen, str]:
    """A `chroma run` on a free port, once its heartbeat answers."""
    import httpx

    sys.path.insert(0, str(ROOT))
    from tests.ollama_standin import unused_port

    port = unused_port()
    chroma = Path(sys.executable).parent / "chroma"
    process = subprocess.Popen(
        [str(chroma), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(600):
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1)
            return process, f"http://127.0.0.1:{port}"
        except httpx.TransportError:
            time.sleep(0.2)
    process.terminate()
    raise RuntimeError("chroma run did not start")
