"""Documents -> chunks sized in the embedder's word pieces, each carrying its title and heading path."""
from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

from ingest.documents import Document

BLOCK_CHARS = 20_000
MAX_PREFIX_TOKENS = 64
SENTENCE_ENDS = ".!?:;"


@dataclass
class Chunk:
    """A piece of a document as stored: its id, body text, the text embedded, and metadata."""

    id: str
    text: str
    embed_text: str
    metadata: dict


@dataclass(frozen=True)
class ChunkPlan:
    """How chunks are sized: body tokens, overlap, and the embedder's hard limit."""

    chunk_tokens: int
    overlap: int
    max_tokens: int

    def describe(self) -> str:
        """A stable string stored with the collection to detect a changed plan."""
        return f"tokens={self.chunk_tokens},overlap={self.overlap}"


@dataclass(frozen=True)
class Piece:
    """The body of one chunk, with the heading path and metadata of the section it comes from."""

    body: str
    headings: tuple[str, ...]
    metadata: dict


def chunk_document(document: Document, doc_hash: str, tokenizer, plan: ChunkPlan) -> list[Chunk]:
    """Split a document into chunks whose embedded text fits the embedder; tokenizer gives word-piece spans."""
    return chunks_of(document, document_pieces(document, tokenizer, plan), doc_hash, tokenizer)


def document_pieces(document: Document, tokenizer, plan: ChunkPlan, limit: int | None = None) -> list[Piece]:
    """The bodies of a document's chunks in order, at most limit of them (the text after those is not tokenised)."""
    return list(itertools.islice(iter_pieces(document, tokenizer, plan), limit))


def iter_pieces(document: Document, tokenizer, plan: ChunkPlan) -> Iterator[Piece]:
    """The bodies of a document's chunks, section by section, each section tokenised when it is reached."""
    for section in document.sections:
        prefix = embed_prefix(document.title, section.headings, tokenizer)
        budget = min(plan.chunk_tokens, plan.max_tokens - 2 - token_count(prefix, tokenizer))
        header = table_header(section.header, tokenizer)
        budget -= token_count(header, tokenizer)
        for block in split_blocks(section.text):
            # a table's chunks end at row ends and do not overlap: each starts with a whole row under the header
            for body in split_tokens(block, tokenizer, budget, 0 if header else plan.overlap, rows=bool(header)):
                yield Piece(body if body.startswith(section.header) else header + body, section.headings, section.metadata)


def table_header(header: str, tokenizer) -> str:
    """A table's header row as repeated at the top of its chunks: cut to a bounded number of tokens, with a newline."""
    if not header:
        return ""
    offsets = tokenizer(header)
    return (header[: offsets[MAX_PREFIX_TOKENS - 1][1]] if len(offsets) > MAX_PREFIX_TOKENS else header) + "\n"


def chunks_of(document: Document, pieces: list[Piece], doc_hash: str, tokenizer) -> list[Chunk]:
    """The chunks of a document version made of these pieces: ids, the text embedded (title and heading path first), metadata."""
    chunks = []
    for index, piece in enumerate(pieces):
        metadata = {
            **{key: value for key, value in document.metadata.items()},
            **piece.metadata,
            "doc_id": document.doc_id,
            "title": document.title,
            "headings": " > ".join(piece.headings),
            "chunk_index": index,
            "n_chunks": len(pieces),
            "doc_hash": doc_hash,
        }
        chunks.append(
            Chunk(
                id=chunk_id(document.doc_id, doc_hash, index),
                text=piece.body,
                embed_text=embed_prefix(document.title, piece.headings, tokenizer) + piece.body,
                metadata=metadata,
            )
        )
    return chunks


def chunk_id(doc_id: str, doc_hash: str, index: int) -> str:
    """The id of a document version's chunk: stable, so a re-run of the same version writes the same ids."""
    return f"{doc_id}:{doc_hash[:12]}:{index}"


def embed_prefix(title: str, headings: tuple[str, ...], tokenizer) -> str:
    """Title and heading path, cut to a bounded number of tokens, ending in a newline."""
    text = "\n".join(part for part in (title, " > ".join(headings)) if part)
    if not text:
        return ""
    offsets = tokenizer(text)
    if len(offsets) > MAX_PREFIX_TOKENS:
        text = text[: offsets[MAX_PREFIX_TOKENS - 1][1]]
    return text + "\n"


def token_count(text: str, tokenizer) -> int:
    """Word pieces in text, without special tokens."""
    return len(tokenizer(text)) if text else 0


def split_blocks(text: str) -> list[str]:
    """Cut very long text into blocks of bounded size at whitespace, so tokenising stays cheap."""
    blocks = []
    while len(text) > BLOCK_CHARS:
        cut = max(text.rfind("\n\n", 0, BLOCK_CHARS), text.rfind(" ", 0, BLOCK_CHARS))
        cut = cut if cut > BLOCK_CHARS // 2 else BLOCK_CHARS
        blocks.append(text[:cut])
        text = text[cut:]
    blocks.append(text)
    return [block.strip() for block in blocks if block.strip()]


def split_tokens(text: str, tokenizer, budget: int, overlap: int, rows: bool = False) -> list[str]:
    """Windows of at most budget tokens, ending at paragraph or sentence breaks (line ends, for rows) where possible."""
    offsets = tokenizer(text)
    total = len(offsets)
    if total <= budget:
        return [text]
    overlap = min(overlap, budget // 3)
    bodies, start = [], 0
    while start < total:
        end = min(start + budget, total)
        if end < total:
            end = best_break(text, offsets, start, end, budget, ROW_BREAKS if rows else TEXT_BREAKS)
        bodies.append(text[offsets[start][0] : offsets[end - 1][1]].strip())
        if end >= total:
            break
        start = word_start(text, offsets, max(end - overlap, start + 1))
    return [body for body in bodies if body]


TEXT_BREAKS = (  # where a window of text may end, best first: after a paragraph, a sentence, a line, a word
    lambda gap, last: "\n\n" in gap,
    lambda gap, last: gap and last in SENTENCE_ENDS,
    lambda gap, last: "\n" in gap,
    lambda gap, last: bool(gap),
)
ROW_BREAKS = (TEXT_BREAKS[2], TEXT_BREAKS[3])  # a table's rows are lines


def best_break(text: str, offsets, start: int, end: int, budget: int, breaks=TEXT_BREAKS) -> int:
    """The end index of a window: at the first kind of break in breaks found in its last 40%."""
    floor = start + int(budget * 0.6)
    for accept in breaks:
        for candidate in range(end, floor, -1):
            gap = text[offsets[candidate - 1][1] : offsets[candidate][0]]
            if accept(gap, text[offsets[candidate - 1][1] - 1]):
                return candidate
    return end


def word_start(text: str, offsets, index: int) -> int:
    """The first token at or after index that starts a word."""
    while index < len(offsets) - 1 and offsets[index][0] == offsets[index - 1][1]:
        index += 1
    return index
