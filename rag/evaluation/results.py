"""The answer-evaluation results file (JSON Lines, one row per question and model) and the figures per model."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

from rag.core.settings import Settings
from rag.evaluation.judge import LABELS

METRICS = ("answer_similarity", "citation_hit", "grounded", "wrong_citations", "found_nowhere", "refusal_rate",
           "first_token_ms_p50", "tokens_per_s", "load_ms", "size", "size_vram", "errors")


def evaluations_dir(settings: Settings) -> Path:
    """Where evaluation results live: under the store folder."""
    return settings.store_dir / "evaluations"


def default_results_file(settings: Settings, truth: Path) -> Path:
    """Where `rag.eval --answers` writes its rows unless told (--out): named after the questions file."""
    return evaluations_dir(settings) / f"{truth.stem}-answers.jsonl"


def read_rows(path: Path) -> list[dict]:
    """Every row of a results file in order; a line cut short by an interruption is skipped."""
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "model" in row and "index" in row:
            rows.append(row)
    return rows


def latest_rows(rows: list[dict], fingerprint: str | None = None) -> dict[tuple[str, int], dict]:
    """The last row written for each (model, question index), of one run setup (the last one's when not given)."""
    if fingerprint is None and rows:
        fingerprint = rows[-1].get("fingerprint")
    return {(r["model"], r["index"]): r for r in rows if r.get("fingerprint") == fingerprint}


def mean(values: list[float]) -> float | None:
    """The mean rounded to 4 places, None for no values."""
    return round(statistics.fmean(values), 4) if values else None


def share(rows: list[dict], field: str) -> float | None:
    """The share of checked sentences counted in field (rows written before the check have none)."""
    checked = sum(r.get("checked", 0) for r in rows)
    return round(sum(r.get(field, 0) for r in rows) / checked, 4) if checked else None


def summarise_model(rows: list[dict]) -> dict:
    """One model's figures from its rows (one per question)."""
    answered = sorted((r for r in rows if not r.get("error")), key=lambda r: r["index"])
    asked = [r for r in answered if r.get("refused") != "floor"]
    stated = [r for r in answered if not r.get("refused")]
    eval_ns = sum(r.get("eval_duration_ns") or 0 for r in asked)
    errors = [r for r in rows if r.get("error")]
    figures = {
        "answer_similarity": mean([r["similarity"] for r in answered if r.get("similarity") is not None]),
        "citation_hit": mean([float(r["citation_hit"]) for r in answered]),
        "grounded": round(sum(r["supported"] for r in stated) / sentences, 4)
        if (sentences := sum(r["sentences"] for r in stated)) else None,
        "wrong_citations": share(stated, "wrong_citations"),
        "found_nowhere": share(stated, "found_nowhere"),
        "refusal_rate": mean([float(bool(r.get("refused"))) for r in answered]),
        "first_token_ms_p50": round(statistics.median(t), 1)
        if (t := [r["first_token_ms"] for r in asked if r.get("first_token_ms") is not None]) else None,
        "tokens_per_s": round(sum(r.get("eval_count") or 0 for r in asked) / eval_ns * 1e9, 2) if eval_ns else None,
        "load_ms": round(asked[0]["load_ms"], 1) if asked and asked[0].get("load_ms") is not None else None,
        "size": max((r.get("size") or 0 for r in asked), default=0) or None,
        "size_vram": max((r.get("size_vram") or 0 for r in asked), default=0) if asked else None,
        "errors": len(errors),
        "answered": len(answered),
    }
    if errors:
        figures["error"] = errors[0]["error"]
    verdicts = [r["judge"] for r in answered if r.get("judge")]
    if verdicts:
        figures["judge"] = {label: round(verdicts.count(label) / len(verdicts), 4) for label in LABELS}
    return figures


def summarise(latest: dict[tuple[str, int], dict], models: list[str], questions: int) -> dict:
    """The final JSON object: the question count and each model's figures."""
    return {
        "questions": questions,
        "models": {m: summarise_model([r for (model, _), r in latest.items() if model == m]) for m in models},
    }


def summary_of_file(path: Path) -> dict | None:
    """The figures of the latest run setup in a results file, or None when it holds no rows."""
    rows = read_rows(path)
    if not rows:
        return None
    latest = latest_rows(rows)
    models = list(dict.fromkeys(r["model"] for r in latest.values()))
    questions = len({index for _, index in latest})
    return summarise(latest, models, questions)


def format_table(summary: dict) -> str:
    """The figures as a plain-text table, one line per model."""
    header = ["model", "similarity", "cit.hit", "grounded", "wrong cit.", "nowhere", "refusals", "1st tok ms", "tok/s",
              "load ms", "size GB", "vram GB", "errors"]
    lines = [header]
    for model, f in summary["models"].items():
        lines.append([
            model, fmt(f["answer_similarity"], ".3f"), fmt(f["citation_hit"], ".3f"), fmt(f["grounded"], ".3f"),
            fmt(f["wrong_citations"], ".3f"), fmt(f["found_nowhere"], ".3f"), fmt(f["refusal_rate"], ".3f"),
            fmt(f["first_token_ms_p50"], ".0f"), fmt(f["tokens_per_s"], ".1f"),
            fmt(f["load_ms"], ".0f"), fmt(gigabytes(f["size"]), ".2f"), fmt(gigabytes(f["size_vram"]), ".2f"),
            str(f["errors"]),
        ])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


def gigabytes(size: int | None) -> float | None:
    """Bytes as GB (10^9), None kept."""
    return None if size is None else size / 1e9


def fmt(value, spec: str) -> str:
    """A figure for the table; '-' when there is none."""
    return "-" if value is None else format(value, spec)
