"""Conversations kept in a local SQLite file beside the store, per browser, so a reload or restart restores them."""
from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from rag.core.errors import STORE, RagError
from rag.core.settings import Settings

FILENAME = "conversations.sqlite3"
TITLE_CHARS = 60
UNDO_DAYS = 1  # a deleted conversation can be restored for this long, then it is purged

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
CREATE TABLE IF NOT EXISTS browsers (
    owner TEXT PRIMARY KEY,
    preferences TEXT NOT NULL DEFAULT '{}'
);
"""
ADDED_COLUMNS = {"owner": "TEXT NOT NULL DEFAULT ''", "deleted_at": "TEXT"}
PREPARED: set[Path] = set()  # the files whose tables, added columns and purge this process has seen to
PREPARING = threading.Lock()


class HistoryError(RagError):
    """The conversation file cannot be read or written."""

    exit_code = STORE


@dataclass
class Conversation:
    """A saved conversation's id, title and times."""

    id: str
    title: str
    created_at: str
    updated_at: str


@dataclass
class Message:
    """One saved message; meta holds what the page needs to redraw an answer (sources, figures, error, state)."""

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


def damaged(path: Path, exc: BaseException) -> HistoryError:
    """The one line that names a damaged or unusable conversation file and how to recover."""
    return HistoryError(
        f"The conversation file {path} cannot be used ({exc}). Your documents are fine. Move the file aside "
        f"(`mv {path} {path}.broken`) and reload to start a new one; `sqlite3 {path}.broken .recover` "
        "can get old conversations back."
    )


