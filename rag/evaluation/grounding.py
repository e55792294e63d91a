"""Is an answer grounded? Its sentences, their [n] markers, and whether the passages they cite support them.

A sentence is supported when the cosine similarity between its embedding (markers stripped) and the embedding
of some part of a passage it cites (the whole passage, one of its sentences, or two consecutive ones) reaches
SUPPORT_THRESHOLD. A sentence that cites nothing, or only numbers the model was
not given, is unsupported. The threshold was calibrated by bench/calibrate_grounding.py on the bundled guide
and the FAQ corpus (see README, "Choosing a model").
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rag.search.embeddings import Embedder
from rag.chat.sentences import split_sentences
from rag.chat.prompt import Citation

# Document sentences with a third of their words left out, scored against their own passage (supported) and against
# the best-matching passage of another document (a plausible wrong citation): 0.72 separates them best over the
# guide and 300 FAQ records (bench/calibrate_grounding.py; accepted 87%/78% of supported, 6%/14% of wrong ones).
SUPPORT_THRESHOLD = 0.72


@dataclass(frozen=True)
class Grounding:
    """How many of an answer's sentences a cited passage supports."""

    supported: int
    sentences: int


def passage_parts(text: str) -> list[str]:
    """The parts of a passage a sentence is compared with: the whole, each sentence, each two consecutive ones."""
    sentences = [s.text for s in split_sentences(text)]
    pairs = [f"{a} {b}" for a, b in zip(sentences, sentences[1:])]
    return [text, *sentences, *pairs] if len(sentences) > 1 else [text]


def support_scores(sentences: list[str], passages: list[str], embedder: Embedder) -> np.ndarray:
    """For each sentence and passage, the best cosine similarity between the sentence and a part of the passage."""
    parts = [passage_parts(p) for p in passages]
    flat = [part for group in parts for part in group]
    vectors = np.asarray(embedder.embed(sentences + flat), dtype=np.float32)
    scores = vectors[: len(sentences)] @ vectors[len(sentences):].T
    bounds = np.cumsum([0] + [len(group) for group in parts])
    return np.stack([scores[:, a:b].max(axis=1) for a, b in zip(bounds, bounds[1:])], axis=1)


def grounding(answer: str, citations: list[Citation], embedder: Embedder, threshold: float = SUPPORT_THRESHOLD) -> Grounding:
    """Count the answer's sentences that reach the threshold against at least one passage they cite."""
    sentences = split_sentences(answer)
    passages = {c.number: c.text for c in citations}
    citing = [s for s in sentences if s.cited & passages.keys()]
    if not citing:
        return Grounding(0, len(sentences))
    numbers = sorted(set().union(*(s.cited & passages.keys() for s in citing)))
    scores = support_scores([s.text for s in citing], [passages[n] for n in numbers], embedder)
    column = {n: i for i, n in enumerate(numbers)}
    supported = sum(
        max(scores[row, column[n]] for n in sentence.cited if n in column) >= threshold
        for row, sentence in enumerate(citing)
    )
    return Grounding(int(supported), len(sentences))
