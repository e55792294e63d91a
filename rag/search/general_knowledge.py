"""Everyday general-knowledge questions (rag/general_questions.txt): how much a question reads like one, and how
close such unrelated questions come to a store's chunks.

The vectors of those questions for the default embedder ship beside them (`general_questions.npy`, float16);
for another embedder they are computed once per process. `python -m rag.general_knowledge` rewrites the file.
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np

from rag.core.settings import DEFAULT_EMBED_MODEL

QUESTIONS_FILE = Path(__file__).with_name("general_questions.txt")
VECTORS_FILE = Path(__file__).with_name("general_questions.npy")


def questions() -> list[str]:
    """The reference questions, without comments and blank lines."""
    lines = QUESTIONS_FILE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


@functools.lru_cache(maxsize=4)
def vectors(embedder) -> np.ndarray:
    """The unit vectors of the reference questions for this embedder (shipped for the default one)."""
    count = len(questions())
    if embedder.name == DEFAULT_EMBED_MODEL and VECTORS_FILE.is_file():
        shipped = np.load(VECTORS_FILE, allow_pickle=False).astype(np.float32)
        if shipped.shape == (count, embedder.dimension):
            return shipped
    return np.asarray(embedder.embed(questions(), batch_size=64), dtype=np.float32).reshape(count, -1)


UNRELATED_QUESTIONS = 4  # every 4th reference question sets a store's unrelated level
UNRELATED_CHUNKS = 20_000  # chunks sampled evenly from a larger store for it


def generality(reference: np.ndarray, query_vector) -> float:
    """The question's best cosine similarity to a reference question."""
    return float((reference @ np.asarray(query_vector, dtype=np.float32)).max(initial=0.0))


def unrelated_similarity(reference: np.ndarray, chunk_vectors: np.ndarray, rows: np.ndarray | None = None) -> float:
    """How close an unrelated question comes to these chunks (or the given rows of them): the median, over reference
    questions, of the best cosine any of the chunks reaches (a sample of at most UNRELATED_CHUNKS, taken evenly)."""
    rows = np.arange(len(chunk_vectors)) if rows is None else rows
    if not len(rows) or not len(reference):
        return 0.0
    sample = rows[:: -(-len(rows) // UNRELATED_CHUNKS)]
    best = (chunk_vectors[sample] @ reference[::UNRELATED_QUESTIONS].T).max(axis=0)
    return float(np.median(best))


def main() -> int:
    """Embed the reference questions with the default embedder and write them beside the text file."""
    from rag.search.embeddings import load_embedder

    embedder = load_embedder(DEFAULT_EMBED_MODEL)
    embedded = np.asarray(embedder.embed(questions(), batch_size=64), dtype=np.float16)
    np.save(VECTORS_FILE, embedded, allow_pickle=False)
    print(f"wrote {VECTORS_FILE} ({embedded.shape[0]} questions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
