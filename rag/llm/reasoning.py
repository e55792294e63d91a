"""A thinking model's reasoning kept apart from its answer when it arrives inline, between <think> and </think>."""
from __future__ import annotations

OPEN, CLOSE = "<think>", "</think>"


class ThinkSplitter:
    """Splits a stream of text pieces into answer and reasoning; a tag cut across pieces is held until it is whole.

    Only a <think> block that opens the answer (after white space) is reasoning: a model quoting the tag later in its
    answer is answering, and its text is kept.
    """

    def __init__(self):
        self.held = ""
        self.thinking = False
        self.answered = False  # once the answer has begun, no <think> opens reasoning any more

    def feed(self, piece: str) -> tuple[str, str]:
        """(answer text, reasoning text) that can be released after this piece."""
        text, self.held = self.held + piece, ""
        answer, reasoning = [], []
        while text:
            if self.thinking:
                end = text.find(CLOSE)
                if end < 0:
                    keep = partial_tag(text, CLOSE)
                    reasoning.append(text[: len(text) - keep])
                    self.held = text[len(text) - keep :]
                    break
                reasoning.append(text[:end])
                text, self.thinking = text[end + len(CLOSE) :].lstrip(), False
                continue
            if self.answered:
                answer.append(text)
                break
            stripped = text.lstrip()
            if stripped.startswith(OPEN):
                text, self.thinking = stripped[len(OPEN) :], True
                continue
            if OPEN.startswith(stripped):  # white space, or the start of a tag: wait for more
                self.held = text
                break
            self.answered = True
        return "".join(answer), "".join(reasoning)

    def flush(self) -> tuple[str, str]:
        """What is still held when the stream ends: an unfinished tag is text after all."""
        held, self.held = self.held, ""
        return ("", held) if self.thinking else (held.strip() and held, "")


def partial_tag(text: str, tag: str) -> int:
    """How many characters at the end of text could be the start of tag."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0
