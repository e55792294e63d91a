"""Retrieval latency per query (query embedding included) at the FAQ's size and at 100,000 chunks,
in the embedded store and on a Chroma server (`chroma run`), with the write throughput of each.

The FAQ store is built from ../shared/data/faq with the real embedder. The 100,000-chunk store is
synthetic: random unit vectors (embedding 100k chunks would take an hour on 2 cores, and search cost
does not depend on what the vectors mean) and texts drawn from the FAQ's vocabulary, so BM25 sees a
realistic term distribution. Its write throughput excludes embedding (bench_ingest.py measures that).
Prints one line per store and a final JSON line.
"""
from __future__ import annotations

import csv
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest.pipeline import IngestOptions, ingest  # noqa: E402
from ingest.loaders import RecordFields  # noqa: E402
from rag.search.embeddings import load_embedder  # noqa: E402
from rag.search.loader import open_retriever  # noqa: E402
from rag.core.settings import Settings  # noqa: E402
from rag.store.chroma import open_collection  # noqa: E402
from synthetic import start_chroma_server  # noqa: E402  (bench/ is on the path when run as a script)

FAQ = ROOT.parent / "shared" / "data" / "faq"
QUERIES = 300
SYNTHETIC_CHUNKS = 100_000


def latencies(retriever, questions: list[tuple[str, dict | None]]) -> list[float]:
    """Milliseconds per search, after one warm-up search."""
    retriever.search("warm up", 5)
    times = []
    for question, where in questions:
        started = time.perf_counter()
        retriever.search(question, 5, where)
        times.append((time.perf_counter() - started) * 1000)
    return times


def summary(name: str, chunks: int, times: list[float]) -> dict:
    """p50/p95 of the latencies, printed and returned."""
    result = {
        "store": name,
        "chunks": chunks,
        "p50_ms": round(statistics.median(times), 2),
        "p95_ms": round(statistics.quantiles(times, n=20)[18], 2),
    }
    print(f"{name}: {chunks} chunks, p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms over {len(times)} queries")
    return result


def synthetic_store(settings: Settings, embedder, vocabulary: list[str], courses: list[str]) -> int:
    """Fill a collection with random unit vectors and FAQ-vocabulary texts."""
    collection = open_collection(settings, embedder.name, embedder.dimension, create=True)
    rng = np.random.default_rng(7)
    words = random.Random(7)
    batch = 5000
    for start in range(0, SYNTHETIC_CHUNKS, batch):
        vectors = rng.standard_normal((batch, embedder.dimension)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        ids = [f"s{start + i}" for i in range(batch)]
        texts = [" ".join(words.choices(vocabulary, k=60)) for _ in ids]
        metas = [
            {"doc_id": f"d{(start + i) // 3}", "title": texts[i][:40], "course": courses[(start + i) % len(courses)]}
            for i in range(batch)
        ]
        collection.add(ids=ids, embeddings=vectors.tolist(), documents=texts, metadatas=metas)
    return collection.count()


def big_store(name: str, settings: Settings, embedder, vocabulary, courses, questions) -> dict:
    """Write the synthetic corpus into one store, then time the questions on it."""
    started = time.perf_counter()
    count = synthetic_store(settings, embedder, vocabulary, courses)
    seconds = time.perf_counter() - started
    print(f"{name}: {count} chunks written in {seconds:.0f} s ({count / seconds:.0f} chunks/s)")
    retriever = open_retriever(settings)
    started = time.perf_counter()
    retriever.index.get()
    print(f"{name}: chunk index built in {time.perf_counter() - started:.1f} s")
    result = summary(name, count, latencies(retriever, questions))
    result["write_chunks_per_s"] = round(count / seconds)
    return result


def main() -> None:
    """Build every store in a temporary folder and time the same questions on each."""
    rows = list(csv.DictReader((FAQ / "ground-truth-dev.csv").open()))
    sample = random.Random(1).sample(rows, QUERIES)
    questions = [(r["question"], {"course": r["course"]}) for r in sample]
    embedder = load_embedder("all-MiniLM-L6-v2")
    results = []
    with tempfile.TemporaryDirectory() as folder:
        faq = Settings(store_dir=Path(folder) / "faq")
        ingest([FAQ / "documents-with-ids.json"], faq, embedder, IngestOptions(fields=RecordFields(title_field="question")))
        retriever = open_retriever(faq)
        results.append(summary("faq", retriever.collection.count(), latencies(retriever, questions)))
        records = json.loads((FAQ / "documents-with-ids.json").read_text())
        vocabulary = " ".join(r["text"] for r in records).split()
        courses = sorted({r["course"] for r in records})
        results.append(big_store("embedded-100k", Settings(store_dir=Path(folder) / "big"), embedder, vocabulary, courses, questions))
        if "--no-server" not in sys.argv:
            server, url = start_chroma_server(Path(folder) / "server")
            try:
                results.append(big_store("server-100k", Settings(chroma_url=url), embedder, vocabulary, courses, questions))
            finally:
                server.terminate()
    print(json.dumps({"retrieval_latency": results, "targets_ms": {"faq_p50": 25, "100k_p50": 80}}))


if __name__ == "__main__":
    main()
