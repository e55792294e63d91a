"""`python -m rag.eval TRUTH.csv --answers --models A,B`: whole chat turns per labelled question and model, scored.

Each question goes through the chat page's turn (retrieve, relevance floor, prompt, model server) for each model; the
answer is scored and written at once as one JSON line to the results file, so an interrupted run resumes where
it stopped. The figures per model are computed from that file (rag/evaluation/results.py).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rag.evaluation import results as answer_results
from rag.chat.mode import choose_mode, is_comparison
from rag.chat.scope import UnknownDocument, resolve_ids
from rag.chat.scoped_search import search_within
from rag.chat.turn import prepare_turn, stream_answer
from rag.chat.whole import DocumentTooLong, WholeReader
from rag.chat.verify import check_turn
from rag.search.embeddings import Embedder
from rag.chat.citations import cited_numbers
from rag.core.errors import MODEL_NOT_INSTALLED, SERVER_OTHER, LLMError, LLMUnavailable, PromptTooLong, RagError
from rag.chat.refusals import says_not_answered
from rag.chat.sentences import strip_citations
from rag.evaluation.grounding import grounding
from rag.evaluation.judge import judge_answer
from rag.evaluation.retrieval_metrics import parse_labels
from rag.llm.backend import Backend
from rag.llm.boxes import open_backend
from rag.search.retrieval import Retriever, is_relevant, no_match_text
from rag.core.settings import Settings
from rag.core.terminal import print_error, safe_text

FAILURES_BEFORE_SKIP = 3  # a model that failed this many questions in a row is not asked the rest
SAMPLE_SEED = 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the answer evaluation, added to `python -m rag.eval`."""
    group = parser.add_argument_group("answer evaluation (--answers)")
    group.add_argument("--answers", action="store_true", help="evaluate whole answers from chat models")
    group.add_argument("--models", help="comma-separated chat models to compare (default: RAG_MODEL)")
    group.add_argument("--reference-column", help="column with a reference answer (default: the expected document's text)")
    group.add_argument("--out", type=Path, help="results file, JSON Lines (default: <store>/evaluations/<csv>-answers.jsonl)")
    group.add_argument(
        "--scope-column", metavar="COLUMN",
        help="column naming the documents a question is asked of (a;b; may be the id column): a whole-document question "
        "(summarise, outline, compare, list every...) reads them whole or in parts, another searches within them",
    )
    group.add_argument("--judge", metavar="MODEL", help="also classify each answer's relevance with this local model")
    group.add_argument("--progress", type=Path, help="also write the progress as JSON to this file")


def looks_like_refusal(answer: str) -> bool:
    """True when the answer says the documents do not answer and cites nothing."""
    return says_not_answered(answer) and not cited_numbers(answer)


def expected_documents(cell: str | None) -> set[str]:
    """The documents a ground-truth cell accepts (`a;b`, `doc#Heading`), read as retrieval evaluation reads them."""
    return {label.doc_id for label in parse_labels(cell or "")}


def fingerprint(args: argparse.Namespace, settings: Settings) -> str:
    """A short hash of everything that changes the answers besides the model; rows of another setup are not reused."""
    setup = [str(args.ground_truth.resolve()), args.question_column, args.id_column, args.filter_column,
             args.reference_column, args.k, settings.relevance_floor, settings.retrieval_mode, settings.dense_weight,
             settings.num_ctx, settings.temperature, settings.answer_tokens, settings.collection, args.judge,
             args.scope_column]
    return hashlib.sha256(json.dumps(setup, default=str).encode()).hexdigest()[:12]


def pick_rows(rows: list[dict], limit: int | None, sample: int | None) -> list[tuple[int, dict]]:
    """(row number, row) pairs to evaluate: the first --limit rows, then a fixed random --sample of them."""
    numbered = list(enumerate(rows))[:limit]
    if sample is not None and sample < len(numbered):
        numbered = sorted(random.Random(SAMPLE_SEED).sample(numbered, sample), key=lambda pair: pair[0])
    return numbered


def check_references(rows: list[tuple[int, dict]], column: str | None, truth: Path) -> None:
    """Refuse a reference column with nothing in it."""
    if column and not any((row.get(column) or "").strip() for _, row in rows):
        raise RagError(f"The column {column!r} of {truth} is empty in every row evaluated; fill it with reference "
                       "answers, or leave out --reference-column to compare with the expected document's text.")


