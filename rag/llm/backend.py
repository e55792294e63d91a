"""The LLM box as the product needs it: list models, model info, stream a chat with usage, warm; pull and residency optional.

Everything outside rag/llm/ talks to a model server through this protocol only; each backend (Ollama today) maps it to
its own wire format and turns its failures into the errors of rag.core.errors, worded with its own fix.
"""
from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

CHARS_PER_TOKEN_MAX = 32  # an answer longer than max_tokens x this many characters is cut, whatever the server says


@dataclass(frozen=True)
class ModelEntry:
    """One model a box lists: its name, whether it can chat, and what the box says of its size."""

    name: str
    can_chat: bool = True
    size: int | None = None  # bytes on disk
    parameters: str = ""  # e.g. "3.2B"
    quantization: str = ""  # e.g. "Q4_K_M"
    box: str = ""  # the box's label, when several boxes are listed together


@dataclass(frozen=True)
class ModelInfo:
    """What a box says of one model that matters for a chat: its trained context (None when unknown), whether it chats."""

    context_length: int | None
    can_chat: bool = True


@dataclass(frozen=True)
class LoadedModel:
    """A model a box holds in memory now, and how much of it is in GPU memory (None when the box does not say)."""

    name: str
    size: int | None = None
    size_in_gpu: int | None = None


@dataclass(frozen=True)
class ChatOptions:
    """What a chat request asks for: the context window, the temperature, and the longest answer in tokens."""

    context: int
    temperature: float = 0.0
    max_tokens: int | None = None


@dataclass
class ChatUsage:
    """What a box reported besides the answer's text: counts and times (zeros and None where it did not say), and the
    reasoning a thinking model sent apart from its answer."""

    prompt_tokens: int = 0
    generated_tokens: int = 0
    finish_reason: str = ""  # "stop", or "length" when the answer hit max_tokens
    load_seconds: float | None = None
    prompt_seconds: float | None = None
    generation_seconds: float | None = None
    reasoning: str = ""

    @property
    def tokens_per_second(self) -> float:
        """Generation speed, or 0 when the box gave no generation time."""
        return self.generated_tokens / self.generation_seconds if self.generation_seconds else 0.0


@dataclass(frozen=True)
class PullProgress:
    """One step of a model pull."""

    status: str
    completed: int = 0
    total: int = 0


class AnswerBudget:
    """How much of an answer may still be taken: max_tokens pieces and CHARS_PER_TOKEN_MAX characters a token, whatever
    the server does with the limit (a server that ignores it cannot make an answer endless)."""

    def __init__(self, max_tokens: int | None):
        self.pieces_left = max_tokens if max_tokens is not None and max_tokens >= 0 else None
        self.chars_left = None if self.pieces_left is None else self.pieces_left * CHARS_PER_TOKEN_MAX
        self.pieces = 0
        self.spent = False

    def take(self, text: str) -> str:
        """The part of a piece that fits; spent turns True once a piece went over the limit."""
        if self.pieces_left is None:
            return text
        if self.pieces_left == 0:
            self.spent = True
            return ""
        self.pieces_left -= 1
        self.pieces += 1
        if len(text) > self.chars_left:
            text, self.spent = text[: self.chars_left], True
        self.chars_left -= len(text)
        return text


class Watchdog:
    """The deadline of a stream that shows nothing: when `seconds` pass without `saw_text()`, it calls `stop` once (which
    closes the stream's connection, so even a server trickling a byte a second is cut off) and says it `fired`."""

    def __init__(self, seconds: float, stop: Callable[[], None]):
        self.seconds, self.stop = seconds, stop
        self.deadline = time.monotonic() + seconds
        self.fired = False
        self.done = threading.Event()
        threading.Thread(target=self.watch, name="stream-deadline", daemon=True).start()

    def saw_text(self) -> None:
        """Visible text arrived: the deadline starts again."""
        self.deadline = time.monotonic() + self.seconds

    def watch(self) -> None:
        """Wait for the deadline, moved on by text, or for the end of the stream."""
        while not self.done.wait(max(0.01, self.deadline - time.monotonic())):
            if time.monotonic() >= self.deadline:
                self.fired = True
                self.stop()
                return

    def end(self) -> None:
        """The stream is over: stop watching."""
        self.done.set()


@functools.cache
def tls_context():
    """One TLS context for every client of this process (making one costs tens of milliseconds)."""
    import httpx

    return httpx.create_ssl_context()


def context_window(info: ModelInfo, wanted: int) -> int:
    """The window to run a model with: the wanted size, capped by the context it was trained on when that is known."""
    return min(wanted, info.context_length) if info.context_length else wanted


@runtime_checkable
class Backend(Protocol):
    """One model server."""

    kind: str  # "ollama" or "openai": the protocol the box speaks
    label: str  # how the page and messages name the box ("Ollama", or an OpenAI-compatible server's host)
    url: str
    read_timeout: float

    def list_models(self) -> list[ModelEntry]:
        """The installed models, sorted by name, at most RAG_MAX_MODELS of them."""

    def model_info(self, model: str) -> ModelInfo:
        """A model's trained context and whether it can chat."""

    def stream_chat(self, model: str, messages: list[dict], options: ChatOptions, usage: ChatUsage) -> Iterator[str]:
        """The answer's text as it streams; usage is filled when it ends."""

    def warm(self, model: str, context: int) -> None:
        """Load a model now, so the first question does not wait for it."""

    def canonical(self, model: str) -> str:
        """The name the box lists a model under (Ollama adds ':latest')."""

    def cannot_chat(self, model: str) -> Exception:
        """The error for a model that cannot chat, naming models that can."""

    def not_installed(self, model: str) -> Exception:
        """The error for a model the box does not have, with the box's own way to get it."""

    def install_command(self, model: str) -> str | None:
        """The command that installs a model in this box (`ollama pull m`), or None when the box has none."""

    def can_pull(self) -> bool:
        """True when the box can download models on request (pull)."""

    def pull(self, model: str) -> Iterator[PullProgress]:
        """Download a model, yielding progress (only when can_pull)."""

    def loaded(self) -> list[LoadedModel]:
        """The models in memory now; [] when the box cannot say."""

    def box_of(self, model: str) -> Backend:
        """The box that serves a model: the backend itself, or, for several boxes in use, the one that lists it."""

    def down_boxes(self) -> list[str]:
        """Why boxes did not answer the last listing while another did (quiet notes for the page); [] for one box."""
