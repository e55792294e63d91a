"""Bytes of a text file as text: UTF-8 (a byte-order mark dropped); else Windows' Western code page, else latin-1."""
from __future__ import annotations


def decode_utf8_or_legacy(raw: bytes) -> tuple[str, str | None]:
    """The text and, when it is not UTF-8, what was done instead: 'not UTF-8 (byte 21); decoded as cp1252'.

    cp1252 is what Windows programs (Excel's plain "CSV" among them) write; latin-1 decodes the bytes it lacks.
    """
    try:
        return raw.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        position = exc.start
    try:
        return raw.decode("cp1252"), f"not UTF-8 (byte {position}); decoded as cp1252"
    except UnicodeDecodeError:
        return raw.decode("latin-1"), f"not UTF-8 (byte {position}); decoded as latin-1"