class Progress:
    """The terminal bar and, when asked, a JSON progress file another process (the Models page) can read."""

    def __init__(self, total: int, done: int, path: Path | None, out: Path):
        self.bar = tqdm(total=total, initial=done, desc="answers", unit="q", file=sys.stderr, disable=None,
                        mininterval=1.0)
        self.path, self.out, self.total, self.done = path, out, total, done
        self.started = time.time()
        self.write("running", "")

    def step(self, model: str) -> None:
        self.done += 1
        self.bar.update(1)
        self.write("running", model)

    def write(self, state: str, detail: str) -> None:
        """Replace the progress file atomically."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps({
            "state": state, "detail": detail, "done": self.done, "total": self.total, "pid": os.getpid(),
            "started_at": self.started, "updated_at": time.time(), "out": str(self.out),
        }))
        os.replace(temporary, self.path)

    def close(self, state: str, detail: str = "") -> None:
        self.bar.close()
        self.write(state, detail)


@dataclass
class Scorer:
    """Scores one answer: similarity with the reference, citation hit, grounded sentences, refusal."""

    embedder: Embedder
    retriever: Retriever
    reference_column: str | None
    references: dict[int, np.ndarray | None] = field(default_factory=dict)

    def reference_vectors(self, index: int, row: dict, expected: set[str]) -> np.ndarray | None:
        """The reference answer's vector, or the vectors of the expected documents' chunks (None when missing)."""
        if index not in self.references:
            if self.reference_column:
                text = (row.get(self.reference_column) or "").strip()
                found = np.asarray([self.embedder.embed([text])[0]], dtype=np.float32) if text else None
            else:
                chunks = self.retriever.index.get()
                rows = [i for i, m in enumerate(chunks.metadatas) if m.get("doc_id") in expected]
                found = chunks.vectors[rows] if rows else None
            self.references[index] = found
        return self.references[index]

    def similarity(self, answer: str, reference: np.ndarray | None) -> float | None:
        """Cosine similarity of the answer (markers stripped) with the reference; for a document, its best chunk."""
        text = strip_citations(answer)
        if reference is None or not text:
            return None if reference is None else 0.0
        vector = np.asarray(self.embedder.embed([text])[0], dtype=np.float32)
        return round(float((reference @ vector).max()), 4)


@dataclass
class Evaluation:
    """One run: the questions, the models, where rows go, and the shared parts."""

    args: argparse.Namespace
    settings: Settings
    llm: Backend
    retriever: Retriever
    scorer: Scorer
    rows: list[tuple[int, dict]]
    models: list[str]
    out: Path
    setup: str

    def where(self, row: dict) -> dict | None:
        return {self.args.filter_column: row[self.args.filter_column]} if self.args.filter_column else None

    def answer(self, index: int, row: dict, model: str) -> dict:
        """Run the chat page's turn for one question and model, and score it."""
        args, settings = self.args, self.settings
        question, expected = row[args.question_column], row[args.id_column]
        record = {"model": model, "index": index, "fingerprint": self.setup, "question": question,
                  "expected": expected, "error": None}
        scope = sorted(expected_documents(row.get(args.scope_column))) if args.scope_column else []
        try:
            turn = self.prepare(question, row, model, scope)
        except (PromptTooLong, UnknownDocument, DocumentTooLong) as exc:
            return {**record, "error": str(exc), "exit_code": exc.exit_code}
        reading = getattr(turn, "reading", None)
        record.update({"retrieved": [doc.doc_id for doc in turn.docs], "mode": reading.mode if reading else "search",
                       "parts": reading.parts if reading else 0})
        if reading is None and not is_relevant(turn.docs, settings.relevance_floor):
            answer, refused = no_match_text(turn.docs, settings.relevance_floor), "floor"
        else:
            started = time.perf_counter()
            for _ in stream_answer(turn, self.llm, settings):
                pass
            if turn.error is not None:
                return {**record, "error": str(turn.error), "exit_code": turn.error.exit_code, "answer": turn.answer}
            answer = turn.answer
            refused = "model" if looks_like_refusal(answer) else None
            usage = turn.usage
            record.update({
                "first_token_ms": ((usage.load_seconds or 0.0) + (usage.prompt_seconds or 0.0)) * 1000,
                "wall_first_token_ms": turn.timings.first_token_ms,
                "wall_ms": (time.perf_counter() - started) * 1000,
                "load_ms": (usage.load_seconds or 0.0) * 1000,
                "prompt_eval_count": usage.prompt_tokens,
                "eval_count": usage.generated_tokens,
                "eval_duration_ns": round((usage.generation_seconds or 0.0) * 1e9),
                **self.memory(model),
            })
        cited = cited_numbers(answer)
        acceptable = expected_documents(expected)
        expected_numbers = {c.number for c in turn.citations if c.doc_id in acceptable}
        counted = grounding(answer, turn.citations, self.scorer.embedder)
        checks = [] if refused else check_turn(answer, turn.citations, self.scorer.embedder)
        reference = self.scorer.reference_vectors(index, row, acceptable)
        return {**record, "answer": answer, "refused": refused, "cited": sorted(cited),
                "similarity": self.scorer.similarity(answer, reference),
                "citation_hit": bool(cited & expected_numbers),
                "supported": counted.supported, "sentences": counted.sentences, "checked": len(checks),
                "wrong_citations": sum(c.wrong_citation for c in checks),
                "found_nowhere": sum(not c.supported and c.found_in is None for c in checks)}

    def prepare(self, question: str, row: dict, model: str, scope: list[str]):
        """The turn for a row: over its scope (whole, in parts, or searched within) when it has one, else the usual."""
        args, settings = self.args, self.settings
        if not scope:
            return prepare_turn(question, settings, self.retriever, model=model, where=self.where(row), k=args.k, llm=self.llm)
        index = self.retriever.index.get()
        scope = resolve_ids(scope, index, f"--scope-column {args.scope_column}")
        if choose_mode(question, scope) == "search":
            docs = search_within(self.retriever, question, scope, args.k, self.where(row))
            return prepare_turn(question, settings, self.retriever, model=model, k=args.k, llm=self.llm, docs=docs)
        turn = WholeReader(settings, self.llm, model).prepare(question, index, scope, compare=is_comparison(question, scope))
        if turn.reading.stopped:  # Ctrl-C while reading in parts: the notes are kept, the run stops as it does elsewhere
            raise KeyboardInterrupt
        return turn

    def memory(self, model: str) -> dict:
        """The model's size and the part of it in GPU memory while it is loaded, when its box says."""
        try:
            loaded = self.llm.loaded()
        except LLMError:
            return {}
        wanted = self.llm.canonical(model)
        for entry in loaded:
            if entry.name == wanted:
                return {"size": entry.size, "size_vram": entry.size_in_gpu}
        return {}


