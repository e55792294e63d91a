"""Uploaded files: stored under names that cannot escape their folder or silently replace another upload."""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from rag.core.settings import Settings

NAME_BYTES = 120  # well under every file system's 255-byte limit, with room for " (12)"
UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff<>:\"/\\|?*]")
FALLBACK_NAME = "upload"


@dataclass
class Saved:
    """One uploaded file: the name it came with, the path it was stored at, and what happened to it."""

    original: str
    path: Path | None
    note: str = ""
    created: bool = False  # a new file in the uploads folder (not a replacement, not one already there)


@dataclass
class SaveReport:
    """What saving a batch of uploads did, file by file."""

    files: list[Saved] = field(default_factory=list)

    @property
    def paths(self) -> list[Path]:
        """The files to ingest."""
        return [saved.path for saved in self.files if saved.path is not None]


def uploads_dir(settings: Settings) -> Path:
    """Where uploaded files are kept so later ingests can tell them unchanged: inside the store folder."""
    return Path(settings.store_dir) / "uploads"


def safe_name(name: str) -> str:
    """A file name that stays in its folder: base name only, no control, bidi or reserved characters, bounded length."""
    base = re.split(r"[/\\]", name)[-1]
    base = UNSAFE.sub("_", base).strip().lstrip(".").strip() or FALLBACK_NAME
    stem, dot, suffix = base.rpartition(".")
    if not dot or not stem or len(suffix.encode()) > 16:
        stem, suffix = base, ""
    while len((stem + (f".{suffix}" if suffix else "")).encode()) > NAME_BYTES:
        stem = stem[:-1]
    return stem.rstrip() + (f".{suffix}" if suffix else "") if stem.strip() else FALLBACK_NAME + (f".{suffix}" if suffix else "")


def numbered(name: str, n: int) -> str:
    """'notes.md' as its n-th variant: 'notes (2).md'."""
    stem, dot, suffix = name.rpartition(".")
    return f"{stem} ({n}).{suffix}" if dot and stem else f"{name} ({n})"


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_uploads(files: list[tuple[str, bytes]], folder: Path, *, replace: bool = False,
                 taken: frozenset[str] = frozenset()) -> SaveReport:
    """Store each upload under a safe name; a different file with the same name gets a numbered name unless replace.

    taken: document ids the store already holds from elsewhere (a file's id is its name), never reused.
    A name is claimed with an exclusive create, so two sessions uploading at once cannot take the same one. A file
    that cannot be written is reported and the rest of the batch still saved.
    """
    report = SaveReport()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        report.files = [Saved(name, None, f"not saved: cannot create {folder} ({exc.strerror or exc})") for name, _ in files]
        return report
    for original, data in files:
        report.files.append(save_one(original, data, folder, replace, taken))
    return report


def save_one(original: str, data: bytes, folder: Path, replace: bool, taken: frozenset[str]) -> Saved:
    """Store one upload; see save_uploads."""
    name = safe_name(original)
    renamed = f"saved as {name}" if name != original else ""
    for n in range(1, 1000):
        candidate = name if n == 1 else numbered(name, n)
        target = folder / candidate
        if candidate in taken and not target.exists():
            continue  # another document (not an upload) has this id
        try:
            with open(target, "xb") as out:
                out.write(data)
            note = renamed if n == 1 else f"saved as {candidate}: a different document named {name} is already in the store"
            return Saved(original, target, note, created=True)
        except FileExistsError:
            existing = target.read_bytes() if target.is_file() else None
            if existing == data:
                return Saved(original, target, f"unchanged: the same file is already in the store as {candidate}")
            if replace and n == 1:
                tmp = folder / f".{candidate}.{os.getpid()}.part"
                tmp.write_bytes(data)
                os.replace(tmp, target)
                return Saved(original, target, f"replaces the earlier {candidate}")
        except OSError as exc:
            return Saved(original, None, f"not saved ({exc.strerror or type(exc).__name__})")
    return Saved(original, None, f"not saved: too many files named {name}")
