"""Retrieval metrics for labelled questions: labels `doc` or `doc#Heading`, hit rate, MRR, nDCG@10, recall@K."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from rag.search.retrieval import RetrievedDoc

NDCG_DEPTH = 10
LINK = re.compile(r"\[([^\]]*)\](?:\([^)]*\)|\[[^\]]*\])")


@dataclass(frozen=True)
class Label:
    """One relevant document, or one section of it when a heading is given."""

    doc_id: str
    heading: str | None = None


def parse_labels(cell: str) -> list[Label]:
    """Labels from an id cell: several separated by ';', each `doc_id` or `doc_id#Heading`."""
    labels = []
    for part in cell.split(";"):
        doc_id, _, heading = part.strip().partition("#")
        if doc_id:
            labels.append(Label(doc_id, normal_heading(heading) if heading.strip() else None))
    return labels


def normal_heading(heading: str) -> str:
    """A heading compared without case, extra spaces, code ticks or link targets."""
    return " ".join(LINK.sub(r"\1", heading).replace("`", "").lower().split())


def section_path(metadata: dict) -> list[str]:
    """The normalised title and heading path of a chunk: a label's heading matches any of them."""
    headings = [h for h in str(metadata.get("headings", "")).split(" > ") if h]
    return [normal_heading(str(metadata.get("title", "")))] + [normal_heading(h) for h in headings]


def ranked_documents(docs: list[RetrievedDoc]) -> list[tuple[str, list[str]]]:
    """Each retrieved document as a unit, in rank order."""
    return [(doc.doc_id, []) for doc in docs]


def ranked_sections(docs: list[RetrievedDoc]) -> list[tuple[str, list[str]]]:
    """The distinct sections of the chunks found, document by document, best chunk first."""
    units, seen = [], set()
    for doc in docs:
        for chunk in doc.chunks:
            key = (doc.doc_id, chunk.metadata.get("headings", ""))
            if key not in seen:
                seen.add(key)
                units.append((doc.doc_id, section_path(chunk.metadata)))
    return units


def matches(unit: tuple[str, list[str]], label: Label, by_section: bool) -> bool:
    """True when a ranked unit is the labelled document, or lies in the labelled section."""
    doc_id, path = unit
    return doc_id == label.doc_id and (not by_section or label.heading is None or label.heading in path)


def question_scores(units: list[tuple[str, list[str]]], labels: list[Label], k: int, by_section: bool) -> dict:
    """hit, reciprocal rank, recall@k (first k units) and nDCG@10 of one question; each label counts once."""
    if not by_section:
        labels = list(dict.fromkeys(Label(label.doc_id) for label in labels))
    gains, found, found_by_k = [], set(), 0
    for rank, unit in enumerate(units[: max(k, NDCG_DEPTH)]):
        new = {label for label in labels if label not in found and matches(unit, label, by_section)}
        found |= new
        found_by_k += len(new) if rank < k else 0
        gains.append(1.0 if new else 0.0)
    first = next((rank for rank, gain in enumerate(gains[:k]) if gain), None)
    ideal = sum(1 / math.log2(rank + 2) for rank in range(min(len(labels), NDCG_DEPTH)))
    dcg = sum(gain / math.log2(rank + 2) for rank, gain in enumerate(gains[:NDCG_DEPTH]))
    return {
        "hit": 1.0 if first is not None else 0.0,
        "rr": 1 / (first + 1) if first is not None else 0.0,
        "recall": found_by_k / len(labels),
        "ndcg": dcg / ideal,
    }
