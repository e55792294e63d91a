"""Retrieval latency per query (query embedding included) at the FAQ's size and at 100,000 chunks,
in the embedded store and on a Chroma server (`chroma run`), with the write throughput of each.
`python bench/bench_retrieval.py [--runtime torch|onnx|onnx-int8] [--faq-only] [--no-server]`

On the FAQ it also breaks one question's time down into its steps (tokenise, encode, filter mask, BM25,
dense scan, the floor's figures, fusion and ranking, the floor's check), medians over repeats of the same question.

The FAQ store is built from ../shared/data/faq with the real embedder. The 100,000-chunk store is
synthetic: random unit vectors (embedding 100k chunks would take an hour on 2 cores, and search cost
does not depend on what the vectors mean) and texts drawn from the FAQ's vocabulary, so BM25 sees a
realistic term distribution. Its write throughput excludes embedding (bench_ingest.py measures that).
Prints one line per store and a final JSON line.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
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
from rag.core.question_words import is_vague  # noqa: E402
from rag.search import general_knowledge  # noqa: E402
from rag.search.embeddings import load_embedder  # noqa: E402
from rag.search.retrieval import is_relevant, rank_documents, score_chunks  # noqa: E402
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


def timed(step, repeats: int) -> float:
    """Median milliseconds of step() over repeats, after one call to warm it."""
    step()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 3)


def breakdown(retriever, question: str, where: dict | None, repeats: int = 200) -> dict:
    """One question's time by step, each step timed on its own (as retrieval.score_chunks and rank_documents run them)."""
    index, embedder = retriever.index.get(), retriever.embedder
    vector = embedder.embed_query(question)
    reference = general_knowledge.vectors(embedder)
    keyword, reachable = index.keyword_scores(question, where)
    mask = index.mask(where)
    similarity = index.similarities(vector, where)
    scores = score_chunks(index, vector, question, where, reference)
    docs = rank_documents(index, scores, retriever.dense_weight, 5)
    steps = {
        "tokenise": timed(lambda: embedder.word_pieces.encode(question), repeats),
        "embed question (tokenise included)": timed(lambda: embedder.embed_query(question), repeats),
        "filter mask": timed(lambda: index.mask(where), repeats),
        "BM25": timed(lambda: index.keyword_scores(question, where), repeats),
        "dense scan": timed(lambda: (index.similarities(vector, where),
                                     index.derived.doc_vectors @ np.asarray(vector, dtype=np.float32)), repeats),
        "floor figures": timed(lambda: (float(similarity[mask].mean()), general_knowledge.generality(reference, vector),
                                        index.unrelated_similarity(reference, where), index.known_share(question),
                                        is_vague(question)), repeats),
        "fusion and ranking": timed(lambda: rank_documents(index, scores, retriever.dense_weight, 5), repeats),
        "floor check": timed(lambda: is_relevant(docs, 0.07), repeats),
        "whole search": timed(lambda: retriever.search(question, 5, where), repeats),
    }
    assert len(keyword) == len(index.ids) and reachable >= 0
    steps["encode (embed less tokenise)"] = round(steps["embed question (tokenise included)"] - steps["tokenise"], 3)
    print(f"faq, one question ({question!r}, where {where}), median ms over {repeats}:")
    for name, ms in steps.items():
        print(f"  {name}: {ms} ms")
    return steps


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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", choices=["torch", "onnx", "onnx-int8"], default="torch", help="the embedder's runtime")
    parser.add_argument("--faq-only", action="store_true", help="skip the 100,000-chunk stores")
    parser.add_argument("--no-server", action="store_true", help="skip the Chroma server")
    options = parser.parse_args()
    rows = list(csv.DictReader((FAQ / "ground-truth-dev.csv").open()))
    sample = random.Random(1).sample(rows, QUERIES)
    questions = [(r["question"], {"course": r["course"]}) for r in sample]
    embedder = load_embedder("all-MiniLM-L6-v2", runtime=options.runtime)
    print(f"runtime {options.runtime}, load {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    results = []
    with tempfile.TemporaryDirectory() as folder:
        faq = Settings(store_dir=Path(folder) / "faq", embed_runtime=options.runtime)
        ingest([FAQ / "documents-with-ids.json"], faq, embedder, IngestOptions(fields=RecordFields(title_field="question")))
        retriever = open_retriever(faq)
        steps = breakdown(retriever, *questions[0])
        results.append(summary("faq", retriever.collection.count(), latencies(retriever, questions)) | {"breakdown_ms": steps})
        if options.faq_only:
            print(json.dumps({"retrieval_latency": results, "runtime": options.runtime}))
            return
        records = json.loads((FAQ / "documents-with-ids.json").read_text())
        vocabulary = " ".join(r["text"] for r in records).split()
        courses = sorted({r["course"] for r in records})
        results.append(big_store("embedded-100k", Settings(store_dir=Path(folder) / "big"), embedder, vocabulary, courses, questions))
        if not options.no_server:
            server, url = start_chroma_server(Path(folder) / "server")
            try:
                results.append(big_store("server-100k", Settings(chroma_url=url), embedder, vocabulary, courses, questions))
            finally:
                server.terminate()
    print(json.dumps({"retrieval_latency": results, "targets_ms": {"faq_p50": 25, "100k_p50": 80}}))


if __name__ == "__main__":
    main()
