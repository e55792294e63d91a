"""The characters untrusted text may not carry raw onto a page or a terminal, and how they are shown instead: one
definition for both (rag/core/terminal.py for the command lines, rag/ui/text.py for the pages)."""
from __future__ import annotations

import re

# C0 controls (ESC among them), DEL and C1 controls (0x9b is a one-byte CSI).
CONTROLS = "\x00-\x1f\x7f-\x9f"
# Characters that show nothing yet hide or reorder what is read: the Arabic letter mark; zero-width space, non-joiner
# and joiner; left-to-right and right-to-left marks; line and paragraph separators; bidi embeddings and overrides; word
# joiner and invisible operators; bidi isolates; zero-width no-break space (the byte-order mark).
FORMATTING = "\u061c\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u2069\ufeff"
# Lone surrogates: they cannot be encoded, so printing or sending them raises.
SURROGATES = "\ud800-\udfff"
UNSAFE = re.compile(f"[{CONTROLS}{FORMATTING}{SURROGATES}]")
# A block of text (an answer) keeps its tabs and line feeds.
UNSAFE_IN_TEXT = re.compile(f"(?![\t\n])[{CONTROLS}{FORMATTING}{SURROGATES}]")
NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def escaped(char: str) -> str:
    """The visible form of one unsafe character: \\x1b, \\u202e, \\u200b, \\n."""
    if char in NAMED:
        return NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown(match: re.Match) -> str:
    """An unsafe character found by UNSAFE or UNSAFE_IN_TEXT, escaped."""
    return escaped(match.group(0))
