"""Embedding speed per device, and whether each device gives the CPU's vectors: chunks/s on the CPU and on every GPU
torch sees (CUDA, Apple MPS), half precision and a larger batch on a GPU, as RAG_EMBED_DEVICE=auto runs them.

Runs as is on any machine; on one without a GPU it measures the CPU alone and says so. Run from the repo root:

    python -m bench.bench_embed_device [--chunks 2000]

Prints a line per device, then one JSON line. Target: on a GPU, every vector within 1e-3 cosine of the CPU's.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag.search.embeddings import Embedder  # noqa: E402

FAQ = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "faq" / "documents-with-ids.json"
SAMPLE_DIR = Path(__file__).resolve().parent.parent / "ingest" / "sample"
TOLERANCE = 1e-3


def texts(count: int) -> list[str]:
    """Chunk-sized texts: the FAQ's answers when the corpus is beside the repo, else the bundled guide's paragraphs."""
    if FAQ.is_file():
        found = [f"{r.get('question', '')}\n{r['text']}" for r in json.loads(FAQ.read_text()) if r.get("text")]
    else:
        found = [p for path in sorted(SAMPLE_DIR.glob("*.md")) for p in path.read_text().split("\n\n") if p.strip()]
    return (found * (count // len(found) + 1))[:count]


def devices() -> list[str]:
    """The CPU and every GPU kind torch sees here."""
    import torch

    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) + (["mps"] if torch.backends.mps.is_available() else [])


def measure(device: str, chunks: list[str]) -> tuple[dict, np.ndarray]:
    """Chunks/s on one device (after a warm-up batch), and the vectors."""
    embedder = Embedder("all-MiniLM-L6-v2", device)
    embedder.embed(chunks[: embedder.batch_size])
    started = time.perf_counter()
    vectors = np.asarray(embedder.embed(chunks), dtype=np.float32)
    seconds = time.perf_counter() - started
    return {"device": device, "batch": embedder.batch_size, "chunks_per_s": round(len(chunks) / seconds, 1),
            "seconds": round(seconds, 2)}, vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=2000)
    args = parser.parse_args()
    chunks = texts(args.chunks)
    results, cpu_vectors = [], None
    for device in devices():
        result, vectors = measure(device, chunks)
        if cpu_vectors is None:
            cpu_vectors = vectors
        else:
            cosine = np.sum(vectors * cpu_vectors, axis=1)
            result["max_cosine_gap_to_cpu"] = round(float(1.0 - cosine.min()), 6)
            result["within_tolerance"] = bool(1.0 - cosine.min() <= TOLERANCE)
            result["speedup_over_cpu"] = round(result["chunks_per_s"] / results[0]["chunks_per_s"], 2)
        results.append(result)
    print(f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs, Python {platform.python_version()}")
    for result in results:
        extra = "" if result["device"] == "cpu" else (
            f", {result['speedup_over_cpu']}x the CPU, max cosine gap to the CPU's vectors {result['max_cosine_gap_to_cpu']}"
            f" ({'within' if result['within_tolerance'] else 'OVER'} {TOLERANCE:g})")
        print(f"{result['device']:>4}: {result['chunks_per_s']} chunks/s (batch {result['batch']}, {len(chunks)} chunks){extra}")
    if len(results) == 1:
        print("no GPU visible to torch here: the CPU alone was measured")
    print(json.dumps({"chunks": len(chunks), "tolerance": TOLERANCE, "devices": results}))


if __name__ == "__main__":
    main()
