"""One chat turn: retrieve, build the prompt, stream the answer, and time each step."""
from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from rag.core.errors import ModelCannotChat, ModelNotFound, OllamaError, OllamaUnavailable, RagError
from rag.llm.ollama import ChatStats, Ollama
from rag.chat.prompt import Citation, Prompt, build_prompt
from rag.search.retrieval import RetrievedDoc, Retriever
from rag.core.settings import Settings

ANSWER_SHARE = 4  # the answer's room is at most a quarter of a small context window
# Our estimate is 1.1x to 1.6x the true count, so a prompt Ollama read whole scores above half of it. A cut prompt
# reads as about half the window the model really ran with (older Ollama), or as the whole window (newer).
TRUNCATION_RATIO = 0.5
FINAL_ERRORS = (OllamaUnavailable, ModelNotFound, ModelCannotChat)  # a chat request would fail the same way


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
    error: OllamaError | None = None
    stats: ChatStats = field(default_factory=ChatStats)
    timings: Timings = field(default_factory=Timings)
    answer_tokens: int = 0
    preflight_error: OllamaError | None = field(default=None, repr=False)

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
        """True when Ollama cut the prompt silently: it read far fewer tokens than estimated, or a full window."""
        evaluated = self.stats.prompt_eval_count
        return 0 < evaluated and (evaluated < self.prompt.estimated_tokens * TRUNCATION_RATIO or evaluated >= self.num_ctx)

    @property
    def cut_short(self) -> bool:
        """True when the answer stopped at the answer-length limit (num_predict)."""
        return self.stats.done_reason == "length"


def answer_room(num_ctx: int, settings: Settings) -> int:
    """Tokens kept free for the answer: RAG_ANSWER_TOKENS, at most a quarter of the window."""
    return min(settings.answer_tokens, num_ctx // ANSWER_SHARE)


def choose_num_ctx(llm: Ollama, model: str, settings: Settings) -> tuple[int, OllamaError | None]:
    """RAG_NUM_CTX capped by the model's trained context (asked once per model), and what stops the model answering."""
    try:
        info = llm.model_info(model)
    except OllamaError as exc:
        return settings.num_ctx, exc
    num_ctx = min(settings.num_ctx, info.context_length) if info.context_length else settings.num_ctx
    return num_ctx, None if info.can_chat else llm.cannot_chat(model)


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
    llm: Ollama | None = None,
) -> Turn:
    """Retrieve the documents for a question (or for query, a condensed form of it) and build the prompt to send."""
    model = model or settings.model
    query = query or question
    started = time.perf_counter()
    docs = retriever.search(query, k or settings.top_k, where)
    retrieved = time.perf_counter()
    num_ctx, lookup_error = choose_num_ctx(llm or Ollama(settings), model, settings)
    room = answer_room(num_ctx, settings)
    prompt = build_prompt(question, docs, history or [], num_ctx - room)
    turn = Turn(question, query, model, num_ctx, docs, prompt, answer_tokens=room)
    if isinstance(lookup_error, FINAL_ERRORS):
        turn.preflight_error = lookup_error
    turn.timings.retrieve_ms = (retrieved - started) * 1000
    turn.timings.prompt_ms = (time.perf_counter() - retrieved) * 1000
    return turn


def chat_options(turn: Turn, settings: Settings) -> dict:
    """The options sent with every answer: a fixed window per model, low temperature, the answer's room."""
    return {"num_ctx": turn.num_ctx, "temperature": settings.temperature, "num_predict": turn.answer_tokens}


def stream_answer(turn: Turn, llm: Ollama, settings: Settings) -> Iterator[str]:
    """Stream the answer's text, keeping the partial answer and the error if Ollama fails."""
    started = time.perf_counter()
    try:
        if turn.preflight_error is not None:
            raise turn.preflight_error
        for piece in llm.stream_chat(turn.model, turn.prompt.messages, chat_options(turn, settings), turn.stats):
            if turn.timings.first_token_ms is None:
                turn.timings.first_token_ms = (time.perf_counter() - started) * 1000
            turn.pieces.append(piece)
            yield piece
    except OllamaError as exc:
        turn.error = exc
    finally:
        turn.timings.total_ms = turn.timings.retrieve_ms + turn.timings.prompt_ms + (time.perf_counter() - started) * 1000


def warm_in_background(llm: Ollama, model: str, settings: Settings) -> None:
    """Start loading the model in a thread so the first question does not wait; failures show on the real request."""

    def warm() -> None:
        num_ctx, error = choose_num_ctx(llm, model, settings)
        if error is None:
            with contextlib.suppress(RagError):
                llm.warm(model, num_ctx)

    threading.Thread(target=warm, name="warm-model", daemon=True).start()
