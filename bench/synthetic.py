"""Synthetic stores for the scale benchmarks: random unit vectors and texts drawn from the FAQ's vocabulary.

`python bench/synthetic.py --store DIR --chunks N [--hnsw cheap]` fills (or tops up) an embedded store,
printing the write rate every 50,000 chunks.

Embedding a million chunks would take days on 2 cores and search cost does not depend on what the
vectors mean, so the vectors are given; the texts give BM25 a realistic term distribution. Chunks
carry the metadata an ingest writes (doc_id, doc_hash, n_chunks, ...) so a later ingest can update them.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FAQ = ROOT.parent / "shared" / "data" / "faq"
CHUNKS_PER_DOC = 3
# Chroma's defaults are ef_construction 100 and max_neighbors 16; the product never queries Chroma's HNSW (its search
# is an exact scan of its own index), so a benchmark store may build a cheaper graph to be written faster
CHEAP_HNSW = {"space": "cosine", "ef_construction": 16, "max_neighbors": 8}


def faq_vocabulary() -> tuple[list[str], list[str]]:
    """The FAQ's words (with their frequencies) and its course names."""
    records = json.loads((FAQ / "documents-with-ids.json").read_text())
    return " ".join(r["text"] for r in records).split(), sorted({r["course"] for r in records})


def create_collection(client, settings, embedder_name: str, dimension: int, hnsw: str):
    """The benchmark's collection with the metadata an ingest gives it; hnsw "cheap" builds Chroma's graph with CHEAP_HNSW."""
    if hnsw == "default":
        sys.path.insert(0, str(ROOT))
        from rag.store.chroma import open_collection

        return open_collection(settings, embedder_name, dimension, create=True, client=client)
    return client.get_or_create_collection(settings.collection, embedding_function=None,
                                           metadata={"embedder": embedder_name, "dimension": dimension},
                                           configuration={"hnsw": CHEAP_HNSW})


def fill(collection, count: int, dimension: int, start: int = 0, batch: int = 5000, seed: int = 7,
         report: int = 0) -> float:
    """Add chunks start..start+count to the collection; returns the seconds spent writing (a line every report chunks)."""
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
        if report and (first + size - start) % report < batch:
            print(f"{first + size} chunks; {(first + size - start) / seconds:.0f} chunks/s so far; load average "
                  f"{os.getloadavg()[0]:.1f}", flush=True)
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--chunks", type=int, required=True, help="total chunks wanted in the store")
    parser.add_argument("--hnsw", choices=["default", "cheap"], default="default")
    args = parser.parse_args()
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    sys.path.insert(0, str(ROOT))
    from rag.core.settings import DEFAULT_EMBED_MODEL, Settings
    from rag.store.chroma import open_client

    settings = Settings(store_dir=args.store)
    client = open_client(settings)
    collection = create_collection(client, settings, DEFAULT_EMBED_MODEL, 384, args.hnsw)
    have = collection.count()
    batch = min(5000, client.get_max_batch_size())
    print(f"store {args.store}: {have} chunks, writing {max(0, args.chunks - have)} in batches of {batch} "
          f"(hnsw {args.hnsw}); load average {os.getloadavg()[0]:.1f}", flush=True)
    if args.chunks > have:
        seconds = fill(collection, args.chunks - have, 384, start=have, batch=batch, report=50_000)
        print(f"wrote {args.chunks - have} chunks in {seconds:.0f} s: {(args.chunks - have) / seconds:.0f} chunks/s; "
              f"load average {os.getloadavg()[0]:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
