"""BM25 over per-chunk term counts, with the corpus statistics (IDF, average length) derived on demand.

bm25s bakes IDF and the average length into every stored score, so one added chunk changes them all.
Keeping the raw term counts instead makes an incremental update exact and cheap: the statistics are
recomputed from the counts in O(terms), and the scores equal bm25s's Lucene variant bit for bit.
"""
from __future__ import annotations

import itertools

import numpy as np
from scipy import sparse

K1, B = 1.2, 0.75


class TermCounts:
    """How often each vocabulary term occurs in each chunk: a chunks x terms sparse matrix and its vocabulary."""

    def __init__(self, matrix: sparse.csr_matrix, vocabulary: list[str], columns: sparse.csc_matrix | None = None):
        self.matrix, self.vocabulary, self.known_columns = matrix, vocabulary, columns

    @property
    def columns(self) -> sparse.csc_matrix:
        """The same counts stored by term, for scoring a query's terms (converted once)."""
        if self.known_columns is None:
            self.known_columns = self.matrix.tocsc()
            self.known_columns.sort_indices()
        return self.known_columns

    @classmethod
    def empty(cls) -> TermCounts:
        """No chunks, no terms."""
        return cls(sparse.csr_matrix((0, 0), dtype=np.float32), [])

    @classmethod
    def from_tokens(cls, tokens: list[list[str]], vocabulary: list[str] | None = None) -> TermCounts:
        """Count the tokens of each chunk, numbering new terms after the given vocabulary."""
        vocabulary = list(vocabulary or [])
        numbers = {term: number for number, term in enumerate(vocabulary)}
        for term in sorted(set().union(*tokens) - numbers.keys()):
            numbers[term] = len(vocabulary)
            vocabulary.append(term)
        flat = np.fromiter(map(numbers.__getitem__, itertools.chain.from_iterable(tokens)), np.int64)
        lengths = np.fromiter(map(len, tokens), np.int64, len(tokens))
        rows = np.repeat(np.arange(len(tokens)), lengths)
        matrix = sparse.csr_matrix(
            (np.ones(len(flat), np.float32), (rows, flat)), shape=(len(tokens), len(vocabulary)), dtype=np.float32
        )
        matrix.sum_duplicates()
        return cls(matrix, vocabulary)

    def __len__(self) -> int:
        return self.matrix.shape[0]

    def spliced(self, dropped: np.ndarray, slots: np.ndarray, tokens: list[list[str]]) -> TermCounts:
        """Without the chunks at positions dropped (ascending), and with the new chunks' counts inserted before
        remaining chunk slots[j] (ascending), over a vocabulary grown by their new terms: each count copied once."""
        new = TermCounts.from_tokens(tokens, self.vocabulary)
        m = self.matrix
        data, indices, lengths = m.data, m.indices, np.diff(m.indptr)
        if len(dropped):
            kept = np.ones(m.shape[0], bool)
            kept[dropped] = False
            entries = np.repeat(kept, lengths)
            data, indices, lengths = data[entries], indices[entries], lengths[kept]
        starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        new_lengths = np.diff(new.matrix.indptr)
        at = np.repeat(starts[slots], new_lengths)
        lengths = np.insert(lengths, slots, new_lengths)
        matrix = sparse.csr_matrix(
            (np.insert(data, at, new.matrix.data), np.insert(indices, at, new.matrix.indices),
             np.concatenate([[0], np.cumsum(lengths)])),
            shape=(len(lengths), len(new.vocabulary)),
        )
        return TermCounts(matrix, new.vocabulary)


class BM25:
    """Lucene-variant BM25 over a set of term counts: a (chunk, term) weight is computed when a query uses the term,
    in bm25s's arithmetic (float64 terms rounded to float32, float32 sums), from statistics that follow the counts
    exactly; nothing is computed per (chunk, term) up front, so a refreshed index is ready sooner."""

    def __init__(self, counts: TermCounts, k1: float = K1, b: float = B):
        matrix = counts.matrix
        chunks = matrix.shape[0]
        self.numbers = {term: number for number, term in enumerate(counts.vocabulary)}
        self.columns = counts.columns
        length = np.asarray(matrix.sum(axis=1), dtype=np.float64).ravel()  # whole counts: exact in any order
        average = float(length.sum()) / chunks if chunks and length.sum() else 1.0
        frequency = np.diff(self.columns.indptr).astype(np.float64)  # one stored count per chunk holding the term
        idf = np.log(1 + (chunks - frequency + 0.5) / (frequency + 0.5))
        self.idf = np.where(frequency > 0, idf, 0.0).astype(np.float32)
        self.frequency = frequency
        self.norm = k1 * ((1 - b) + b * length / average)
        self.chunks = chunks

    def frequency_of(self, token: str) -> float:
        """How many chunks contain the token (0 for a word the store has never seen)."""
        number = self.numbers.get(token)
        return 0.0 if number is None else float(self.frequency[number])

    def scores(self, tokens: list[str]) -> np.ndarray:
        """Every chunk's score for the query tokens (repeated tokens count again; unknown ones add nothing)."""
        scores = np.zeros(self.chunks, np.float32)
        indptr, indices, counts = self.columns.indptr, self.columns.indices, self.columns.data
        for token in tokens:
            number = self.numbers.get(token)
            if number is not None:
                start, end = indptr[number], indptr[number + 1]
                chunks, tf = indices[start:end], counts[start:end].astype(np.float64)
                scores[chunks] += (np.float64(self.idf[number]) * (tf / (self.norm[chunks] + tf))).astype(np.float32)
        return scores
