"""The LLM boxes the settings name: Ollama at OLLAMA_HOST, and an OpenAI-compatible server when RAG_OPENAI_URL is set.

With both in use, `Boxes` makes them one backend: models are listed from every box that answers, named
`ollama:NAME` and `openai:NAME`, and each request goes to the box that serves the model.
"""
from __future__ import annotations

from collections.abc import Iterator

from rag.core.errors import LLMError, LLMUnavailable
from rag.core.settings import Settings
from rag.llm.backend import Backend, ChatOptions, ChatUsage, LoadedModel, ModelEntry, ModelInfo, PullProgress


def open_backend(settings: Settings) -> Backend:
    """The backend that serves the chat models (no request is made until it is used)."""
    from rag.llm.ollama import Ollama

    if not settings.openai_url:
        return Ollama(settings)
    from rag.llm.openai_compatible import OpenAICompatible

    return Boxes([Ollama(settings), OpenAICompatible(settings)])


class Boxes:
    """Several boxes as one backend; a model is `KIND:NAME`, or a bare name that exactly one box serves."""

    kind = "boxes"

    def __init__(self, boxes: list[Backend]):
        self.boxes = {box.kind: box for box in boxes}
        self.label = " and ".join(box.label for box in boxes)
        self.url = ", ".join(box.url for box in boxes)
        self.read_timeout = max(box.read_timeout for box in boxes)
        self.names: dict[str, set[str]] = {}
        self.notes: list[str] = []

    def list_models(self) -> list[ModelEntry]:
        """Every box's models, named KIND:NAME; a box that is down is a note, unless every box is down."""
        entries, notes, failure = [], [], None
        for kind, box in self.boxes.items():
            try:
                listed = box.list_models()
            except LLMUnavailable as exc:
                notes.append(f"{box.label} did not answer: {exc}")
                failure = failure or exc
                continue
            self.names[kind] = {entry.name for entry in listed}
            entries.extend(ModelEntry(f"{kind}:{e.name}", e.can_chat, e.size, e.parameters, e.quantization, box.label)
                           for e in listed)
        self.notes = notes
        if failure is not None and not entries and len(notes) == len(self.boxes):
            raise failure
        return sorted(entries, key=lambda entry: entry.name)

    def split(self, model: str) -> tuple[Backend, str]:
        """The box that serves a model, and the model's name in that box."""
        kind, _, rest = model.partition(":")
        if kind in self.boxes and rest:
            return self.boxes[kind], rest
        if not self.names:
            try:
                self.list_models()
            except LLMError:
                pass
        serving = [kind for kind, box in self.boxes.items() if box.canonical(model) in self.names.get(kind, ())]
        if len(serving) > 1:
            raise LLMError(
                f"Model {model!r} is served by {' and '.join(self.boxes[k].label for k in serving)}: name the box, "
                f"e.g. {serving[0]}:{model} or {serving[1]}:{model}."
            )
        kind = serving[0] if serving else next(iter(self.boxes))
        return self.boxes[kind], model

    def canonical(self, model: str) -> str:
        """KIND:NAME for a model, the name as its box lists it."""
        box, name = self.split(model)
        return f"{box.kind}:{box.canonical(name)}"

    def box_of(self, model: str) -> Backend:
        """The box that serves the model."""
        return self.split(model)[0]

    def model_info(self, model: str) -> ModelInfo:
        box, name = self.split(model)
        return box.model_info(name)

    def stream_chat(self, model: str, messages: list[dict], options: ChatOptions, usage: ChatUsage) -> Iterator[str]:
        box, name = self.split(model)
        return box.stream_chat(name, messages, options, usage)

    def warm(self, model: str, context: int) -> None:
        box, name = self.split(model)
        box.warm(name, context)

    def cannot_chat(self, model: str) -> Exception:
        box, name = self.split(model)
        return box.cannot_chat(name)

    def not_installed(self, model: str) -> Exception:
        box, name = self.split(model)
        return box.not_installed(name)

    def install_command(self, model: str) -> str | None:
        box, name = self.split(model)
        return box.install_command(name)

    def can_pull(self) -> bool:
        """True when one of the boxes can pull (Ollama)."""
        return any(box.can_pull() for box in self.boxes.values())

    def pull(self, model: str) -> Iterator[PullProgress]:
        """Pull into the box that can (a KIND: prefix chooses among several)."""
        kind, _, rest = model.partition(":")
        if kind in self.boxes and rest:
            return self.boxes[kind].pull(rest)
        box = next(box for box in self.boxes.values() if box.can_pull())
        return box.pull(model)

    def loaded(self) -> list[LoadedModel]:
        """What each box that says holds in memory, named KIND:NAME."""
        held = []
        for kind, box in self.boxes.items():
            try:
                held.extend(LoadedModel(f"{kind}:{m.name}", m.size, m.size_in_gpu) for m in box.loaded())
            except LLMError:
                continue
        return held

    def down_boxes(self) -> list[str]:
        """Notes on the boxes that did not answer the last listing."""
        return list(self.notes)
