"""Whole-document questions: the scoped documents sent whole when they fit the context after the answer's room, else
read in parts (map: notes per part, cached; reduce: the notes combined, recursively if needed, into the answer)."""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from rag.chat.notes_cache import NotesCache, notes_folder
from rag.chat.prompt import Prompt, estimate_messages, fence_key
from rag.chat.reading import Part, ScopedDocument, plan_parts, snapshot
from rag.chat.turn import FINAL_ERRORS, Turn, answer_room, backend_kind, choose_num_ctx
from rag.chat.whole_prompts import (
    COMBINE_RULES, MAP_RULES, REDUCE_RULES, WHOLE_RULES, Notes, combine_message, map_message, reduce_message,
    whole_message,
)
from rag.core.errors import PromptTooLong, RagError
from rag.core.settings import Settings
from rag.llm.backend import Backend, ChatOptions, ChatUsage

NOTES_SHARE = 2  # notes on a part, or combined notes, take at most half the answer's room: two always fit a request

WIDEST_PART = 99_999  # part numbers are budgeted as this wide
Progress = Callable[[int, int], None]  # (part number about to be read, parts in all)


class DocumentTooLong(RagError):
    """The scoped documents are over RAG_MAX_WHOLE_TOKENS."""


@dataclass
class Reading:
    """How a whole-document question was read: the mode, the parts, how many came from the cache, whether it stopped."""

    mode: str  # "whole" or "parts"
    scope: list[str]
    document_tokens: int
    parts: int = 1
    covered: int = 1  # parts whose text or notes the answer rests on
    cached: int = 0
    requests: int = 0  # requests made before the answer's own
    stopped: bool = False
    notes: list[Notes] = field(default_factory=list, repr=False)

    def summary(self) -> str:
        """The line shown under the answer: "read whole: 3,400 tokens" or "read in 7 parts"."""
        if self.mode == "whole":
            return f"read whole: {self.document_tokens:,} tokens"
        text = f"read in {self.parts} parts"
        if self.cached:
            text += f" ({self.cached} from notes taken before)"
        if self.stopped:
            text += f"; stopped: the answer covers {covered_text(self.covered)} of {self.parts}"
        return text


def covered_text(covered: int) -> str:
    """ "parts 1-3", "part 1", or "no part"."""
    return "no part" if covered == 0 else "part 1" if covered == 1 else f"parts 1-{covered}"


@dataclass
class WholeTurn(Turn):
    """A turn over whole documents: the answer's own request is the whole text or the notes' reduction."""

    reading: Reading | None = None


def check_ceiling(documents: list[ScopedDocument], settings: Settings) -> int:
    """The scoped documents' estimated tokens, or the refusal when they are over RAG_MAX_WHOLE_TOKENS."""
    tokens = sum(document.tokens() for document in documents)
    if tokens > settings.max_whole_tokens:
        names = ", ".join(document.doc_id for document in documents)
        raise DocumentTooLong(
            f"{names} holds about {tokens:,} tokens, over RAG_MAX_WHOLE_TOKENS ({settings.max_whole_tokens:,}): it is "
            "not read whole. Ask about something specific in it (--mode search), scope a smaller document, or raise "
            "RAG_MAX_WHOLE_TOKENS."
        )
    return tokens


