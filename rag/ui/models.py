"""The model dropdown's tooltip and model pulls with a progress bar, as the chat and Models pages show them."""
from __future__ import annotations

import threading
from concurrent.futures import Future

from rag.core.errors import LLMError
from rag.llm import catalogue
from rag.llm.backend import Backend, PullProgress
from rag.ui.text import notice, text


def list_in_background(llm: Backend) -> Future:
    """The chat models' facts and the notes on boxes that did not answer, asked in a thread: a slow box never holds the
    page back (its future raises the box's LLMError)."""
    future: Future = Future()

    def work() -> None:
        try:
            facts = catalogue.model_facts(llm)
            future.set_result((facts, llm.down_boxes()))
        except BaseException as exc:  # delivered to the page, which shows an LLMError and re-raises anything else
            future.set_exception(exc)

    threading.Thread(target=work, name="list-models", daemon=True).start()
    return future


def model_help(llm: Backend, labels: dict[str, tuple[str, str]]) -> str:
    """The dropdown's tooltip: each installed model's facts on a line, shown as text (model names are untrusted)."""
    if not labels:
        return f"Installed models, from {llm.label} at {text(llm.url)}"
    lines = [f"- {text(label)} · {text(context)}" for label, context in labels.values()]
    return f"Installed models ({llm.label} at {text(llm.url)}):\n" + "\n".join(lines)


def pull_fraction(step: PullProgress) -> float:
    """How far a pull is, 0..1, from one progress step."""
    if step.status == "success":
        return 1.0
    if step.total:
        return min(1.0, step.completed / step.total)
    return 0.0


def pull_with_progress(llm: Backend, name: str, area) -> bool:
    """Pull a model with a progress bar in a page area; False, with the reason shown there, when it failed."""
    name = name.strip()
    if not name:
        area.error("Type a model name to pull, e.g. llama3.2:3b or qwen2.5:3b.")
        return False
    bar = area.progress(0.0, text=text(f"Pulling {name}…"))
    try:
        for step in llm.pull(name):
            bar.progress(pull_fraction(step), text=text(f"{name}: {step.status}"))
    except LLMError as exc:
        bar.empty()  # the last status ('pulling manifest') and its bar would read as still going
        area.error(notice(exc))
        return False
    return True
