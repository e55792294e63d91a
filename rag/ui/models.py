"""The model list and model pulls as the page needs them: chat models only, pull errors in plain words."""
from __future__ import annotations

from collections.abc import Iterator

from rag.core.errors import OllamaBusy, OllamaError, OllamaTimeout, OllamaUnavailable
from rag.llm.ollama import Ollama, PullProgress, normalise_model
from rag.ui.text import text

EMBEDDING_FAMILIES = ("bert",)
MISSING_MANIFEST = "file does not exist"


class PullFailed(OllamaError):
    """A model pull that did not finish; the message says why and what to do."""


def chat_models(llm: Ollama) -> list[str]:
    """Installed models that can chat, tagged and sorted; embedding-only models (BERT families) are left out."""
    with llm.translated(""):
        models = llm.client.list().models
    names = []
    for model in models:
        family = (model.details.family if model.details else "") or ""
        if model.model and not any(kind in family for kind in EMBEDDING_FAMILIES):
            names.append(normalise_model(model.model))
    return sorted(names)


def default_model(models: list[str], configured: str) -> str:
    """The configured model when installed, else the first installed one, else the configured name."""
    wanted = normalise_model(configured)
    if wanted in models or not models:
        return wanted
    return models[0]


def pull_fraction(step: PullProgress) -> float:
    """How far a pull is, 0..1, from one progress step."""
    if step.status == "success":
        return 1.0
    if step.total:
        return min(1.0, step.completed / step.total)
    return 0.0


def pull_model(llm: Ollama, name: str) -> Iterator[PullProgress]:
    """Pull a model, yielding progress; a name the library does not have raises PullFailed that says so."""
    name = name.strip()
    if not name:
        raise PullFailed("Type a model name to pull, e.g. llama3.2:3b or qwen2.5:3b.")
    finished = False
    try:
        for step in llm.pull(name):
            finished = finished or step.status == "success"
            yield step
    except (OllamaUnavailable, OllamaBusy, OllamaTimeout):
        raise
    except OllamaError as exc:
        if MISSING_MANIFEST in str(exc) or "not found" in str(exc):
            raise PullFailed(
                f"Ollama has no model called {name!r}. Check the name and tag at https://ollama.com/library "
                "(e.g. llama3.2:3b)."
            ) from None
        raise PullFailed(str(exc)) from None  # it already says which pull failed, and where
    if not finished:
        raise PullFailed(f"Pulling {name!r} stopped before it finished. Try again.")


def pull_with_progress(llm: Ollama, name: str, area) -> bool:
    """Pull a model with a progress bar in a page area; False, with the reason shown there, when it failed."""
    bar = area.progress(0.0, text=text(f"Pulling {name}…"))
    try:
        for step in pull_model(llm, name):
            bar.progress(pull_fraction(step), text=text(f"{name}: {step.status}"))
    except OllamaError as exc:
        area.error(text(exc))
        return False
    return True