def load_truth(args: argparse.Namespace, read_rows) -> list[tuple[int, dict]]:
    """The rows to evaluate, checked for the needed columns and a non-empty reference column."""
    columns = [args.question_column, args.id_column] + [
        c for c in (args.filter_column, args.reference_column, args.scope_column) if c]
    rows = pick_rows(read_rows(args.ground_truth, columns), args.limit, args.sample)
    check_references(rows, args.reference_column, args.ground_truth)
    return rows


def installed_models(llm: Backend, wanted: list[str]) -> tuple[dict[str, str], str | None]:
    """For each wanted model that cannot be asked, why; and the reason the model server itself cannot be used, if so."""
    try:
        installed = {entry.name for entry in llm.list_models()}
    except LLMUnavailable as exc:
        return {}, str(exc)
    return {model: str(llm.not_installed(model)) for model in wanted if llm.canonical(model) not in installed}, None


def run(args: argparse.Namespace, settings: Settings, retriever: Retriever, embedder: Embedder, read_rows) -> int:
    """The answer evaluation: answer, score, write rows, print the table and the summary line."""
    models = [m.strip() for m in (args.models or settings.model).split(",") if m.strip()]
    if not models:
        raise RagError("--models names no model; give one or more chat models, e.g. --models qwen2.5:3b,llama3.2:3b.")
    rows = load_truth(args, read_rows)
    llm = open_backend(settings)
    out = args.out or answer_results.default_results_file(settings, args.ground_truth)
    out.parent.mkdir(parents=True, exist_ok=True)
    setup = fingerprint(args, settings)
    evaluation = Evaluation(args, settings, llm, retriever, Scorer(embedder, retriever, args.reference_column),
                            rows, models, out, setup)
    missing, down = installed_models(llm, models + ([args.judge] if args.judge else []))
    if down:
        print_error(f"{down} Answers are not evaluated; retrieval alone follows.")
        print(json.dumps(retrieval_only(evaluation)))
        return LLMUnavailable.exit_code
    for reason in missing.values():
        print_error(reason)
    if args.judge in missing:
        raise RagError(f"The judge model {args.judge!r} is not installed (see above): install it, or leave out --judge.")
    code = answer_all(evaluation, missing)
    latest = answer_results.latest_rows(answer_results.read_rows(out), setup)
    summary = answer_results.summarise(latest, models, len(rows))
    print(safe_text(answer_results.format_table(summary)))
    print(json.dumps(summary))
    return code


