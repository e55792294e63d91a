"""Conversations kept in a local SQLite file beside the store, so a reload or restart restores them."""
from __future__ import annotations

import json
import sqlite3
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from rag.settings import Settings

FILENAME = "conversations.sqlite3"
TITLE_CHARS = 60

SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    meta TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages(conversation_id, id);
"""


@dataclass
class Conversation:
    """A saved conversation's id, title and times."""

    id: str
    title: str
    created_at: str
    updated_at: str


@dataclass
class Message:
    """One saved message; meta holds what the page needs to redraw an answer (sources, figures, error)."""

    id: int
    role: str
    content: str
    meta: dict = field(default_factory=dict)


def history_path(settings: Settings) -> Path:
    """Where conversations are kept: a SQLite file inside the store folder."""
    return Path(settings.store_dir) / FILENAME


def now() -> str:
    """The current UTC time as ISO 8601, sortable as text."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def title_from(question: str) -> str:
    """A conversation title from its first question."""
    line = " ".join(question.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


class History:
    """Conversations and their messages in one SQLite file; one short connection per call."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as db:
            db.executescript(SCHEMA)

    def connect(self) -> sqlite3.Connection:
        """A connection with foreign keys on; used as a context manager it commits or rolls back."""
        db = sqlite3.connect(self.path, timeout=10)
        db.execute("PRAGMA foreign_keys = ON")
        return db

    def create(self, first_question: str) -> Conversation:
        """Start a conversation titled after its first question."""
        stamp = now()
        conversation = Conversation(uuid.uuid4().hex, title_from(first_question), stamp, stamp)
        with self.connect() as db:
            db.execute(
                "INSERT INTO conversations (id, title, created_at, updated_at) VALUES (?, ?, ?, ?)",
                (conversation.id, conversation.title, stamp, stamp),
            )
        return conversation

    def list(self) -> list[Conversation]:
        """Every conversation, most recently active first."""
        with self.connect() as db:
            rows = db.execute(
                "SELECT id, title, created_at, updated_at FROM conversations ORDER BY updated_at DESC, rowid DESC"
            ).fetchall()
        return [Conversation(*row) for row in rows]

    def get(self, conversation_id: str) -> Conversation | None:
        """One conversation, or None when it does not exist (e.g. deleted in another tab)."""
        with self.connect() as db:
            row = db.execute(
                "SELECT id, title, created_at, updated_at FROM conversations WHERE id = ?", (conversation_id,)
            ).fetchone()
        return Conversation(*row) if row else None

    def add(self, conversation_id: str, role: str, content: str, meta: dict | None = None) -> Message:
        """Append a message and mark the conversation active."""
        stamp = now()
        encoded = json.dumps(meta or {}, ensure_ascii=False)
        with self.connect() as db:
            cursor = db.execute(
                "INSERT INTO messages (conversation_id, role, content, meta, created_at) VALUES (?, ?, ?, ?, ?)",
                (conversation_id, role, content, encoded, stamp),
            )
            db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (stamp, conversation_id))
        return Message(cursor.lastrowid, role, content, meta or {})

    def messages(self, conversation_id: str) -> list[Message]:
        """A conversation's messages in the order they were said."""
        with self.connect() as db:
            rows = db.execute(
                "SELECT id, role, content, meta FROM messages WHERE conversation_id = ? ORDER BY id", (conversation_id,)
            ).fetchall()
        return [Message(row[0], row[1], row[2], json.loads(row[3])) for row in rows]

    def delete(self, conversation_id: str) -> None:
        """Delete a conversation and its messages."""
        with self.connect() as db:
            db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))


def chat_history(messages: list[Message]) -> list[dict]:
    """The turns to give the model as history: questions and real answers, not notices or failures."""
    turns: list[dict] = []
    for message in messages:
        if message.role == "user":
            turns.append({"role": "user", "content": message.content})
        elif message.role == "assistant" and message.content and message.meta.get("kind") == "answer":
            turns.append({"role": "assistant", "content": message.content})
    # a question whose answer failed is dropped, so user/assistant turns stay paired
    paired: list[dict] = []
    for index, turn in enumerate(turns):
        following = turns[index + 1] if index + 1 < len(turns) else None
        if turn["role"] == "user" and (following is None or following["role"] != "assistant"):
            continue
        paired.append(turn)
    return paired
