"""An in-memory copy of a collection's chunks: exact vector search, BM25 keywords, filters."""
from __future__ import annotations

import json
import math
import operator
import re
from dataclasses import dataclass

import bm25s
import numpy as np
import Stemmer
from scipy import sparse

from rag.search import general_knowledge
from rag.search.bm25 import BM25, TermCounts

STEMMER = Stemmer.Stemmer("english")
ORDERINGS = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}
BM25_K1 = 0.9
BM25_B = 0.4
IDENTIFIER = re.compile(r"\b(?=\w*(?:[a-z0-9][A-Z]|[A-Z][A-Z][a-z]|[A-Za-z0-9]_[A-Za-z0-9]))\w+")  # snake_case, camelCase, HTTPServer
CASE_CHANGE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def keyword_text(text: str, metadata: dict) -> str:
    """What BM25 indexes for a chunk: its title, heading path and text."""
    return "\n".join(part for part in (metadata.get("title", ""), metadata.get("headings", ""), text) if part)


def tokenize(texts: list[str]) -> list[list[str]]:
    """Lower-cased, stemmed word tokens without English stop words."""
    return bm25s.tokenize(texts, stemmer=STEMMER, show_progress=False, return_ids=False)


def with_identifier_words(text: str) -> str:
    """Text with the words of each identifier after it: "route_handler" -> "route_handler route handler"."""
    return IDENTIFIER.sub(lambda match: f"{match[0]} {' '.join(identifier_words(match[0]))}", text)


def identifier_words(identifier: str) -> list[str]:
    """The words an identifier joins, at underscores and case changes."""
    return [word for part in identifier.split("_") for word in CASE_CHANGE.split(part) if word]


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


def passing(metadatas: list[dict], where: dict) -> np.ndarray:
    """Which of the metadatas pass the filter, as a boolean array."""
    return np.fromiter((matches(m, where) for m in metadatas), bool, len(metadatas))


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


@dataclass
class Derived:
    """What search needs beyond the chunk records and their term counts, computed from them alone."""

    doc_of: np.ndarray
    doc_ids: list[str]
    doc_vectors: np.ndarray
    by_doc: np.ndarray
    bounds: np.ndarray
    in_order: bool

    def chunks_of(self, doc: int) -> np.ndarray:
        """The positions of a document's chunks, ascending."""
        return self.by_doc[self.bounds[doc]:self.bounds[doc + 1]]

    def best_of_each(self, values: np.ndarray) -> np.ndarray:
        """Per document, the largest of its chunks' values."""
        if not self.doc_ids:
            return np.zeros(0, values.dtype)
        return np.maximum.reduceat(values if self.in_order else values[self.by_doc], self.bounds[:-1])


def derive(metadatas: list[dict], vectors: np.ndarray) -> Derived:
    """Each chunk's document, the chunks grouped by document, and the document vectors (the normalised mean of
    their chunks' vectors)."""
    positions: dict[str, int] = {}
    doc_of = np.fromiter((positions.setdefault(m["doc_id"], len(positions)) for m in metadatas), np.int64, len(metadatas))
    in_order = bool(np.all(doc_of[1:] >= doc_of[:-1]))
    by_doc = np.arange(len(doc_of)) if in_order else np.argsort(doc_of, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(doc_of, minlength=len(positions)))])
    membership = sparse.csr_matrix((np.ones(len(doc_of), np.float32), by_doc, bounds), shape=(len(positions), len(doc_of)))
    doc_vectors = np.asarray(membership @ vectors, dtype=np.float32)  # each document's chunks summed in chunk order
    doc_vectors /= np.maximum(np.linalg.norm(doc_vectors, axis=1, keepdims=True), 1e-12)
    return Derived(doc_of, list(positions), doc_vectors, by_doc, bounds, in_order)


def chunk_tokens(texts: list[str], metadatas: list[dict]) -> list[list[str]]:
    """The BM25 tokens of each chunk; in source code (a chunk with a language), identifiers also give their words.

    Prose is left as it was: splitting its identifiers too cost 0.004 MRR on the FAQ dev set. A question is never
    split: "route handler" matches the words of route_handler, "route_handler" the whole identifier, kept as well.
    """
    return tokenize([
        with_identifier_words(keyword_text(t, m)) if m.get("language") else keyword_text(t, m) for t, m in zip(texts, metadatas)
    ])


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
        self.vectors = np.asarray(vectors, dtype=np.float32).reshape(len(ids), -1) if ids else np.zeros((0, 0), np.float32)
        self.terms = terms if terms is not None else TermCounts.from_tokens(chunk_tokens(texts, metadatas))
        self.bm25 = BM25(self.terms, BM25_K1, BM25_B)
        self.derived = derive(metadatas, self.vectors)
        self.masks: dict[str, np.ndarray] = {}
        self.unrelated: dict[str, float] = {}

    def mask(self, where: dict | None) -> np.ndarray | None:
        """Which chunks pass the filter, cached per filter."""
        if not where:
            return None
        key = json.dumps(where, sort_keys=True)
        if key not in self.masks:
            self.masks[key] = passing(self.metadatas, where)
        return self.masks[key]

    def fields(self) -> set[str]:
        """Every metadata field some chunk has."""
        return {key for metadata in self.metadatas for key in metadata}

    def values_of(self, field: str) -> set:
        """The values a metadata field takes across the chunks."""
        return {metadata[field] for metadata in self.metadatas if field in metadata}

    def similarities(self, vector: list[float], where: dict | None = None) -> np.ndarray:
        """Cosine similarity of every chunk to a unit vector; -inf for chunks the filter excludes."""
        scores = self.vectors @ np.asarray(vector, dtype=np.float32)
        mask = self.mask(where)
        return scores if mask is None else np.where(mask, scores, -np.inf)

    def unrelated_similarity(self, reference: np.ndarray, where: dict | None = None) -> float:
        """How close everyday questions come to the chunks the filter passes (general_knowledge), cached per filter."""
        key = json.dumps(where, sort_keys=True)
        if key not in self.unrelated:
            mask = self.mask(where)
            rows = None if mask is None else np.flatnonzero(mask)
            self.unrelated[key] = general_knowledge.unrelated_similarity(reference, self.vectors, rows)
        return self.unrelated[key]

    def known_share(self, query: str) -> float:
        """The share of the question's keywords that occur somewhere in the store (0 for a question without any)."""
        tokens = tokenize([query])[0]
        return sum(t in self.bm25.numbers for t in tokens) / len(tokens) if tokens else 0.0

    def keyword_scores(self, query: str, where: dict | None = None) -> tuple[np.ndarray, float]:
        """BM25 score of every chunk (0 where the filter excludes it) and the best score the query could reach.

        The best reachable score counts every query word, found in the store or not, at the rarity of a
        word seen nowhere: a score divided by it is the share of the question's keywords a chunk matches.
        """
        tokens = tokenize([query])[0]
        if not self.ids or not tokens:
            return np.zeros(len(self.ids)), 0.0
        scores = self.bm25.scores(tokens)
        mask = self.mask(where)
        if mask is not None:
            scores = np.where(mask, scores, 0.0)
        frequencies = (self.bm25.frequency_of(t) for t in tokens)
        reachable = sum(math.log(1 + (len(self.ids) - f + 0.5) / (f + 0.5)) for f in frequencies) * (BM25_K1 + 1)
        return scores, reachable
