"""Notes taken on the parts of a long document, kept on disk per (document version, model, part size), so a second
question over the same document re-reads nothing already read."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path

from rag.chat.citations import CITATION
from rag.core.settings import Settings, index_folder

NOTES_VERSION = 1  # raised when the notes prompt changes, so notes taken with an older prompt are not reused


def notes_folder(settings: Settings) -> Path:
    """Where notes are kept: `notes` in the saved chunk index's folder (the store folder's `index/notes` by default)."""
    return index_folder(settings) / "notes"


def shift_citations(text: str, by: int) -> str:
    """The text with every cited section number moved by `by` (notes are kept numbered from the document's start)."""
    return CITATION.sub(lambda m: "[" + ", ".join(str(int(n) + by) for n in m.group(1).split(",")) + "]", text)


class NotesCache:
    """The notes of one document version read by one model in parts of one size: part index -> notes."""

    def __init__(self, folder: Path, doc_hash: str, model: str, part_tokens: int):
        key = json.dumps([NOTES_VERSION, doc_hash, model, part_tokens])
        self.path = folder / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"
        self.usable = bool(doc_hash)  # a document without a version hash is never cached
        self.notes = self.read() if self.usable else {}

    def read(self) -> dict[int, str]:
        """The saved notes; none when the file is missing or unreadable (it is then rewritten)."""
        try:
            saved = json.loads(self.path.read_text(encoding="utf-8"))
            return {int(index): str(text) for index, text in saved["parts"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return {}

    def get(self, index: int, first_section: int) -> str | None:
        """A part's notes, their citations numbered as the sections are now, or None when not read yet."""
        text = self.notes.get(index)
        return None if text is None else shift_citations(text, first_section - 1)

    def put(self, index: int, text: str, first_section: int) -> None:
        """Keep a part's notes, at once on disk (written whole, so a crash leaves the last good file)."""
        if not self.usable:
            return
        self.notes[index] = shift_citations(text, 1 - first_section)
        with contextlib.suppress(OSError):  # a read-only store still answers; it only re-reads next time
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                json.dump({"parts": {str(i): t for i, t in sorted(self.notes.items())}}, file, ensure_ascii=False)
            os.replace(temporary, self.path)
