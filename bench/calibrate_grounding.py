"""Calibrates rag.grounding.SUPPORT_THRESHOLD on real text: when does a cited passage support a sentence?

    python bench/calibrate_grounding.py [--faq ../shared/data/faq/documents-with-ids.json] [--faq-records 300]

For every passage (chunk) of a corpus, each of its sentences of 6+ words is compared (cosine of the project's
embeddings) with its own passage, the case of a sentence the passage supports, and with the most similar passage
of another document, the case of a plausible but wrong citation. The threshold that best separates the two
(largest true-positive rate minus false-positive rate over both corpora) is printed with the rates per corpus,
then one JSON line.
"""
from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest.loaders import RecordFields  # noqa: E402
from ingest.pipeline import IngestOptions, ingest  # noqa: E402
from rag.search.chunk_index import ChunkIndex  # noqa: E402
from rag.search.embeddings import load_embedder  # noqa: E402
from rag.chat.sentences import split_sentences  # noqa: E402
from rag.evaluation.grounding import SUPPORT_THRESHOLD, support_scores  # noqa: E402
from rag.core.settings import Settings  # noqa: E402
from rag.store.chroma import open_collection  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DIR = ROOT / "ingest" / "sample"
DEFAULT_FAQ = ROOT.parent / "shared" / "data" / "faq" / "documents-with-ids.json"
DEFAULT_QUESTIONS = DEFAULT_FAQ.with_name("ground-truth-dev.csv")
MIN_WORDS = 6
SENTENCES_PER_PASSAGE = 3
KEEP_SHARE = 0.7
QUESTIONS_PER_RECORD = 2


def passages(paths: list[Path], folder: Path, embedder, options: IngestOptions) -> tuple[list[str], list[str]]:
    """Ingest the paths into a fresh store; return every chunk's text and document id."""
    settings = Settings(store_dir=folder)
    ingest(paths, settings, embedder, options)
    collection = open_collection(settings, embedder.name, embedder.dimension, create=False)
    index = ChunkIndex.from_collection(collection, ())
    return index.texts, [m["doc_id"] for m in index.metadatas]


def condensed(sentence: str, rng: random.Random) -> str:
    """The sentence with about a third of its words left out, as a model condensing a passage would."""
    words = sentence.split()
    keep = sorted(rng.sample(range(len(words)), max(MIN_WORDS - 2, round(len(words) * KEEP_SHARE))))
    return " ".join(words[i] for i in keep)


def scored(statements: list[str], owners: list[int], texts: list[str], doc_ids: list[str], embedder) -> tuple:
    """Support scores of statements against their own passage and against the best passage of another document."""
    scores = support_scores(statements, texts, embedder)
    own = scores[np.arange(len(owners)), owners]
    others = np.array([[doc_ids[j] != doc_ids[i] for j in range(len(texts))] for i in owners])
    return own, np.where(others, scores, -np.inf).max(axis=1)


def sentence_pairs(texts: list[str], doc_ids: list[str], embedder, rng: random.Random) -> tuple:
    """Condensed document sentences scored against their own passage and the best wrong one."""
    owners, statements = [], []
    for i, text in enumerate(texts):
        found = [s.text for s in split_sentences(text) if len(s.text.split()) >= MIN_WORDS]
        for sentence in rng.sample(found, min(SENTENCES_PER_PASSAGE, len(found))):
            owners.append(i)
            statements.append(condensed(sentence, rng))
    return scored(statements, owners, texts, doc_ids, embedder)


def question_pairs(questions: dict[str, list[str]], texts: list[str], doc_ids: list[str], embedder) -> tuple:
    """Questions written from a record (paraphrases of it) scored against its passage and the best wrong one."""
    first = {}
    for i, doc_id in enumerate(doc_ids):
        first.setdefault(doc_id, i)
    owners, statements = [], []
    for doc_id, asked in questions.items():
        if doc_id in first:
            owners += [first[doc_id]] * len(asked)
            statements += asked
    return scored(statements, owners, texts, doc_ids, embedder)


def best_threshold(own: np.ndarray, wrong: np.ndarray) -> float:
    """The threshold (steps of 0.01) with the largest true-positive minus false-positive rate."""
    grid = np.round(np.arange(0.2, 0.95, 0.01), 2)
    return float(max(grid, key=lambda t: (own >= t).mean() - (wrong >= t).mean()))


def rates(own: np.ndarray, wrong: np.ndarray, threshold: float) -> dict:
    """Share of supported sentences accepted and of wrong citations accepted at a threshold."""
    return {"supported_accepted": round(float((own >= threshold).mean()), 3),
            "wrong_accepted": round(float((wrong >= threshold).mean()), 3),
            "sentences": int(len(own)),
            "own_p10_p50": [round(float(np.percentile(own, p)), 3) for p in (10, 50)],
            "wrong_p50_p90": [round(float(np.percentile(wrong, p)), 3) for p in (50, 90)]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faq", type=Path, default=DEFAULT_FAQ)
    parser.add_argument("--questions", type=Path, default=DEFAULT_QUESTIONS, help="questions written from FAQ records")
    parser.add_argument("--faq-records", type=int, default=300, help="FAQ records sampled (0: the guide only)")
    args = parser.parse_args(argv)
    rng = random.Random(7)
    embedder = load_embedder("all-MiniLM-L6-v2")
    corpora = {}
    with tempfile.TemporaryDirectory() as tmp:
        corpora["guide"] = passages([SAMPLE_DIR], Path(tmp) / "guide", embedder, IngestOptions())
        if args.faq_records and args.faq.exists():
            records = json.loads(args.faq.read_text())
            sample = Path(tmp) / "faq.json"
            sample.write_text(json.dumps(rng.sample(records, min(args.faq_records, len(records)))))
            corpora["faq"] = passages([sample], Path(tmp) / "faq", embedder, IngestOptions(RecordFields(title_field="question")))
    measured = {f"{name} sentences": sentence_pairs(texts, ids, embedder, rng) for name, (texts, ids) in corpora.items()}
    if "faq" in corpora and args.questions.exists():
        sampled = set(corpora["faq"][1])
        asked: dict[str, list[str]] = {}
        with args.questions.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row["document"] in sampled and len(asked.setdefault(row["document"], [])) < QUESTIONS_PER_RECORD:
                    asked[row["document"]].append(row["question"])
        measured["faq questions"] = question_pairs(asked, *corpora["faq"], embedder)
    own = np.concatenate([m[0] for m in measured.values()])
    wrong = np.concatenate([m[1] for m in measured.values()])
    threshold = best_threshold(own, wrong)
    result = {"best_threshold": threshold, "configured": SUPPORT_THRESHOLD}
    for name, (o, w) in measured.items():
        result[name] = rates(o, w, SUPPORT_THRESHOLD)
        print(f"{name}: at the configured {SUPPORT_THRESHOLD:.2f} {result[name]}; "
              f"at the best {threshold:.2f} {rates(o, w, threshold)}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
