"""The data that flows from loaders to chunking: documents made of titled sections."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field


@dataclass
class Section:
    """A run of text under one heading path (or one page), with its own metadata."""

    text: str
    headings: tuple[str, ...] = ()
    metadata: dict = field(default_factory=dict)


@dataclass
class Document:
    """One citable unit: a file or a record."""

    doc_id: str
    title: str
    sections: list[Section]
    metadata: dict = field(default_factory=dict)

    def content_hash(self) -> str:
        """A hash of everything that ends up in the store for this document."""
        payload = json.dumps(
            [self.title, self.metadata, [(s.text, s.headings, s.metadata) for s in self.sections]],
            sort_keys=True,
            ensure_ascii=False,
            default=str,
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Problem:
    """Something wrong with part of an input: skipped, or only worth a warning."""

    where: str
    reason: str
    skipped: bool = True


class LoadError(Exception):
    """A file or record that cannot be ingested; the message is the reason shown to the user."""
