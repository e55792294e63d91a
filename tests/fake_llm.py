"""A backend-neutral LLM box for tests of what sits above the seam: it replays queued replies and records requests."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from rag.core.errors import LLMError, ModelCannotChat, ModelNotFound
from rag.llm.backend import ChatOptions, ChatUsage, LoadedModel, ModelEntry, ModelInfo, PullProgress


@dataclass
class Reply:
    """One queued reply: its pieces, what the box reports at the end, and an error raised after the pieces."""

    pieces: list[str]
    usage: ChatUsage = field(default_factory=ChatUsage)
    error: LLMError | None = None


class FakeBox:
    """A model server that is not Ollama: no pull, no ':latest', models and context lengths as given."""

    kind = "fake"
    label = "Fake box"
    url = "http://fake-box.invalid/v1"
    read_timeout = 5.0

    def __init__(self, models: dict[str, int | None], replies: list[Reply] = (), embedding: tuple[str, ...] = ()):
        self.models, self.embedding = models, embedding
        self.replies = list(replies)
        self.requests: list[tuple[str, list[dict], ChatOptions]] = []
        self.warmed: list[tuple[str, int]] = []

    def list_models(self) -> list[ModelEntry]:
        return [ModelEntry(name, name not in self.embedding) for name in sorted(self.models)]

    def model_info(self, model: str) -> ModelInfo:
        if model not in self.models:
            raise self.not_installed(model)
        return ModelInfo(self.models[model], model not in self.embedding)

    def stream_chat(self, model: str, messages: list[dict], options: ChatOptions, usage: ChatUsage) -> Iterator[str]:
        self.requests.append((model, messages, options))
        reply = self.replies.pop(0)
        yield from reply.pieces
        if reply.error is not None:
            raise reply.error
        for name, value in vars(reply.usage).items():
            setattr(usage, name, value)

    def warm(self, model: str, context: int) -> None:
        self.warmed.append((model, context))

    def canonical(self, model: str) -> str:
        return model.strip()

    def cannot_chat(self, model: str) -> ModelCannotChat:
        return ModelCannotChat(f"Model {model!r} cannot chat.")

    def not_installed(self, model: str) -> ModelNotFound:
        return ModelNotFound(f"Model {model!r} is not served by the fake box.", model)

    def install_command(self, model: str) -> None:
        return None

    def can_pull(self) -> bool:
        return False

    def pull(self, model: str) -> Iterator[PullProgress]:
        raise LLMError("The fake box cannot pull models.")

    def loaded(self) -> list[LoadedModel]:
        return []

    def box_of(self, model: str) -> FakeBox:
        return self

    def down_boxes(self) -> list[str]:
        return []
