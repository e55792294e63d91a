"""One chat turn: retrieve, build the prompt, stream the answer, and time each step."""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from rag.errors import OllamaError
from rag.llm import ChatStats, Ollama
from rag.prompt import Citation, Prompt, build_prompt
from rag.retrieval import RetrievedDoc, Retriever
from rag.settings import Settings


@dataclass
class Timings:
    """Milliseconds spent in each step of a turn."""

    retrieve_ms: float = 0.0
    first_token_ms: float | None = None
    total_ms: float = 0.0


@dataclass
class Turn:
    """A question, what was retrieved and sent, and the answer as it streams."""

    question: str
    query: str
    model: str
    num_ctx: int
    docs: list[RetrievedDoc]
    prompt: Prompt
    answer: str = ""
    error: OllamaError | None = None
    stats: ChatStats = field(default_factory=ChatStats)
    timings: Timings = field(default_factory=Timings)

    @property
    def citations(self) -> list[Citation]:
        """The numbered chunks the model was given."""
        return self.prompt.citations

    @property
    def truncated(self) -> bool:
        """True when Ollama evaluated fewer prompt tokens than we sent: it cut the prompt."""
        return 0 < self.stats.prompt_eval_count < self.prompt.estimated_tokens * 0.5


def prepare_turn(
    question: str,
    settings: Settings,
    retriever: Retriever,
    *,
    model: str | None = None,
    history: list[dict] | None = None,
    where: dict | None = None,
    k: int | None = None,
) -> Turn:
    """Retrieve the documents for a question and build the prompt to send."""
    started = time.perf_counter()
    docs = retriever.search(question, k or settings.top_k, where)
    retrieve_ms = (time.perf_counter() - started) * 1000
    prompt = build_prompt(question, docs, history or [], settings.num_ctx - settings.answer_tokens)
    turn = Turn(question, question, model or settings.model, settings.num_ctx, docs, prompt)
    turn.timings.retrieve_ms = retrieve_ms
    return turn


def stream_answer(turn: Turn, llm: Ollama, settings: Settings) -> Iterator[str]:
    """Stream the answer's text, keeping the partial answer and the error if Ollama fails."""
    started = time.perf_counter()
    options = {"num_ctx": turn.num_ctx, "temperature": settings.temperature}
    try:
        for piece in llm.stream_chat(turn.model, turn.prompt.messages, options, turn.stats):
            if turn.timings.first_token_ms is None:
                turn.timings.first_token_ms = (time.perf_counter() - started) * 1000
            turn.answer += piece
            yield piece
    except OllamaError as exc:
        turn.error = exc
    finally:
        turn.timings.total_ms = turn.timings.retrieve_ms + (time.perf_counter() - started) * 1000
