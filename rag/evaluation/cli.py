"""`python -m rag.eval GROUND_TRUTH.csv`: hit rate, MRR, nDCG@10, recall, refusals and latency of retrieval on labelled questions."""
from __future__ import annotations

import argparse
import csv
import io
import json
import statistics
import sys
import time
from pathlib import Path

from tqdm import tqdm

from rag.evaluation import answers as answer_eval
from rag.core.errors import EXIT_CODES, INTERRUPTED, OUTPUT_CLOSED, RagError, exit_codes_help
from rag.search.loader import open_retriever
from rag.search.retrieval import is_relevant
from rag.evaluation.retrieval_metrics import NDCG_DEPTH, parse_labels, question_scores, ranked_documents, ranked_sections
from rag.core.settings import TOP_K_MAX, load_settings
from rag.core.command_line import OneLineParser, document_count, fraction, row_count
from rag.core.decoding import decode_utf8_or_legacy
from rag.core.terminal import print_error, safe_json, safe_line, tolerant_output


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = OneLineParser(prog="python -m rag.eval", description=__doc__.split(":", 1)[1].strip(),
                           epilog=exit_codes_help(code for code in EXIT_CODES if code != OUTPUT_CLOSED))
    parser.add_argument("ground_truth", type=Path, help="CSV with a question column and the expected document id")
    parser.add_argument("--question-column", default="question", help="column holding the question (default: question)")
    parser.add_argument("--id-column", default="document",
                        help="column holding the relevant doc_id(s): several separated by ';', each optionally `doc#Heading` "
                             "(default: document); rows sharing a question add relevant documents; an empty cell means none")
    parser.add_argument("--filter-column", help="column whose value restricts the search to chunks with that metadata value")
    parser.add_argument("--k", type=document_count, default=5,
                        help=f"documents retrieved per question, 1 to {TOP_K_MAX} (default: 5)")
    parser.add_argument("--mode", choices=["dense", "keyword", "hybrid"], help="search mode (default: RAG_RETRIEVAL_MODE)")
    parser.add_argument("--dense-weight", type=float, help="weight of dense similarity in hybrid fusion (default: RAG_DENSE_WEIGHT)")
    parser.add_argument("--by-section", action="store_true",
                        help="score the sections of the chunks found against `doc#Heading` labels instead of documents")
    parser.add_argument("--floor", type=fraction,
                        help="relevance floor for refusal_rate, and for the answers with --answers (default: RAG_RELEVANCE_FLOOR)")
    parser.add_argument("--limit", type=row_count, help="evaluate only the first N rows")
    parser.add_argument("--sample", type=row_count,
                        help="evaluate N rows picked at random, the same N rows on every run and in both modes")
    answer_eval.add_arguments(parser)
    args = parser.parse_args(argv)
    misplaced = misplaced_option(args)
    if misplaced:
        parser.error(misplaced)
    return args


ANSWER_ONLY = ("models", "reference_column", "scope_column", "out", "judge", "progress")
RETRIEVAL_ONLY = ("by_section",)


def misplaced_option(args: argparse.Namespace) -> str | None:
    """Why an option given would be ignored in this mode (answers or retrieval), or None when every one applies."""
    for name in RETRIEVAL_ONLY if args.answers else ANSWER_ONLY:
        if getattr(args, name) not in (None, False):
            option = "--" + name.replace("_", "-")
            return f"{option} applies only {'without' if args.answers else 'with'} --answers"
    return None


def read_rows(path: Path, columns: list[str]) -> list[dict]:
    """The CSV rows, checking that the needed columns exist."""
    reader = csv.DictReader(io.StringIO(read_csv_text(path), newline=""))
    try:
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise RagError(f"{path} has no column {missing[0]!r}; its columns are {reader.fieldnames}.")
        return list(reader)
    except csv.Error as exc:
        line = reader.reader.line_num  # DictReader's own line_num is not yet updated for the row that failed
        raise RagError(f"{path} is not a CSV file that can be read: {exc} (at line {line}).") from None


