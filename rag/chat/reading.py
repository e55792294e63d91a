"""Scoped documents read once, up front, as numbered sections in reading order, and cut into parts that fit a budget."""
from __future__ import annotations

from dataclasses import dataclass, field

from rag.chat.prompt import Citation, context_block, estimate_tokens
from rag.core.errors import PromptTooLong, RagError

SECTION_CHUNKS = 4  # a section cites at most this many chunks (about 800 embedder tokens), so citations stay precise
OVERLAP_PROBE = 24  # characters of a chunk's start looked for in the chunk before it, to drop the overlap
BLOCK_SEPARATOR_TOKENS = 2  # the blank line between two numbered blocks


@dataclass(frozen=True)
class Piece:
    """One chunk of a section: its full text, and the text that follows the chunk before it (its overlap dropped)."""

    text: str
    tail: str


@dataclass
class Section:
    """A run of consecutive chunks under one heading path, page or row range, cited as [number]."""

    number: int
    doc_id: str
    title: str
    metadata: dict
    pieces: list[Piece] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The section's text, each chunk's overlap with the one before it dropped."""
        return "\n".join([self.pieces[0].text, *(piece.tail for piece in self.pieces[1:])])

    def citation(self) -> Citation:
        """The section as a numbered citation (its location is the heading path, page or rows)."""
        return Citation(self.number, self.doc_id, self.title, self.text, 0.0, self.metadata)


@dataclass
class ScopedDocument:
    """One document as it was when the reading started: its version hash and its sections."""

    doc_id: str
    title: str
    doc_hash: str
    sections: list[Section]

    @property
    def first(self) -> int:
        """The number of its first section."""
        return self.sections[0].number

    def tokens(self) -> int:
        """Estimated tokens of the document's text."""
        return sum(estimate_tokens(piece.tail) for section in self.sections for piece in section.pieces)


@dataclass
class Part:
    """A run of one document's chunks sent in one request: each as (section, piece, shown text)."""

    document: ScopedDocument
    index: int  # 0-based among the document's parts
    items: list[tuple[Section, Piece, str]] = field(default_factory=list)

    def citations(self) -> list[Citation]:
        """The part's blocks: consecutive pieces of one section joined under the section's number."""
        blocks: list[Citation] = []
        for section, _piece, shown in self.items:
            if blocks and blocks[-1].number == section.number:
                blocks[-1].text += "\n" + shown
            else:
                blocks.append(Citation(section.number, section.doc_id, section.title, shown, 0.0, section.metadata))
        return blocks


def location_key(metadata: dict) -> tuple:
    """What makes two chunks part of the same section: heading path, page, rows."""
    return metadata.get("headings", ""), metadata.get("page"), metadata.get("rows")


def tail_after_overlap(previous: str, text: str) -> str:
    """The text of a chunk after what it repeats of the chunk before it (chunks overlap by a few sentences)."""
    probe = text[:OVERLAP_PROBE]
    start = previous.find(probe) if probe else -1
    while start != -1:
        if text.startswith(previous[start:]):
            return text[len(previous) - start:].lstrip()
        start = previous.find(probe, start + 1)
    return text


def snapshot(index, doc_ids: list[str], first_number: int = 1) -> list[ScopedDocument]:
    """Copy the scoped documents' chunks out of the chunk index now, in reading order, as numbered sections."""
    positions = {doc_id: [] for doc_id in doc_ids}
    for position, metadata in enumerate(index.metadatas):
        if metadata.get("doc_id") in positions:
            positions[metadata["doc_id"]].append(position)
    documents, number = [], first_number
    for doc_id in doc_ids:
        ordered = sorted(positions[doc_id], key=lambda p: index.metadatas[p].get("chunk_index", 0))
        document = ScopedDocument(doc_id, "", "", [])
        previous: tuple | None = None
        for position in ordered:
            metadata, text = index.metadatas[position], index.texts[position]
            document.title = document.title or str(metadata.get("title", doc_id))
            document.doc_hash = document.doc_hash or str(metadata.get("doc_hash", ""))
            sections = document.sections
            same = previous == location_key(metadata) and len(sections[-1].pieces) < SECTION_CHUNKS
            tail = tail_after_overlap(sections[-1].pieces[-1].text, text) if same else text
            if not same:
                sections.append(Section(number, doc_id, document.title, metadata))
                number += 1
            sections[-1].pieces.append(Piece(text, tail))
            previous = location_key(metadata)
        if not any(piece.text.strip() for section in document.sections for piece in section.pieces):
            raise RagError(f"{doc_id} is empty: it holds no text to read. Ingest a version with text, or ask about another document.")
        documents.append(document)
    return documents


def block_cost(section: Section, text: str) -> int:
    """Estimated tokens of a numbered block holding text of the section, separator included."""
    return estimate_tokens(context_block(Citation(section.number, section.doc_id, section.title, text, 0.0, section.metadata))) + BLOCK_SEPARATOR_TOKENS


def plan_parts(document: ScopedDocument, room: int) -> list[Part]:
    """Cut a document into parts of whole chunks in reading order, each part's blocks costing at most room tokens."""
    parts = [Part(document, 0)]
    left = room
    for section in document.sections:
        for piece in section.pieces:
            continuing = bool(parts[-1].items) and parts[-1].items[-1][0] is section
            shown = piece.tail if continuing else piece.text
            cost = estimate_tokens(shown) + 1 if continuing else block_cost(section, shown)
            if cost > left and parts[-1].items:
                parts.append(Part(document, len(parts)))
                left, shown = room, piece.text
                cost = block_cost(section, shown)
            if cost > left:
                raise PromptTooLong(
                    f"One passage of {document.doc_id} needs about {cost:,} tokens, more than the {room:,} a request "
                    "leaves for it. Raise RAG_NUM_CTX (within what the model supports) or lower RAG_ANSWER_TOKENS."
                )
            parts[-1].items.append((section, piece, shown))
            left -= cost
    return parts
