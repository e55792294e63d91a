"""Which files a run reads: every file under the given paths, with its document id; loops, duplicates and
unreadable entries reported instead of read."""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

from ingest.storable import readable_path


@dataclass(frozen=True)
class Source:
    """A file to ingest, the root it was found under, its document id, and the names the store keeps for both."""

    path: Path
    root: Path
    doc_id: str

    @property
    def name(self) -> str:
        """The file's path as stored and reported (bytes that are not UTF-8 escaped)."""
        return readable_path(self.path)

    @property
    def root_name(self) -> str:
        """The root as stored."""
        return readable_path(self.root)


def discover(paths: list[Path], skipped: list[tuple[str, str]], exclude: set[str] = frozenset()) -> list[Source]:
    """Every file under the given paths, with ids relative to the path it was found under.

    Folder symlinks are followed, but a link back into its own ancestry (a loop) and a file reached
    twice are reported instead of read again. Hidden files and folders and the excluded folders are ignored.
    """
    sources: list[Source] = []
    seen_files: dict[str, str] = {}

    def add(path: Path, root: Path, doc_id: str) -> None:
        real = os.path.realpath(path)
        if real in seen_files:
            skipped.append((readable_path(path), f"same file as {seen_files[real]}"))
            return
        seen_files[real] = readable_path(path)
        sources.append(Source(path, root, readable_path(doc_id)))

    def walk(folder: Path, root: Path, ancestors: frozenset[str]) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            skipped.append((readable_path(folder), f"cannot list the folder: {exc.strerror or exc}"))
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            try:
                if entry.is_dir():
                    real = os.path.realpath(path)
                    if real in exclude:
                        continue
                    if real in ancestors:
                        skipped.append((readable_path(path), f"symlink loop: leads back to {readable_path(real)}"))
                        continue
                    walk(path, root, ancestors | {real})
                elif entry.is_file():
                    add(path, root, path.relative_to(root).as_posix())
                else:
                    skipped.append((readable_path(path), unreadable_reason(path)))
            except OSError:
                skipped.append((readable_path(path), unreadable_reason(path)))

    for given in paths:
        given = Path(given)
        if not given.exists():
            skipped.append((readable_path(given), unreadable_reason(given) if given.is_symlink() else "does not exist"))
            continue
        root = given.resolve()
        if root.is_file():
            add(root, root, given.name)
        elif root.is_dir():
            walk(root, root, frozenset({str(root)}))
        else:
            skipped.append((readable_path(given), unreadable_reason(given)))
    return sources


def unreadable_reason(path: Path) -> str:
    """Why a path that is neither a file nor a folder cannot be read."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symlink loop"
        return "broken symlink (its target does not exist)" if path.is_symlink() else f"cannot read: {exc.strerror}"
    return "not a regular file (a pipe, socket or device)"