class History:
    """One browser's conversations and messages in a shared SQLite file; one short connection per call.

    owner is the browser's secret id: a conversation is listed, opened, changed and deleted only by its owner.
    """

    def __init__(self, path: Path, owner: str = ""):
        self.path = Path(path)
        self.owner = owner
        key = self.path.resolve()
        with PREPARING:  # once per process and file (a page makes a History on every rerun), again for a new file
            if key not in PREPARED or not self.path.exists():
                self.prepare()
                PREPARED.add(key)

    def prepare(self) -> None:
        """Make the folder and the tables, add the columns later versions need, purge long-deleted conversations."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise damaged(self.path, exc) from None
        with self.connect() as db:
            db.executescript(SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(conversations)")}
            for name, kind in ADDED_COLUMNS.items():
                if name not in columns:
                    db.execute(f"ALTER TABLE conversations ADD COLUMN {name} {kind}")
            purge_before = (datetime.now(timezone.utc) - timedelta(days=UNDO_DAYS)).isoformat()
            db.execute("DELETE FROM conversations WHERE deleted_at IS NOT NULL AND deleted_at < ?", (purge_before,))

    @contextmanager
    def connect(self):
        """A connection with foreign keys on that commits or rolls back; a damaged file raises HistoryError."""
        try:
            db = sqlite3.connect(self.path, timeout=10)
            try:
                with db:
                    db.execute("PRAGMA foreign_keys = ON")
                    yield db
            finally:
                db.close()
        except sqlite3.DatabaseError as exc:
            raise damaged(self.path, exc) from None

    def claim_unowned(self) -> int:
        """Give this browser the conversations saved before history was kept per browser; returns how many."""
        with self.connect() as db:
            return db.execute("UPDATE conversations SET owner = ? WHERE owner = ''", (self.owner,)).rowcount

    def create(self, first_question: str) -> Conversation:
        """Start a conversation titled after its first question."""
        stamp = now()
        conversation = Conversation(uuid.uuid4().hex, title_from(first_question), stamp, stamp)
        with self.connect() as db:
            db.execute(
                "INSERT INTO conversations (id, title, created_at, updated_at, owner) VALUES (?, ?, ?, ?, ?)",
                (conversation.id, conversation.title, stamp, stamp, self.owner),
            )
        return conversation

    def list(self) -> list[Conversation]:
        """This browser's conversations, most recently active first."""
        with self.connect() as db:
            rows = db.execute(
                "SELECT id, title, created_at, updated_at FROM conversations WHERE owner = ? AND deleted_at IS NULL "
                "ORDER BY updated_at DESC, rowid DESC",
                (self.owner,),
            ).fetchall()
        return [Conversation(*row) for row in rows]

    def get(self, conversation_id: str) -> Conversation | None:
        """One of this browser's conversations, or None (deleted, another browser's, or never existed)."""
        with self.connect() as db:
            row = db.execute(
                "SELECT id, title, created_at, updated_at FROM conversations "
                "WHERE id = ? AND owner = ? AND deleted_at IS NULL",
                (conversation_id, self.owner),
            ).fetchone()
        return Conversation(*row) if row else None

    def add(self, conversation_id: str, role: str, content: str, meta: dict | None = None) -> Message:
        """Append a message to one of this browser's conversations and mark it active."""
        stamp = now()
        encoded = json.dumps(meta or {}, ensure_ascii=False)
        with self.connect() as db:
            if not self._owns(db, conversation_id):
                raise HistoryError("This conversation was deleted or belongs to another browser; start a new chat.")
            cursor = db.execute(
                "INSERT INTO messages (conversation_id, role, content, meta, created_at) VALUES (?, ?, ?, ?, ?)",
                (conversation_id, role, content, encoded, stamp),
            )
            db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (stamp, conversation_id))
        return Message(cursor.lastrowid, role, content, meta or {})

    def update(self, message_id: int, content: str, meta: dict) -> None:
        """Replace a message's text and meta (an answer saved as it streams)."""
        with self.connect() as db:
            db.execute(
                "UPDATE messages SET content = ?, meta = ? WHERE id = ? AND conversation_id IN "
                "(SELECT id FROM conversations WHERE owner = ?)",
                (content, json.dumps(meta, ensure_ascii=False), message_id, self.owner),
            )

    def change_state(self, message_id: int, state: str, only_from: tuple[str, ...]) -> bool:
        """Set an answer's meta state (e.g. 'stopped') if it is one of only_from; its text is left alone."""
        marks = ", ".join("?" for _ in only_from)
        with self.connect() as db:
            return db.execute(
                f"UPDATE messages SET meta = json_set(meta, '$.state', ?) WHERE id = ? "
                f"AND json_extract(meta, '$.state') IN ({marks}) "
                "AND conversation_id IN (SELECT id FROM conversations WHERE owner = ?)",
                (state, message_id, *only_from, self.owner),
            ).rowcount == 1

    def message(self, message_id: int) -> Message | None:
        """One of this browser's messages."""
        with self.connect() as db:
            row = db.execute(
                "SELECT m.id, m.role, m.content, m.meta FROM messages m JOIN conversations c ON c.id = m.conversation_id "
                "WHERE m.id = ? AND c.owner = ?",
                (message_id, self.owner),
            ).fetchone()
        return Message(row[0], row[1], row[2], json.loads(row[3])) if row else None

    def messages(self, conversation_id: str) -> list[Message]:
        """A conversation's messages in the order they were said."""
        with self.connect() as db:
            if not self._owns(db, conversation_id):
                return []
            rows = db.execute(
                "SELECT id, role, content, meta FROM messages WHERE conversation_id = ? ORDER BY id", (conversation_id,)
            ).fetchall()
        return [Message(row[0], row[1], row[2], json.loads(row[3])) for row in rows]

    def delete(self, conversation_id: str) -> None:
        """Delete a conversation; it can be restored for UNDO_DAYS, then it is purged with its messages."""
        with self.connect() as db:
            db.execute(
                "UPDATE conversations SET deleted_at = ? WHERE id = ? AND owner = ?", (now(), conversation_id, self.owner)
            )

    def restore(self, conversation_id: str) -> None:
        """Undo a delete."""
        with self.connect() as db:
            db.execute("UPDATE conversations SET deleted_at = NULL WHERE id = ? AND owner = ?", (conversation_id, self.owner))

    def preferences(self) -> dict:
        """This browser's saved choices (model, retrieval and generation settings)."""
        with self.connect() as db:
            row = db.execute("SELECT preferences FROM browsers WHERE owner = ?", (self.owner,)).fetchone()
        return json.loads(row[0]) if row else {}

    def save_preferences(self, preferences: dict) -> None:
        """Replace this browser's saved choices."""
        with self.connect() as db:
            db.execute(
                "INSERT INTO browsers (owner, preferences) VALUES (?, ?) "
                "ON CONFLICT(owner) DO UPDATE SET preferences = excluded.preferences",
                (self.owner, json.dumps(preferences, ensure_ascii=False)),
            )

    def _owns(self, db: sqlite3.Connection, conversation_id: str) -> bool:
        return db.execute(
            "SELECT 1 FROM conversations WHERE id = ? AND owner = ? AND deleted_at IS NULL", (conversation_id, self.owner)
        ).fetchone() is not None


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