def read_csv_text(path: Path) -> str:
    """The questions file as text: UTF-8 (with or without Excel's byte-order mark), else cp1252 with a warning."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RagError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    text, not_utf8 = decode_utf8_or_legacy(raw)
    if not_utf8:
        print(safe_line(f"warning: {path}: {not_utf8}. If a question reads wrong, save the file as UTF-8."), file=sys.stderr)
    return text


def questions(rows: list[dict], args: argparse.Namespace) -> list[tuple[str, dict | None, list]]:
    """Distinct (question, filter) pairs with the union of their rows' labels, in first-seen order."""
    grouped: dict[tuple, list] = {}
    for row in rows:
        where = {args.filter_column: row[args.filter_column]} if args.filter_column else None
        key = (row[args.question_column], json.dumps(where))
        grouped.setdefault(key, [])
        grouped[key] += [label for label in parse_labels(row[args.id_column] or "") if label not in grouped[key]]
    return [(question, json.loads(where), labels) for (question, where), labels in grouped.items()]


def evaluate(retriever, rows: list[dict], args: argparse.Namespace, floor: float) -> dict:
    """Quality over labelled questions, refusals over all questions, and latency percentiles."""
    totals, labelled, refused, latencies = {"hit": 0.0, "rr": 0.0, "ndcg": 0.0, "recall": 0.0}, 0, 0, []
    rank = ranked_sections if args.by_section else ranked_documents
    items = questions(rows, args)
    retriever.search("warm up", args.k)
    for question, where, labels in tqdm(items, desc="eval", unit="q", file=sys.stderr, mininterval=1.0, disable=None):
        started = time.perf_counter()
        docs = retriever.search(question, max(args.k, NDCG_DEPTH), where)
        latencies.append((time.perf_counter() - started) * 1000)
        refused += not is_relevant(docs[: args.k], floor)
        if labels:
            labelled += 1
            scores = question_scores(rank(docs), labels, args.k, args.by_section)
            totals = {name: totals[name] + scores[name] for name in totals}
    n = len(items)

    def share(total: float) -> float:
        return round(total / labelled, 4) if labelled else 0.0

    return {
        "questions": n,
        "hit_rate": share(totals["hit"]),
        "mrr": share(totals["rr"]),
        "ndcg@10": share(totals["ndcg"]),
        f"recall@{args.k}": share(totals["recall"]),
        "labelled": labelled,
        "refusal_rate": round(refused / n, 4) if n else 0.0,
        "p50_ms": round(statistics.median(latencies), 2) if n else 0.0,
        "p95_ms": round(statistics.quantiles(latencies, n=20)[18], 2) if n > 1 else (latencies[0] if n else 0.0),
    }


def evaluate_answers(args: argparse.Namespace) -> int:
    """The answer evaluation (rag/evaluation/answers.py), with its errors as one line and Ctrl-C as exit code 130."""
    try:
        overrides = {"retrieval_mode": args.mode, "dense_weight": args.dense_weight, "relevance_floor": args.floor}
        settings = load_settings(**{k: v for k, v in overrides.items() if v is not None})
        retriever = open_retriever(settings)
        return answer_eval.run(args, settings, retriever, retriever.embedder, read_rows)
    except RagError as exc:
        print_error(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        return INTERRUPTED


def main(argv: list[str] | None = None) -> int:
    """Run the evaluation and print the figures as the last line."""
    tolerant_output()
    args = parse_args(argv)
    if args.answers:
        return evaluate_answers(args)
    try:
        columns = [args.question_column, args.id_column] + ([args.filter_column] if args.filter_column else [])
        rows = [row for _, row in answer_eval.pick_rows(read_rows(args.ground_truth, columns), args.limit, args.sample)]
        overrides = {"retrieval_mode": args.mode, "dense_weight": args.dense_weight}
        settings = load_settings(**{k: v for k, v in overrides.items() if v is not None})
        retriever = open_retriever(settings)
        result = evaluate(retriever, rows, args, settings.relevance_floor if args.floor is None else args.floor)
    except RagError as exc:
        print_error(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return INTERRUPTED
    print(safe_json(result))
    return 0

