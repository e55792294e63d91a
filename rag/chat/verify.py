"""Verified answers: each sentence checked against the passages it cites and the other passages sent with it.

A passage supports a sentence when every number, date and name of the sentence appears in it, the passage sentence
most like it negates as it does, and the sentence's best cosine similarity to a passage sentence plus
OVERLAP_WEIGHT times the share of its content words found in the passage reaches SUPPORT_SCORE. The passages'
sentences are embedded once (while the model writes, on the page); the check embeds only the answer's sentences.
Calibrated by bench/calibrate_verify.py on the bundled guide and bench/longform (see README, "Verified answers").
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from rag.chat.prompt import Citation
from rag.chat.refusals import says_not_answered
from rag.chat.sentence_facts import Facts, facts_of, word_set
from rag.chat.sentences import split_sentences
from rag.search.embeddings import Embedder

# bench/calibrate_verify.py: the lowest score that flags 92% of wrong-document sentences on the documents tuned on.
SUPPORT_SCORE = 1.06
OVERLAP_WEIGHT = 0.5
MIN_WORDS = 3  # shorter lines ("Steps:", "Yes.") state nothing to check
SOFT_BREAK = re.compile(r"(?<=\S)[ \t]*\n(?![ \t]*(?:\n|[-*+•>#|`]|\d+[.)]\s))[ \t]*")  # a line wrapped mid-sentence
WHAT_WAS_CHECKED = ("Checked against every passage sent to the model: wording (embedding similarity to each passage "
                    "sentence), shared content words, and the numbers, dates, names and negations it states.")


@dataclass(frozen=True)
class Evidence:
    """How one passage bears on one sentence."""

    similarity: float  # best cosine similarity to one of the passage's sentences
    overlap: float  # share of the sentence's content words found in the passage
    missing: bool  # a number, date or name of the sentence is not in the passage
    negation_differs: bool  # the closest passage sentence negates and the sentence does not, or the reverse
    quote: int  # the index of the closest passage sentence

    def score(self, weight: float = OVERLAP_WEIGHT) -> float:
        """Similarity and overlap combined."""
        return self.similarity + weight * self.overlap

    def supports(self, threshold: float = SUPPORT_SCORE, weight: float = OVERLAP_WEIGHT) -> bool:
        """True when the passage states what the sentence says."""
        return not self.missing and not self.negation_differs and self.score(weight) >= threshold


@dataclass(frozen=True)
class SentenceCheck:
    """One checked sentence: the passages it cites, whether one of them supports it, which passage supports it best
    (cited or not, None for none) and that passage's matching sentence; end is its offset in the answer."""

    text: str
    cites: tuple[int, ...]
    supported: bool
    found_in: int | None
    quote: str | None
    end: int
    quotes: tuple[tuple[int, str], ...] = ()  # (passage number, its matching sentence) for every supporting passage

    @property
    def wrong_citation(self) -> bool:
        """Found in a passage it does not cite, and in none it cites."""
        return not self.supported and self.found_in is not None

    def as_json(self) -> dict:
        """The sentence as `rag.ask --json` and the saved conversation hold it."""
        return {"text": self.text, "cites": list(self.cites), "supported": self.supported, "found_in": self.found_in,
                "quote": self.quote}


@dataclass(frozen=True)
class SourceSentences:
    """The passages sent to the model, split into sentences and embedded, ready to check answers against."""

    numbers: tuple[int, ...]
    sentences: tuple[str, ...]
    owners: tuple[np.ndarray, ...]  # the indices of each passage's sentences
    vectors: np.ndarray
    negated: tuple[bool, ...]
    facts: tuple[Facts, ...]
    words: tuple[frozenset[str], ...]


def passage_sentences(text: str) -> list[str]:
    """A passage's sentences, lines wrapped in the middle of a sentence joined again."""
    return [s.text for s in split_sentences(SOFT_BREAK.sub(" ", text))] or [text]


def prepare_sources(citations: list[Citation], embedder: Embedder) -> SourceSentences:
    """Split and embed the passages' sentences (done while the answer is written)."""
    sentences: list[str] = []
    owners = []
    for citation in citations:
        parts = passage_sentences(citation.text)
        owners.append(np.arange(len(sentences), len(sentences) + len(parts)))
        sentences += parts
    vectors = np.asarray(embedder.embed_on_one_thread(sentences), dtype=np.float32).reshape(len(sentences), -1)
    return SourceSentences(tuple(c.number for c in citations), tuple(sentences), tuple(owners), vectors,
                           tuple(facts_of(s).negated for s in sentences),
                           tuple(facts_of(c.text) for c in citations), tuple(word_set(c.text) for c in citations))


def evidence(facts: Facts, similarities: np.ndarray, sources: SourceSentences, passage: int) -> Evidence:
    """How one passage bears on a sentence, given the sentence's similarities to every passage sentence."""
    mine = sources.owners[passage]
    best = int(mine[np.argmax(similarities[mine])])
    held = sources.facts[passage]
    overlap = len(facts.stems & held.stems) / len(facts.stems) if facts.stems else 0.0
    missing = bool(facts.numbers - held.numbers) or bool(facts.names - sources.words[passage])
    return Evidence(float(similarities[best]), overlap, missing, facts.negated != sources.negated[best], best)


def checkable(text: str) -> bool:
    """A sentence that states something: a few words, not 'the documents do not answer'."""
    return len(text.split()) >= MIN_WORDS and not says_not_answered(text)


def check_answer(answer: str, sources: SourceSentences, embedder: Embedder) -> list[SentenceCheck]:
    """Every sentence of the answer that states something, checked against the passages."""
    sentences = [s for s in split_sentences(answer) if checkable(s.text)]
    if not sentences:
        return []
    vectors = np.asarray(embedder.embed_on_one_thread([s.text for s in sentences]), dtype=np.float32)
    similarities = vectors @ sources.vectors.T if len(sources.sentences) else np.zeros((len(sentences), 0))
    checks = []
    for row, sentence in enumerate(sentences):
        facts = facts_of(sentence.text)
        found = {sources.numbers[p]: evidence(facts, similarities[row], sources, p) for p in range(len(sources.numbers))}
        supporting = {n: e for n, e in found.items() if e.supports()}
        best = max(supporting, key=lambda n: supporting[n].score(), default=None)
        quotes = tuple((n, sources.sentences[e.quote]) for n, e in supporting.items())
        checks.append(SentenceCheck(
            sentence.text, tuple(sorted(sentence.cited)), bool(sentence.cited & supporting.keys()), best,
            dict(quotes).get(best), sentence.end, quotes))
    return checks


def check_turn(answer: str, citations: list[Citation], embedder: Embedder) -> list[SentenceCheck]:
    """The answer's sentences checked against the passages sent with it; none when it states nothing to check."""
    if not citations or not any(checkable(s.text) for s in split_sentences(answer)):
        return []
    return check_answer(answer, prepare_sources(citations, embedder), embedder)


def summary_line(checks: list[SentenceCheck]) -> str:
    """'4 of 5 sentences found in their sources'."""
    found = sum(c.supported for c in checks)
    return f"{found} of {len(checks)} sentence{'s' if len(checks) != 1 else ''} found in their sources"
