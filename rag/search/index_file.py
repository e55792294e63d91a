"""The chunk index saved beside the store: one file, written atomically, checked whole when read back.

Layout: a magic line, the length of a JSON header, the header's CRC-32, the header, then raw parts (vectors, BM25
term counts, and the ids, texts and metadatas as JSON). The header lists each part's type, shape, offset and CRC-32,
so a truncated or damaged file is refused rather than half-read, and reading is one copy per part (no zip, no pickle:
loading never runs code). The header also says which collection, embedder and change sequence the contents match;
its own CRC means one flipped bit there (in the sequence, say) is caught too, instead of serving old text.
"""
from __future__ import annotations

import hashlib
import os
import threading
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import orjson
from scipy import sparse

from rag.search.bm25 import TermCounts

FORMAT = 4  # 4: source code's BM25 terms include the words of identifiers (rag/search/chunk_index.py): 3 is rebuilt
MAGIC = b"RAG-CHUNK-INDEX 3\n"  # the layout, unchanged since format 3
FORMAT_2_MAGIC = b"RAG-CHUNK-INDEX\n"  # before the header had its CRC: an older file, not a damaged one
PREFIX = len(MAGIC) + 8 + 4  # the magic line, the header's length and its CRC-32


class IndexFileError(Exception):
    """The saved index is missing, unreadable or does not match the collection."""


class IndexFileDamaged(IndexFileError):
    """The saved index is truncated or damaged."""


@dataclass
class Header:
    """What a saved index describes: its collection, embedder, the change sequence it reaches, its size."""

    collection_id: str
    embedder: str
    dimension: int
    seq: int
    chunks: int
    generation: str | None = None
    format: int = FORMAT


@dataclass
class Saved:
    """A saved index as read back."""

    header: Header
    ids: list[str]
    texts: list[str]
    metadatas: list[dict]
    vectors: np.ndarray
    terms: TermCounts


def index_path(folder: Path, location: str, collection_name: str) -> Path:
    """The file for one store and collection inside the cache folder."""
    key = hashlib.sha256(f"{location}|{collection_name}".encode()).hexdigest()[:16]
    return Path(folder) / f"chunk-index-{key}.bin"


def json_part(value) -> np.ndarray:
    """A JSON value as a byte array part."""
    return np.frombuffer(orjson.dumps(value), dtype=np.uint8)


def save(path: Path, saved: Saved) -> None:
    """Write the index to a temporary file, flush it to disk, then put it in place in one rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    rows, columns = saved.terms.matrix, saved.terms.columns
    parts = {
        "ids": json_part(saved.ids),
        "texts": json_part(saved.texts),
        "metadatas": json_part(saved.metadatas),
        "vocabulary": json_part(saved.terms.vocabulary),
        "vectors": np.ascontiguousarray(saved.vectors, dtype=np.float32),
        "rows_data": rows.data, "rows_indices": rows.indices, "rows_indptr": rows.indptr,
        "columns_data": columns.data, "columns_indices": columns.indices, "columns_indptr": columns.indptr,
    }
    table, offset = {}, 0
    for name, array in parts.items():
        array = np.ascontiguousarray(array)
        table[name] = {"dtype": array.dtype.str, "shape": list(array.shape), "offset": offset, "crc": zlib.crc32(array)}
        offset += array.nbytes
    header = orjson.dumps({**asdict(saved.header), "parts": table})
    try:
        with open(temporary, "wb") as handle:
            handle.write(MAGIC + len(header).to_bytes(8, "little") + zlib.crc32(header).to_bytes(4, "little") + header)
            for array in parts.values():
                handle.write(memoryview(np.ascontiguousarray(array)).cast("B"))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def read_part(handle, start: int, spec: dict) -> np.ndarray:
    """One part, read into a fresh array and checked against its CRC."""
    array = np.empty(spec["shape"], dtype=np.dtype(spec["dtype"]))
    handle.seek(start + spec["offset"])
    if handle.readinto(memoryview(array).cast("B")) != array.nbytes:
        raise IndexFileDamaged("it is truncated")
    if zlib.crc32(array) != spec["crc"]:
        raise IndexFileDamaged("it is damaged (a checksum does not match)")
    return array


def read_header(handle, file_size: int) -> tuple[dict, int]:
    """The header's fields, checked against its CRC-32, and where the parts start."""
    magic = handle.read(len(MAGIC))
    if magic.startswith(FORMAT_2_MAGIC):
        raise IndexFileError(f"its format 2 is not {FORMAT}")
    if magic != MAGIC:
        raise IndexFileDamaged("it is not a saved chunk index")
    size = int.from_bytes(handle.read(8), "little")
    crc = int.from_bytes(handle.read(4), "little")
    if size > file_size - PREFIX:
        raise IndexFileDamaged("it is truncated, or its header is damaged")
    header = handle.read(size)
    if zlib.crc32(header) != crc:
        raise IndexFileDamaged("its header is damaged (a checksum does not match)")
    return orjson.loads(header), PREFIX + size


def load(path: Path) -> Saved:
    """Read a saved index whole; IndexFileError if it is missing, truncated, damaged or inconsistent."""
    if not path.is_file():
        raise IndexFileError("no saved index")
    try:
        with open(path, "rb") as handle:
            fields, start = read_header(handle, path.stat().st_size)
            if fields.get("format") != FORMAT:
                raise IndexFileError(f"its format {fields.get('format')} is not {FORMAT}")
            table = fields.pop("parts")
            header = Header(**fields)
            part = {name: read_part(handle, start, spec) for name, spec in table.items()}
    except IndexFileError:
        raise
    except Exception as exc:  # damage its checks let through can fail in many ways
        raise IndexFileDamaged(f"it is unreadable ({type(exc).__name__}: {exc})") from None
    ids, texts, metadatas, vocabulary = (orjson.loads(memoryview(part[name])) for name in ("ids", "texts", "metadatas", "vocabulary"))
    vectors = part["vectors"]
    shape = (len(ids), len(vocabulary))
    rows = sparse.csr_matrix((part["rows_data"], part["rows_indices"], part["rows_indptr"]), shape=shape)
    columns = sparse.csc_matrix((part["columns_data"], part["columns_indices"], part["columns_indptr"]), shape=shape)
    sizes = {len(ids), len(texts), len(metadatas), vectors.shape[0], header.chunks}
    if len(sizes) != 1 or (len(ids) and vectors.shape[1] != header.dimension):
        raise IndexFileDamaged("its parts disagree in size")
    return Saved(header, ids, texts, metadatas, vectors, TermCounts(rows, vocabulary, columns))
