"""Conversations kept in a local SQLite file beside the store, per browser, so a reload or restart restores them."""
from __future__ import annotations

import errno
import json
import shutil
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
DAMAGED_TEXT = "Part of this message is damaged in the conversation file (bytes that are not UTF-8); it is shown as �."
DAMAGED_DETAILS = ("The saved details of this message (its sources, figures and state) are damaged in the conversation "
                   "file; its text is shown without them.")


class HistoryError(RagError):
    """The conversation file cannot be read or written."""

    exit_code = STORE


class DamagedPreferences(HistoryError):
    """A browser's saved choices cannot be read back; the rest of the file is fine."""


@dataclass
class Conversation:
    """A saved conversation's id, title and times."""

    id: str
    title: str
    created_at: str
    updated_at: str


@dataclass
class Message:
    """One saved message; meta holds what the page needs to redraw an answer (sources, figures, error, state), and
    damage what of it could not be read back (DAMAGED_TEXT, DAMAGED_DETAILS)."""

    id: int
    role: str
    content: str
    meta: dict = field(default_factory=dict)
    damage: tuple[str, ...] = ()


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


def unusable(path: Path, exc: BaseException) -> HistoryError:
    """The one line for a conversation file that cannot be read or written: its disk is full, or it is damaged."""
    return disk_full(path) if is_disk_full(exc) else damaged(path, exc)


def is_disk_full(exc: BaseException) -> bool:
    """True when SQLite ("database or disk is full") or the file system (ENOSPC) found no room to write."""
    if isinstance(exc, OSError):
        return exc.errno == errno.ENOSPC
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc)


def disk_full(path: Path) -> HistoryError:
    """The one line that says the disk holding the conversation file is full, and what is kept."""
    try:
        free = f" ({shutil.disk_usage(path.parent).free / 2**20:.1f} MB free)"
    except OSError:
        free = ""
    return HistoryError(
        f"The disk holding the conversation file {path} is full{free}, so this could not be saved. Free some space, "
        "then ask again; what was saved before is kept."
    )


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
            raise unusable(self.path, exc) from None
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
        """A connection with foreign keys on that commits or rolls back; a full disk or a damaged file raises
        HistoryError. Text that is not UTF-8 is read with U+FFFD in its place (messages note it: see saved_message)."""
        try:
            db = sqlite3.connect(self.path, timeout=10)
            db.text_factory = lambda raw: raw.decode("utf-8", "replace")
            try:
                with db:
                    db.execute("PRAGMA foreign_keys = ON")
                    yield db
            finally:
                db.close()
        except sqlite3.DatabaseError as exc:
            raise unusable(self.path, exc) from None

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
        """Set an answer's meta state (e.g. 'stopped') if it is one of only_from; its text is left alone (and damaged
        meta too: SQLite's JSON functions would refuse it)."""
        marks = ", ".join("?" for _ in only_from)
        with self.connect() as db:
            return db.execute(
                f"UPDATE messages SET meta = json_set(meta, '$.state', ?) WHERE id = ? "
                f"AND CASE WHEN json_valid(meta) THEN json_extract(meta, '$.state') END IN ({marks}) "
                "AND conversation_id IN (SELECT id FROM conversations WHERE owner = ?)",
                (state, message_id, *only_from, self.owner),
            ).rowcount == 1

    def message(self, message_id: int) -> Message | None:
        """One of this browser's messages."""
        with self.connect() as db:
            row = db.execute(
                "SELECT m.id, m.role, CAST(m.content AS BLOB), CAST(m.meta AS BLOB) FROM messages m "
                "JOIN conversations c ON c.id = m.conversation_id WHERE m.id = ? AND c.owner = ?",
                (message_id, self.owner),
            ).fetchone()
        return saved_message(*row) if row else None

    def messages(self, conversation_id: str) -> list[Message]:
        """A conversation's messages in the order they were said."""
        with self.connect() as db:
            if not self._owns(db, conversation_id):
                return []
            rows = db.execute(
                "SELECT id, role, CAST(content AS BLOB), CAST(meta AS BLOB) FROM messages WHERE conversation_id = ? "
                "ORDER BY id",
                (conversation_id,),
            ).fetchall()
        return [saved_message(*row) for row in rows]

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
        """This browser's saved choices (model, retrieval and generation settings); DamagedPreferences when they are
        not a JSON object (damaged, or written by hand)."""
        with self.connect() as db:
            row = db.execute("SELECT CAST(preferences AS BLOB) FROM browsers WHERE owner = ?", (self.owner,)).fetchone()
        if row is None:
            return {}
        preferences = json_object(row[0])
        if preferences is None:
            raise DamagedPreferences(
                f"Your saved settings in {self.path} were damaged (not a JSON object): the defaults are used and saved "
                "in their place."
            )
        return preferences

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


def json_object(raw: bytes) -> dict | None:
    """A JSON object stored as UTF-8 text, or None when the bytes are not one."""
    try:
        value = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # not UTF-8, not JSON, or nested too deeply
        return None
    return value if isinstance(value, dict) else None


def saved_message(message_id: int, role: str, content: bytes, meta: bytes) -> Message:
    """A message read back from its stored bytes; text that is not UTF-8 and damaged meta are noted, not raised."""
    damage = []
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        text = content.decode("utf-8", "replace")
        damage.append(DAMAGED_TEXT)
    details = json_object(meta)
    if details is None:
        damage.append(DAMAGED_DETAILS)
    return Message(message_id, role, text, details or {}, tuple(damage))


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
