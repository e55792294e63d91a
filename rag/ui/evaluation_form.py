"""The Models page's evaluation form, kept beside the evaluation it started, so a reload shows what was asked."""
from __future__ import annotations

import json
import os
from collections.abc import MutableMapping
from pathlib import Path

FORM_FILE = "form.json"
DEFAULTS = {"eval_truth": "", "eval_question_column": "question", "eval_id_column": "document",
            "eval_filter_column": "", "eval_sample": 20}
SAMPLE_RANGE = (1, 10_000)


def valid(saved: object) -> dict:
    """The saved fields that still make sense (a hand-edited file cannot break the form)."""
    if not isinstance(saved, dict):
        return {}
    kept = {key: value for key, value in saved.items()
            if key in DEFAULTS and type(value) is type(DEFAULTS[key])}
    if not SAMPLE_RANGE[0] <= kept.get("eval_sample", DEFAULTS["eval_sample"]) <= SAMPLE_RANGE[1]:
        del kept["eval_sample"]
    models = saved.get("eval_models")
    if isinstance(models, list) and all(isinstance(model, str) for model in models):
        kept["eval_models"] = models
    return kept


def saved_form(folder: Path) -> dict:
    """The form as it was when an evaluation was last started here, or {}."""
    try:
        return valid(json.loads((folder / FORM_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


def save_form(folder: Path, state: MutableMapping) -> None:
    """Keep the form's fields for the next page load (written to a temporary name, then renamed)."""
    fields = {key: state[key] for key in (*DEFAULTS, "eval_models") if key in state}
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f"{FORM_FILE}.tmp"
    temporary.write_text(json.dumps(fields), encoding="utf-8")
    os.replace(temporary, folder / FORM_FILE)


def restore_form(state: MutableMapping, folder: Path, installed: list[str]) -> None:
    """Once per session, before the form is drawn: the saved fields, else the defaults; models only if installed."""
    if state.get("eval_form_restored"):
        return
    saved = saved_form(folder)
    for key, value in {**DEFAULTS, **saved}.items():
        if key != "eval_models":
            state.setdefault(key, value)
    models = [model for model in saved.get("eval_models", []) if model in installed]
    state.setdefault("eval_models", models or installed[:3])
    state["eval_form_restored"] = True
