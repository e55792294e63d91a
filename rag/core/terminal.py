"""Untrusted text made safe for a terminal: control, escape, C1, bidi and zero-width characters are shown, never
emitted (which characters, and how they are shown: rag/core/invisible.py, as on the pages)."""
from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable, Iterator

from rag.core.errors import OUTPUT_CLOSED
from rag.core.invisible import FORMATTING, SURROGATES, UNSAFE, UNSAFE_IN_TEXT, escaped, shown

TEXT = re.compile(f"\r\n?|{UNSAFE_IN_TEXT.pattern}")
JSON_UNSAFE = re.compile(f"[\x7f-\x9f{FORMATTING}{SURROGATES}]")  # json.dumps already escapes C0 controls
LINE_BREAKS = ("\r\n", "\r")


def _multi_line(match: re.Match) -> str:
    """An unsafe character (or a \r\n) found in a block of text: made a line break, or escaped."""
    char = match.group(0)
    return "\n" if char in LINE_BREAKS else escaped(char)


def safe_line(text: object) -> str:
    """Text for one line of output (an id, a title, a file name, an error): every unsafe character shown escaped."""
    return UNSAFE.sub(shown, str(text))


def safe_text(text: str) -> str:
    """Text for a block of output (an answer): line breaks and tabs kept, \\r\\n and \\r read as line breaks, the rest escaped."""
    return TEXT.sub(_multi_line, text)


def safe_stream(pieces: Iterable[str]) -> Iterator[str]:
    """safe_text over a stream of pieces, piece by piece; a \\r at the end of a piece waits for a \\n that may follow."""
    held = ""
    for piece in pieces:
        text, held = held + piece, ""
        if text.endswith("\r"):
            text, held = text[:-1], "\r"
        if text:
            yield safe_text(text)
    if held:
        yield safe_text(held)


def safe_json(value: object) -> str:
    """JSON text in which every character a terminal could act on is a \\u escape (json.dumps leaves C1 and bidi raw)."""
    return JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", json.dumps(value, ensure_ascii=False))


def error_line(message: object) -> str:
    """The one `error:` line a CLI prints for a failure."""
    return f"error: {safe_line(message)}"


def print_error(message: object) -> None:
    """Print the `error:` line on stderr."""
    print(error_line(message), file=sys.stderr, flush=True)


def tolerant_output() -> None:
    """Make stdout and stderr show characters their encoding lacks as escapes, instead of raising mid-answer."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def output_closed() -> int:
    """After stdout's reader went away (`| head`): the rest goes nowhere (so the exit flush cannot fail); exit 141."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return OUTPUT_CLOSED
