"""Conversations in SQLite: saved, listed newest first, restored by a new process, deleted with their messages."""
from __future__ import annotations

import sqlite3

from rag.history import FILENAME, History, Message, chat_history, history_path, title_from
from rag.settings import Settings


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


def test_delete_removes_the_conversation_and_its_messages(tmp_path):
    history = History(tmp_path / FILENAME)
    kept, gone = history.create("kept"), history.create("gone")
    history.add(kept.id, "user", "a")
    history.add(gone.id, "user", "b")

    history.delete(gone.id)

    assert [c.id for c in history.list()] == [kept.id]
    assert history.get(gone.id) is None
    with sqlite3.connect(tmp_path / FILENAME) as db:
        assert db.execute("SELECT content FROM messages").fetchall() == [("a",)]


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