class WholeReader:
    """Reads scoped documents for one question with one model, requests sized by the chat path's budget."""

    def __init__(self, settings: Settings, llm: Backend, model: str, progress: Progress | None = None,
                 stop: threading.Event | None = None):
        self.settings, self.llm, self.model = settings, llm, model
        self.progress = progress or (lambda number, total: None)
        self.stop = stop or threading.Event()
        num_ctx, error = choose_num_ctx(llm, model, settings)
        if isinstance(error, FINAL_ERRORS):
            raise error
        self.num_ctx = num_ctx
        self.room = answer_room(num_ctx, settings)
        self.budget = num_ctx - self.room
        self.notes_tokens = self.room // NOTES_SHARE
        self.reading: Reading | None = None  # the reading in progress, for a progress callback to show

    def prepare(self, question: str, index, scope: list[str], compare: bool = False, force_parts: bool = False) -> WholeTurn:
        """Read the scoped documents as they are now; the turn's prompt is the one request that answers."""
        documents = snapshot(index, scope)
        tokens = check_ceiling(documents, self.settings)
        sections = [section.citation() for document in documents for section in document.sections]
        key = fence_key([question, *(f"{s.title}\n{s.text}\n{s.metadata}" for s in sections)])
        messages = [{"role": "system", "content": WHOLE_RULES}, {"role": "user", "content": whole_message(question, sections, key, compare)}]
        estimate = estimate_messages(messages)
        if estimate <= self.budget and not force_parts:
            prompt = Prompt(messages, sections, estimate, 0, 0, self.budget, key)
            return self.turn(question, prompt, Reading("whole", scope, tokens))
        reading = self.reading = Reading("parts", scope, tokens)
        self.read_parts(documents, reading)
        if reading.stopped:
            answer = "\n\n".join(notes.block() for notes in reading.notes)
            turn = self.turn(question, Prompt([], sections, 0, 0, 0, self.budget, ""), reading)
            turn.answer = answer
            return turn
        return self.turn(question, self.reduce(question, reading.notes, sections, compare, reading), reading)

    def turn(self, question: str, prompt: Prompt, reading: Reading) -> WholeTurn:
        """The turn that sends prompt as the answer's request."""
        return WholeTurn(question, question, self.model, self.num_ctx, [], prompt, answer_tokens=self.room,
                         backend=backend_kind(self.llm, self.model), reading=reading)

    def part_room(self, document: ScopedDocument) -> int:
        """Tokens a part's sections may take in a notes request on this document (counted with the widest part
        numbers, and a key of the fence's shape)."""
        fixed = estimate_messages([
            {"role": "system", "content": MAP_RULES},
            {"role": "user", "content": map_message(document.title, WIDEST_PART, WIDEST_PART, [], "k0" * 6)},
        ])
        return self.budget - fixed

    def read_parts(self, documents: list[ScopedDocument], reading: Reading) -> None:
        """Notes on every part, from the cache or the model, in reading order, until done or stopped."""
        folder = notes_folder(self.settings)
        plans = []
        for document in documents:
            room = self.part_room(document)
            plans.append((document, room, plan_parts(document, room)))
        reading.parts = sum(len(parts) for _, _, parts in plans)
        reading.covered = 0
        number = 0
        try:
            for document, room, parts in plans:
                cache = NotesCache(folder, document.doc_hash, self.model, room)
                for part in parts:
                    number += 1
                    notes = cache.get(part.index, document.first)
                    if notes is None:
                        if self.stop.is_set():
                            raise KeyboardInterrupt
                        self.progress(number, reading.parts)
                        notes = self.take_notes(part, len(parts))
                        reading.requests += 1
                        cache.put(part.index, notes, document.first)
                    else:
                        reading.cached += 1
                    reading.notes.append(Notes(document.title, part.index + 1, part.index + 1, len(parts), notes))
                    reading.covered = number
        except KeyboardInterrupt:
            reading.stopped = True

    def take_notes(self, part: Part, total: int) -> str:
        """Ask the model for the notes of one part."""
        key = fence_key([f"{c.title}\n{c.text}\n{c.metadata}" for c in part.citations()])
        messages = [
            {"role": "system", "content": MAP_RULES},
            {"role": "user", "content": map_message(part.document.title, part.index + 1, total, part.citations(), key)},
        ]
        return self.complete(messages)

    def complete(self, messages: list[dict]) -> str:
        """The whole reply to a notes request."""
        if estimate_messages(messages) > self.budget:  # planning keeps this from happening; never send a cut prompt
            raise PromptTooLong(f"A notes request needs about {estimate_messages(messages):,} tokens, over the {self.budget:,} the context leaves.")
        options = ChatOptions(self.num_ctx, self.settings.temperature, self.notes_tokens)
        return "".join(self.llm.stream_chat(self.model, messages, options, ChatUsage()))

    def reduce(self, question: str, notes: list[Notes], sections, compare: bool, reading: Reading) -> Prompt:
        """The answer's request over the notes, after combining runs of notes until they fit one request."""
        while True:
            blocks = [n.block() for n in notes]
            key = fence_key([question, *blocks])
            messages = [{"role": "system", "content": REDUCE_RULES}, {"role": "user", "content": reduce_message(question, blocks, key, compare)}]
            estimate = estimate_messages(messages)
            if estimate <= self.budget:
                return Prompt(messages, sections, estimate, 0, 0, self.budget, key)
            notes = self.combine(question, notes, reading)

    def combine(self, question: str, notes: list[Notes], reading: Reading, mix: bool = False) -> list[Notes]:
        """One round of shortening: runs of one document's notes that fit a request, each made into shorter notes;
        runs across documents (mix) once every document is down to notes that cannot be joined."""
        groups: list[list[Notes]] = [[]]
        for item in notes:
            trial = groups[-1] + [item]
            joinable = mix or not groups[-1] or groups[-1][-1].title == item.title
            if groups[-1] and (not joinable or self.combine_cost(question, trial) > self.budget):
                groups.append([item])
            else:
                groups[-1] = trial
        if all(len(group) == 1 for group in groups):
            if mix:
                raise PromptTooLong(
                    f"The notes do not fit one request ({self.budget:,} tokens) even two at a time: raise RAG_NUM_CTX "
                    "(within what the model supports) or lower RAG_ANSWER_TOKENS."
                )
            return self.combine(question, notes, reading, mix=True)
        combined = []
        for group in groups:
            if len(group) == 1:
                combined.append(group[0])
                continue
            blocks = [n.block() for n in group]
            key = fence_key([question, *blocks])
            messages = [{"role": "system", "content": COMBINE_RULES}, {"role": "user", "content": combine_message(question, blocks, key)}]
            first, last = group[0], group[-1]
            title = first.title if first.title == last.title else ""
            combined.append(Notes(title, first.first, last.last, first.total, self.complete(messages)))
            reading.requests += 1
        return combined

    @staticmethod
    def combine_cost(question: str, group: list[Notes]) -> int:
        """Estimated tokens of a combining request over a group of notes."""
        blocks = [n.block() for n in group]
        return estimate_messages([{"role": "system", "content": COMBINE_RULES}, {"role": "user", "content": combine_message(question, blocks, "k0" * 6)}])
