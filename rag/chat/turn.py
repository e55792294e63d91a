"""One chat turn: retrieve, build the prompt, stream the answer, and time each step."""
from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from rag.chat.prompt import Citation, Prompt, build_prompt
from rag.core.errors import LLMError, LLMUnavailable, ModelCannotChat, ModelNotFound, RagError
from rag.core.settings import Settings
from rag.llm.backend import Backend, ChatOptions, ChatUsage, context_window
from rag.llm.boxes import open_backend
from rag.search.retrieval import RetrievedDoc, Retriever

ANSWER_SHARE = 4  # the answer's room is at most a quarter of a small context window
# Our estimate is 1.1x to 1.6x the true count, so a prompt the server read whole scores above half of it. A prompt
# Ollama cut silently reads as about half the window the model really ran with (older Ollama), or as the whole window.
TRUNCATION_RATIO = 0.5
FINAL_ERRORS = (LLMUnavailable, ModelNotFound, ModelCannotChat)  # a chat request would fail the same way


@dataclass
class Timings:
    """Milliseconds spent in each step of a turn."""

    retrieve_ms: float = 0.0
    first_token_ms: float | None = None
    total_ms: float = 0.0
    prompt_ms: float = 0.0


@dataclass
class Turn:
    """A question, what was retrieved and sent, and the answer as it streams (its pieces, joined when read)."""

    question: str
    query: str
    model: str
    num_ctx: int
    docs: list[RetrievedDoc]
    prompt: Prompt
    pieces: list[str] = field(default_factory=list, repr=False)
    error: LLMError | None = None
    usage: ChatUsage = field(default_factory=ChatUsage)
    timings: Timings = field(default_factory=Timings)
    answer_tokens: int = 0
    preflight_error: LLMError | None = field(default=None, repr=False)
    backend: str = ""  # the protocol of the box that serves the model: "ollama" or "openai"

    @property
    def answer(self) -> str:
        """The answer so far: the pieces joined once, and kept joined until more arrive."""
        if len(self.pieces) > 1:
            self.pieces[:] = ["".join(self.pieces)]
        return self.pieces[0] if self.pieces else ""

    @answer.setter
    def answer(self, text: str) -> None:
        self.pieces[:] = [text] if text else []

    @property
    def citations(self) -> list[Citation]:
        """The numbered chunks the model was given."""
        return self.prompt.citations

    @property
    def truncated(self) -> bool:
        """True when the server cut the prompt silently: it read far fewer tokens than estimated, or a full window."""
        evaluated = self.usage.prompt_tokens
        return 0 < evaluated and (evaluated < self.prompt.estimated_tokens * TRUNCATION_RATIO or evaluated >= self.num_ctx)

    @property
    def cut_short(self) -> bool:
        """True when the answer stopped at the answer-length limit."""
        return self.usage.finish_reason == "length"

    def truncation_note(self) -> str | None:
        """What the reader must know when the prompt was cut silently, or None."""
        if not self.truncated:
            return None
        return (
            f"The model read only {self.usage.prompt_tokens:,} prompt tokens of about {self.prompt.estimated_tokens:,} "
            f"sent: the prompt was cut to fit a context window smaller than the {self.num_ctx:,} tokens asked for, "
            "so this answer may ignore some sources. Lower top k (RAG_TOP_K), or use a model with a larger context."
        )


def answer_room(num_ctx: int, settings: Settings) -> int:
    """Tokens kept free for the answer: RAG_ANSWER_TOKENS, at most a quarter of the window."""
    return min(settings.answer_tokens, num_ctx // ANSWER_SHARE)


def choose_num_ctx(llm: Backend, model: str, settings: Settings) -> tuple[int, LLMError | None]:
    """RAG_NUM_CTX capped by the model's trained context (asked once per model), and what stops the model answering."""
    try:
        info = llm.model_info(model)
    except LLMError as exc:
        return settings.num_ctx, exc
    return context_window(info, settings.num_ctx), None if info.can_chat else llm.cannot_chat(model)


def prepare_turn(
    question: str,
    settings: Settings,
    retriever: Retriever,
    *,
    model: str | None = None,
    history: list[dict] | None = None,
    where: dict | None = None,
    k: int | None = None,
    query: str | None = None,
    llm: Backend | None = None,
    docs: list[RetrievedDoc] | None = None,
) -> Turn:
    """Retrieve the documents for a question (or for query, a condensed form of it), unless given, and build the prompt."""
    model = model or settings.model
    query = query or question
    started = time.perf_counter()
    docs = retriever.search(query, k or settings.top_k, where) if docs is None else docs
    retrieved = time.perf_counter()
    llm = llm or open_backend(settings)
    num_ctx, lookup_error = choose_num_ctx(llm, model, settings)
    room = answer_room(num_ctx, settings)
    prompt = build_prompt(question, docs, history or [], num_ctx - room)
    turn = Turn(question, query, model, num_ctx, docs, prompt, answer_tokens=room, backend=backend_kind(llm, model))
    if isinstance(lookup_error, FINAL_ERRORS):
        turn.preflight_error = lookup_error
    turn.timings.retrieve_ms = (retrieved - started) * 1000
    turn.timings.prompt_ms = (time.perf_counter() - retrieved) * 1000
    return turn


def backend_kind(llm: Backend, model: str) -> str:
    """The protocol of the box that serves a model, or "" when no box can be told (an ambiguous name)."""
    try:
        return llm.box_of(model).kind
    except LLMError:
        return ""


def chat_options(turn: Turn, settings: Settings) -> ChatOptions:
    """The options sent with every answer: a fixed window per model, low temperature, the answer's room."""
    return ChatOptions(turn.num_ctx, settings.temperature, turn.answer_tokens)


def stream_answer(turn: Turn, llm: Backend, settings: Settings) -> Iterator[str]:
    """Stream the answer's text, keeping the partial answer and the error if the model server fails."""
    started = time.perf_counter()
    try:
        if turn.preflight_error is not None:
            raise turn.preflight_error
        for piece in llm.stream_chat(turn.model, turn.prompt.messages, chat_options(turn, settings), turn.usage):
            if turn.timings.first_token_ms is None:
                turn.timings.first_token_ms = (time.perf_counter() - started) * 1000
            turn.pieces.append(piece)
            yield piece
    except LLMError as exc:
        turn.error = exc
    finally:
        turn.timings.total_ms = turn.timings.retrieve_ms + turn.timings.prompt_ms + (time.perf_counter() - started) * 1000


def warm_in_background(llm: Backend, model: str, settings: Settings) -> None:
    """Start loading the model in a thread so the first question does not wait; failures show on the real request."""

    def warm() -> None:
        num_ctx, error = choose_num_ctx(llm, model, settings)
        if error is None:
            with contextlib.suppress(RagError):
                llm.warm(model, num_ctx)

    threading.Thread(target=warm, name="warm-model", daemon=True).start()
