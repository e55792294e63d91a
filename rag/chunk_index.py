"""An in-memory copy of a collection's chunks: exact vector search, BM25 keywords, filters."""
from __future__ import annotations

import json
import operator

import bm25s
import numpy as np
import Stemmer

from rag.bm25 import BM25, TermCounts

STEMMER = Stemmer.Stemmer("english")
ORDERINGS = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}


def keyword_text(text: str, metadata: dict) -> str:
    """What BM25 indexes for a chunk: its title, heading path and text."""
    return "\n".join(part for part in (metadata.get("title", ""), metadata.get("headings", ""), text) if part)


def tokenize(texts: list[str]) -> list[list[str]]:
    """Lower-cased, stemmed word tokens without English stop words."""
    return bm25s.tokenize(texts, stemmer=STEMMER, show_progress=False, return_ids=False)


def matches(metadata: dict, where: dict | None) -> bool:
    """Evaluate a Chroma metadata filter ($and, $or, $eq, $ne, $in, $nin, $gt, $gte, $lt, $lte) in Python."""
    if not where:
        return True
    for key, condition in where.items():
        if key == "$and":
            if not all(matches(metadata, part) for part in condition):
                return False
        elif key == "$or":
            if not any(matches(metadata, part) for part in condition):
                return False
        elif not compare(metadata.get(key), condition):
            return False
    return True


def compare(value, condition) -> bool:
    """One field's condition, a plain value meaning $eq."""
    if not isinstance(condition, dict):
        return value == condition
    name, operand = next(iter(condition.items()))
    if name == "$eq":
        return value == operand
    if name == "$ne":
        return value != operand
    if name == "$in":
        return value in operand
    if name == "$nin":
        return value not in operand
    try:
        return ORDERINGS[name](value, operand)
    except TypeError:
        return False


def chunk_tokens(texts: list[str], metadatas: list[dict]) -> list[list[str]]:
    """The BM25 tokens of each chunk."""
    return tokenize([keyword_text(t, m) for t, m in zip(texts, metadatas)])


class ChunkIndex:
    """Every chunk of a collection with its vector, BM25 over its text, and cached filter masks.

    Everything here derives from the chunk records (and their term counts, computed when not given),
    so an index built from updated records equals one built from scratch.
    """

    def __init__(
        self, ids: list[str], texts: list[str], metadatas: list[dict], vectors: np.ndarray, version: tuple,
        terms: TermCounts | None = None,
    ):
        self.ids, self.texts, self.metadatas, self.version = ids, texts, metadatas, version
        self.vectors = np.asarray(vectors, dtype=np.float32).reshape(len(ids), -1)
        self.terms = terms if terms is not None else TermCounts.from_tokens(chunk_tokens(texts, metadatas))
        self.bm25 = BM25(self.terms)
        self.masks: dict[str, np.ndarray] = {}

    def mask(self, where: dict | None) -> np.ndarray | None:
        """Which chunks pass the filter, cached per filter."""
        if not where:
            return None
        key = json.dumps(where, sort_keys=True)
        if key not in self.masks:
            self.masks[key] = np.fromiter((matches(m, where) for m in self.metadatas), bool, len(self.metadatas))
        return self.masks[key]

    def nearest(self, vector: list[float], n: int, where: dict | None = None) -> list[tuple[int, float]]:
        """Indices and cosine similarities of the n chunks nearest to a unit vector, among those passing the filter."""
        if not self.ids:
            return []
        scores = self.vectors @ np.asarray(vector, dtype=np.float32)
        mask = self.mask(where)
        if mask is not None:
            scores = np.where(mask, scores, -np.inf)
        return top(scores, n, lambda score: score > -np.inf)

    def keywords(self, query: str, n: int, where: dict | None = None) -> list[tuple[int, float]]:
        """Indices and BM25 scores of the top n chunks that pass the filter and share a word with query."""
        tokens = tokenize([query])[0]
        if not self.ids or not tokens:
            return []
        scores = self.bm25.scores(tokens)
        mask = self.mask(where)
        if mask is not None:
            scores = np.where(mask, scores, 0.0)
        return top(scores, n, lambda score: score > 0)


def top(scores: np.ndarray, n: int, keep) -> list[tuple[int, float]]:
    """The n best (index, score) pairs in descending order, keeping only scores that pass keep."""
    n = min(n, len(scores))
    best = np.argpartition(-scores, n - 1)[:n]
    return [(int(i), float(scores[i])) for i in best[np.argsort(-scores[best])] if keep(scores[i])]
