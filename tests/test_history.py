"""Conversations in SQLite: saved, listed newest first, restored by a new process, deleted with their messages."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from rag.ui.history import FILENAME, Conversation, History, HistoryError, Message, chat_history, history_path, title_from
from rag.core.settings import Settings
from rag.ui.conversations import labels

ROOT = Path(__file__).resolve().parent.parent
OLD_SCHEMA = """
CREATE TABLE conversations (id TEXT PRIMARY KEY, title TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, conversation_id TEXT NOT NULL REFERENCES conversations(id)
    ON DELETE CASCADE, role TEXT NOT NULL, content TEXT NOT NULL, meta TEXT NOT NULL DEFAULT '{}', created_at TEXT NOT NULL);
INSERT INTO conversations VALUES ('old', 'From before', '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00');
INSERT INTO messages (conversation_id, role, content, created_at) VALUES ('old', 'user', 'q', '2026-01-01T00:00:00+00:00');
"""


def open_in_a_new_process(path: Path) -> None:
    """Open the history file as the app does when it starts again."""
    opening = "import sys; from rag.ui.history import History; History(sys.argv[1])"
    subprocess.run([sys.executable, "-c", opening, str(path)], cwd=ROOT, check=True)


def test_history_lives_in_the_store_folder(tmp_path):
    assert history_path(Settings(store_dir=tmp_path / "store")) == tmp_path / "store" / FILENAME


def test_messages_survive_a_restart_with_their_meta(tmp_path):
    path = tmp_path / "store" / FILENAME
    history = History(path)
    conversation = history.create("How do I install?")
    history.add(conversation.id, "user", "How do I install?")
    history.add(conversation.id, "assistant", "Run pip [1].", {"kind": "answer", "sources": [{"number": 1}]})

    restarted = History(path)
    assert [(m.role, m.content, m.meta) for m in restarted.messages(conversation.id)] == [
        ("user", "How do I install?", {}),
        ("assistant", "Run pip [1].", {"kind": "answer", "sources": [{"number": 1}]}),
    ]
    assert restarted.get(conversation.id).title == "How do I install?"


def test_conversations_are_listed_most_recently_active_first(tmp_path):
    history = History(tmp_path / FILENAME)
    first = history.create("first")
    second = history.create("second")
    assert [c.id for c in history.list()] == [second.id, first.id]

    history.add(first.id, "user", "again")
    assert [c.id for c in history.list()] == [first.id, second.id]


def test_delete_hides_a_conversation_undo_brings_it_back_and_a_day_later_it_is_purged(tmp_path):
    history = History(tmp_path / FILENAME)
    kept, gone = history.create("kept"), history.create("gone")
    history.add(kept.id, "user", "a")
    history.add(gone.id, "user", "b")

    history.delete(gone.id)
    assert [c.id for c in history.list()] == [kept.id]
    assert history.get(gone.id) is None
    history.restore(gone.id)
    assert [c.id for c in history.list()] == [gone.id, kept.id]
    assert [m.content for m in history.messages(gone.id)] == ["b"]

    history.delete(gone.id)
    two_days_ago = (datetime.now(timezone.utc) - timedelta(days=2)).isoformat()
    with sqlite3.connect(tmp_path / FILENAME) as db:
        db.execute("UPDATE conversations SET deleted_at = ? WHERE id = ?", (two_days_ago, gone.id))
    open_in_a_new_process(tmp_path / FILENAME)  # the next start purges it with its messages
    with sqlite3.connect(tmp_path / FILENAME) as db:
        assert db.execute("SELECT content FROM messages").fetchall() == [("a",)]


def test_opening_the_file_again_in_this_process_writes_nothing_so_it_never_waits_for_a_writer(tmp_path):
    path = tmp_path / FILENAME
    History(path, "me").create("kept")

    with closing(sqlite3.connect(path)) as writer:
        writer.execute("BEGIN IMMEDIATE")  # another connection holds the write lock, as an answer being saved does
        titles = [c.title for c in History(path, "me").list()]  # what every page rerun does
        writer.rollback()

    assert titles == ["kept"]


def test_a_file_moved_aside_is_made_anew_at_the_next_open_in_the_same_process(tmp_path):
    path = tmp_path / FILENAME
    History(path, "me").create("old")
    path.rename(path.with_suffix(".broken"))

    history = History(path, "me")
    history.create("new")

    assert [c.title for c in history.list()] == ["new"]


def test_each_browser_sees_and_changes_only_its_own_conversations(tmp_path):
    mine, theirs = History(tmp_path / FILENAME, "mine"), History(tmp_path / FILENAME, "theirs")
    conversation = mine.create("private")
    message = mine.add(conversation.id, "user", "secret")

    assert theirs.list() == [] and theirs.get(conversation.id) is None and theirs.messages(conversation.id) == []
    assert theirs.message(message.id) is None
    with pytest.raises(HistoryError):
        theirs.add(conversation.id, "user", "intrusion")
    theirs.delete(conversation.id)
    theirs.update(message.id, "changed", {})
    assert [c.id for c in mine.list()] == [conversation.id]
    assert [m.content for m in mine.messages(conversation.id)] == ["secret"]


def test_conversations_from_before_browsers_are_claimed_by_the_first_browser(tmp_path):
    with sqlite3.connect(tmp_path / FILENAME) as db:
        db.executescript(OLD_SCHEMA)
    first, second = History(tmp_path / FILENAME, "first"), History(tmp_path / FILENAME, "second")
    assert first.claim_unowned() == 1
    assert second.claim_unowned() == 0
    assert [c.title for c in first.list()] == ["From before"] and second.list() == []
    assert [m.content for m in first.messages("old")] == ["q"]


def test_an_answer_is_updated_in_place_as_it_streams(tmp_path):
    history = History(tmp_path / FILENAME, "me")
    conversation = history.create("q")
    message = history.add(conversation.id, "assistant", "", {"state": "streaming"})
    history.update(message.id, "The answer so", {"state": "interrupted"})
    assert (history.message(message.id).content, history.message(message.id).meta) == ("The answer so", {"state": "interrupted"})


def test_preferences_are_kept_per_browser(tmp_path):
    mine, theirs = History(tmp_path / FILENAME, "mine"), History(tmp_path / FILENAME, "theirs")
    mine.save_preferences({"model": "llama3.2:latest", "top_k": 7})
    mine.save_preferences({"model": "llama3.2:latest", "top_k": 8})
    assert History(tmp_path / FILENAME, "mine").preferences() == {"model": "llama3.2:latest", "top_k": 8}
    assert theirs.preferences() == {}


@pytest.mark.parametrize("damage", ["truncated", "byte-flipped", "not a database"])
def test_a_damaged_file_raises_one_line_naming_it_and_the_fix_and_is_not_touched(tmp_path, damage):
    path = tmp_path / FILENAME
    history = History(path, "me")
    for n in range(50):
        conversation = history.create(f"question {n} " + "x" * 200)
        history.add(conversation.id, "user", "y" * 500)
    data = path.read_bytes()
    if damage == "truncated":
        data = data[: len(data) // 3]
    elif damage == "byte-flipped":
        data = data[:100] + bytes(b ^ 0xFF for b in data[100:4096]) + data[4096:]
    else:
        data = b"garbage!" * 64
    path.write_bytes(data)

    with pytest.raises(HistoryError) as caught:
        History(path, "me").list()
    message = str(caught.value)
    assert message.startswith(f"The conversation file {path} cannot be used (")
    assert f"`mv {path} {path}.broken`" in message and "\n" not in message
    assert path.read_bytes() == data


def test_title_is_the_first_question_on_one_line_and_shortened():
    assert title_from("  How do I\n install   it? ") == "How do I install it?"
    long = "word " * 30
    assert title_from(long) == ("word " * 12).strip()[:59].rstrip() + "…"
    assert len(title_from(long)) == 60


def test_chat_history_keeps_answered_questions_only():
    messages = [
        Message(1, "user", "q1"),
        Message(2, "assistant", "a1", {"kind": "answer"}),
        Message(3, "user", "q2"),
        Message(4, "assistant", "Nothing relevant", {"kind": "no_match"}),
        Message(5, "user", "q3"),
        Message(6, "assistant", "", {"kind": "answer", "error": "Cannot reach Ollama"}),
        Message(7, "user", "q4"),
        Message(8, "assistant", "a4 (partial)", {"kind": "answer", "error": "stopped"}),
    ]
    assert chat_history(messages) == [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q4"},
        {"role": "assistant", "content": "a4 (partial)"},
    ]


def test_sidebar_labels_tell_apart_conversations_with_the_same_title_even_within_one_second():
    same = "2026-11-30T06:41:50.100000+00:00"
    convs = [Conversation("c", "Install?", "2026-11-30T06:41:50.900000+00:00", same),
             Conversation("b", "Install?", same, same),
             Conversation("a", "Install?", "2026-11-29T08:00:00+00:00", same),
             Conversation("d", "Other", same, same)]
    shown = labels(convs)
    stamp = datetime.fromisoformat(same).astimezone().strftime("%b %d %H:%M:%S")
    earlier = datetime.fromisoformat("2026-11-29T08:00:00+00:00").astimezone().strftime("%b %d %H:%M:%S")
    assert shown == {"c": f"Install? · {stamp} (2)", "b": f"Install? · {stamp} (1)",
                     "a": f"Install? · {earlier}", "d": "Other"}
