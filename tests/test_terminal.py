"""rag.terminal: untrusted text is shown, never obeyed, by a terminal."""
from __future__ import annotations

import json
import sys
import unicodedata

from rag.core.terminal import error_line, safe_json, safe_line, safe_stream, safe_text
from rag.ui.text import visible, visible_answer
from tests.fixtures.hostile import HOSTILE_ID, HOSTILE_ID_SHOWN, HOSTILE_TITLE, HOSTILE_TITLE_SHOWN, INVISIBLE, INVISIBLE_SHOWN


def test_one_line_shows_escapes_c1_controls_bidi_and_line_breaks_escaped():
    assert safe_line(HOSTILE_ID) == HOSTILE_ID_SHOWN
    assert safe_line(HOSTILE_TITLE) == HOSTILE_TITLE_SHOWN
    assert safe_line("a\nb\tc\rd\x00e\x7ff\u2066g\u2069h\u200fi\u2028j\ud800") == (
        "a\\nb\\tc\\rd\\x00e\\x7ff\\u2066g\\u2069h\\u200fi\\u2028j\\ud800"
    )


def test_ordinary_text_passes_unchanged():
    text = "Café naïve 東京 🙂 C:\\Users\\me [1] <b> ‘quotes’"
    assert safe_line(text) == text and safe_text(text) == text


def test_zero_width_and_invisible_characters_are_shown_escaped_in_lines_text_and_json():
    assert safe_line(f"gift{INVISIBLE}card") == f"gift{INVISIBLE_SHOWN}card"
    assert safe_line("non\u200cjoiner\u200djoiner\u2061apply") == "non\\u200cjoiner\\u200djoiner\\u2061apply"
    assert safe_text(f"one{INVISIBLE}\n\ttwo") == f"one{INVISIBLE_SHOWN}\n\ttwo"
    assert list(safe_stream(["one\u200b", "two\ufeff"])) == ["one\\u200b", "two\\ufeff"]
    shown = safe_json({"title": f"gift{INVISIBLE}"})
    assert shown == f'{{"title": "gift{INVISIBLE_SHOWN}"}}' and json.loads(shown) == {"title": f"gift{INVISIBLE}"}


def test_the_terminal_and_the_page_show_every_character_alike():
    """One definition of what is escaped, and how, serves both (rag/core/invisible.py): checked for every code point."""
    for char in map(chr, range(sys.maxunicode + 1)):
        if unicodedata.normalize("NFC", char) != char:
            continue  # the page shows text in NFC, the terminal as it is
        assert safe_text(char) == visible_answer(char), hex(ord(char))
        if char not in "\t\n":  # a one-line field shows them escaped; the page's one-line text makes them spaces
            assert safe_line(char) == visible(char), hex(ord(char))


def test_text_keeps_line_breaks_and_tabs_and_reads_carriage_returns_as_line_breaks():
    assert safe_text("one\ntwo\tcols\r\nthree\rfour\x1b[2J") == "one\ntwo\tcols\nthree\nfour\\x1b[2J"


def test_a_stream_is_made_safe_piece_by_piece_even_when_an_escape_sequence_is_split():
    pieces = ["Safe", " text\x1b", "[2J\x1b]0;", "title\x07 and\r", "\nmore\r", "over"]

    shown = list(safe_stream(pieces))

    assert shown == ["Safe", " text\\x1b", "[2J\\x1b]0;", "title\\x07 and", "\nmore", "\nover"]


def test_json_escapes_what_json_dumps_leaves_raw_and_still_parses_to_the_original():
    value = {"id": HOSTILE_ID, "title": HOSTILE_TITLE, "bad": "\ud800", "fine": "é 東京"}

    text = safe_json(value)

    assert not any(char in text for char in "\x1b\x07\x9b\u202e\ud800")
    assert '"title": "Gift cards\\u009b2J\\u202etxt.md"' in text and '"fine": "é 東京"' in text
    assert json.loads(text) == value


def test_error_line_is_one_line():
    assert error_line("bad\nname\x1b[31m") == "error: bad\\nname\\x1b[31m"