def retrieval_only(evaluation: Evaluation) -> dict:
    """With the model server down: how often the expected document was retrieved and how often the floor refuses."""
    args, settings = evaluation.args, evaluation.settings
    hits = refusals = 0
    for _, row in evaluation.rows:
        docs = evaluation.retriever.search(row[args.question_column], args.k, evaluation.where(row))
        hits += bool(expected_documents(row[args.id_column]) & {d.doc_id for d in docs})
        refusals += not is_relevant(docs, settings.relevance_floor)
    n = len(evaluation.rows)
    return {"questions": n, "retrieval": {"hit_rate": round(hits / n, 4) if n else None,
                                          "refusal_rate": round(refusals / n, 4) if n else None},
            "models": {m: {"errors": n, "error": f"{evaluation.llm.label} is not reachable."} for m in evaluation.models}}


def answer_all(evaluation: Evaluation, missing: dict[str, str]) -> int:
    """Answer every question not yet done with every model, appending rows; the exit code says how it went."""
    done = {key for key, row in answer_results.latest_rows(answer_results.read_rows(evaluation.out),
                                                              evaluation.setup).items()
            if not row.get("error") and (not evaluation.args.judge or row.get("judge"))}
    todo = [(model, index, row) for model in evaluation.models for index, row in evaluation.rows
            if (model, index) not in done]
    progress = Progress(len(evaluation.models) * len(evaluation.rows), len(evaluation.models) * len(evaluation.rows)
                        - len(todo), evaluation.args.progress, evaluation.out)
    first_error = 0
    failures: dict[str, int] = {}
    try:
        with evaluation.out.open("a", encoding="utf-8") as handle:
            for model, index, row in todo:
                record = evaluate_one(evaluation, model, index, row, missing, failures)
                if record.get("error"):
                    first_error = first_error or record.get("exit_code", 1)
                    failures[model] = failures.get(model, 0) + 1
                else:
                    failures[model] = 0
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                handle.flush()
                progress.step(model)
    except KeyboardInterrupt:
        progress.close("interrupted", "Stopped; run the same command again to go on.")
        print("\ninterrupted: the results so far are kept in " + str(evaluation.out)
              + "; run the same command again to go on.", file=sys.stderr)
        raise
    progress.close("finished")
    return first_error


def evaluate_one(evaluation: Evaluation, model: str, index: int, row: dict, missing: dict[str, str],
                 failures: dict[str, int]) -> dict:
    """One row: an error row for a missing or repeatedly failing model, else the scored (and judged) answer."""
    base = {"model": model, "index": index, "fingerprint": evaluation.setup, "question": row[evaluation.args.question_column]}
    if model in missing:
        return {**base, "error": missing[model], "exit_code": MODEL_NOT_INSTALLED}
    if failures.get(model, 0) >= FAILURES_BEFORE_SKIP:
        return {**base, "error": f"Not asked: {model} failed {FAILURES_BEFORE_SKIP} questions in a row.", "exit_code": SERVER_OTHER}
    try:
        record = evaluation.answer(index, row, model)
    except LLMError as exc:
        return {**base, "error": str(exc), "exit_code": exc.exit_code}
    if evaluation.args.judge and not record.get("error"):
        try:
            record["judge"] = judge_answer(evaluation.llm, evaluation.args.judge, record["question"], record["answer"],
                                           evaluation.settings) or "UNPARSED"
        except LLMError as exc:
            record.update({"error": f"The judge failed: {exc}", "exit_code": exc.exit_code})
    return record
