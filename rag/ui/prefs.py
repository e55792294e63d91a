"""The sidebar choices a browser made (model, retrieval and generation settings), kept in the history store."""
from __future__ import annotations

from collections.abc import MutableMapping

from rag.ui.history import DamagedPreferences, History
from rag.core.settings import Settings

TOP_K_RANGE = (1, 20)
KEYS = ("model", "top_k", "floor", "temperature", "condense", "filter_field", "filter_value")


def defaults(settings: Settings) -> dict:
    """The choices before a browser made any: the configured settings."""
    return {
        "top_k": min(max(settings.top_k, TOP_K_RANGE[0]), TOP_K_RANGE[1]),
        "floor": float(settings.relevance_floor),
        "temperature": float(settings.temperature),
        "condense": True,
    }


def valid(saved: dict) -> dict:
    """The saved choices that still make sense (a hand-edited or old file cannot break the sidebar)."""
    checks = {
        "model": lambda v: isinstance(v, str) and v.strip(),
        "top_k": lambda v: isinstance(v, int) and not isinstance(v, bool) and TOP_K_RANGE[0] <= v <= TOP_K_RANGE[1],
        "floor": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0,
        "temperature": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 2.0,
        "condense": lambda v: isinstance(v, bool),
        "filter_field": lambda v: isinstance(v, str),
        "filter_value": lambda v: isinstance(v, (str, int, float, bool)),
    }
    kept = {key: value for key, value in saved.items() if key in checks and checks[key](value)}
    for key in ("floor", "temperature"):
        if key in kept:
            kept[key] = float(kept[key])
    return kept


def restore(state: MutableMapping, history: History, settings: Settings) -> None:
    """Once per session, before the widgets are drawn: the configured defaults, then this browser's saved choices
    (none when they are damaged: `prefs_problem` then says so, for the page to show)."""
    if state.get("prefs_restored"):
        return
    try:
        saved = valid(history.preferences())
    except DamagedPreferences as exc:
        saved, state["prefs_problem"] = {}, str(exc)
    for key, value in {**defaults(settings), **saved}.items():
        state.setdefault(key, value)
    state["prefs_saved"] = saved
    state["prefs_restored"] = True


def remember(state: MutableMapping, history: History) -> None:
    """Save the current choices when they differ from what is saved."""
    current = {key: state[key] for key in KEYS if key in state and state[key] is not None}
    if current != state.get("prefs_saved"):
        history.save_preferences(current)
        state["prefs_saved"] = current
