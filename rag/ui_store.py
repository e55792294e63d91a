"""The store as the sidebar shows it: counts, embedder, last ingest, filter choices; and uploads to ingest."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from rag.errors import StoreError
from rag.settings import Settings

MAX_FILTER_VALUES = 50
INTERNAL_FIELDS = {"doc_id", "title", "headings", "chunk_index", "n_chunks", "doc_hash", "source", "root", "page", "ingest_seq"}
UPLOAD_TYPES = ["md", "markdown", "txt", "text", "json", "jsonl", "ndjson", "pdf", "html", "htm", "docx"]
FOLDER = "folder"


@dataclass
class StoreSummary:
    """What the store holds and what can be filtered on."""

    documents: int = 0
    chunks: int = 0
    embedder: str = ""
    updated_at: str = ""
    fields: dict[str, list] = field(default_factory=dict)
    folders: dict[str, list[str]] = field(default_factory=dict)


def folders_of(doc_id: str) -> list[str]:
    """Every folder a file's document id sits under: 'a/b/c.md' -> ['a', 'a/b']."""
    parents = PurePosixPath(doc_id).parents
    return [p.as_posix() for p in reversed(parents) if p.as_posix() not in (".", "")]


def store_version(collection) -> tuple[int, str]:
    """What changes when the store's contents change: its chunk count and last ingest time."""
    try:
        return collection.count(), str((collection.metadata or {}).get("updated_at", ""))
    except Exception as exc:  # Chroma raises many kinds when its folder or server goes away
        raise StoreError(f"Cannot read the store: {exc}") from None


def summarise_store(collection, metadatas: list[dict]) -> StoreSummary:
    """Summarise every chunk's metadata (as the chunk index holds it) under the collection's own stamps."""
    meta = collection.metadata or {}
    summary = StoreSummary(embedder=str(meta.get("embedder", "")), updated_at=str(meta.get("updated_at", "")))
    values: dict[str, set] = {}
    doc_ids: set[str] = set()
    for chunk in metadatas:
        summary.chunks += 1
        doc_ids.add(chunk["doc_id"])
        for key, value in chunk.items():
            if key not in INTERNAL_FIELDS and isinstance(value, (str, int, bool)):
                values.setdefault(key, set()).add(value)
    summary.documents = len(doc_ids)
    summary.fields = {
        key: sorted(found, key=str) for key, found in sorted(values.items()) if 1 < len(found) <= MAX_FILTER_VALUES
    }
    folders: dict[str, list[str]] = {}
    for doc_id in sorted(doc_ids):
        for folder in folders_of(doc_id):
            folders.setdefault(folder, []).append(doc_id)
    summary.folders = folders
    return summary


def filter_where(summary: StoreSummary, field_name: str | None, value) -> dict | None:
    """The Chroma filter for a sidebar choice: a folder becomes the list of its documents' ids."""
    if not field_name or value is None:
        return None
    if field_name == FOLDER:
        return {"doc_id": {"$in": summary.folders.get(value, [])}}
    return {field_name: value}


def uploads_dir(settings: Settings) -> Path:
    """Where uploaded files are kept so later ingests can tell them unchanged: inside the store folder."""
    return Path(settings.store_dir) / "uploads"


def save_uploads(files: list[tuple[str, bytes]], folder: Path) -> list[Path]:
    """Write uploaded files under folder by their base name; hidden or empty names are ignored."""
    folder.mkdir(parents=True, exist_ok=True)
    saved = []
    for name, data in files:
        base = Path(name.replace("\\", "/")).name
        if not base or base.startswith("."):
            continue
        target = folder / base
        target.write_bytes(data)
        saved.append(target)
    return saved
