"""Hostile replies and damaged state on the chat page (AppTest, a real store, the stand-in Ollama): each is one line
naming its cause, never a traceback, and the rest of the page goes on working."""
from __future__ import annotations

import shutil
import sqlite3
import tomllib
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.util import patch_config_options

from rag.chat.citations import cited_numbers
from rag.chat.condense import CONDENSE_RULES
from rag.core.settings import Settings
from rag.ui.history import DAMAGED_DETAILS, DAMAGED_TEXT, FILENAME, History, history_path
from rag.ui.text import answer_html
from tests.answer_marks import without_check
from tests.test_app import (  # noqa: F401  (fixtures: a copy of the guide's store, the stand-in, fresh caches)
    ANSWER, BROWSER, ask, assistant, conversations, fresh_caches, loaded, ollama_server, open_app, plain, store,
    template_store,
)
from tests.test_hostile_limits import small_disk

ROOT = Path(__file__).resolve().parent.parent
HUGE_CITATION = "[" + "9" * 4400 + "]"  # int() of more than 4,300 digits raises ValueError


def saved_states(store_dir: Path) -> list[str]:
    """The state of every saved answer."""
    return [answer.meta.get("state") for answer in saved_answers(store_dir)]


def saved_answers(store_dir: Path):
    """Every saved assistant message of the test's browser, oldest first."""
    history = History(store_dir / FILENAME, BROWSER)
    return [m for c in history.list() for m in history.messages(c.id) if m.role == "assistant"]


def rewrite_column(store_dir: Path, sql: str, value: bytes, *args) -> None:
    """Store raw bytes as text in the conversation file, as a damaged disk would leave them."""
    with sqlite3.connect(store_dir / FILENAME) as db:
        db.execute(sql, (value, *args))


def stored_bytes(store_dir: Path, sql: str) -> tuple[int | str, bytes]:
    """The first row's key and its column's raw bytes."""
    with sqlite3.connect(store_dir / FILENAME) as db:
        return db.execute(sql).fetchone()


def fill(disk: Path) -> None:
    """Write a file until the disk holding it has no room left."""
    with open(disk / "filler", "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 2**16)
                handle.flush()
        except OSError:
            pass


def folder_kb(folder: Path) -> int:
    """The size of the files under a folder, in KB."""
    return sum(entry.stat().st_size for entry in folder.rglob("*") if entry.is_file()) // 1024


def test_a_bracketed_number_of_more_than_four_digits_is_not_a_citation():
    assert cited_numbers(f"See {HUGE_CITATION}, [12345] and [1234, 2].") == {1234, 2}


def test_a_reply_citing_a_4400_digit_number_is_saved_whole_with_no_error_on_the_page(store, ollama_server):  # noqa: F811
    reply = f"The answer is 42 {HUGE_CITATION} [1]."
    ollama_server.reply = reply

    at = ask(open_app(), "How do I install the app?")

    assert not at.exception
    message = assistant(at)
    assert without_check(message.markdown[0].value) == answer_html(reply)
    assert [w.value for w in message.warning] == []
    assert saved_states(store) == ["done"]
    assert [s["number"] for s in saved_answers(store)[0].meta["sources"] if s["cited"]] == [1]


def test_a_full_disk_while_an_answer_is_saved_is_one_line_saying_so_and_the_page_goes_on(
    tmp_path, template_store, ollama_server, monkeypatch  # noqa: F811
):
    with small_disk(tmp_path / "disk", f"{folder_kb(template_store) + 4096}k") as disk:
        shutil.copytree(template_store, disk / "store")
        monkeypatch.setenv("RAG_STORE_DIR", str(disk / "store"))

        def fill_then_answer(body: dict) -> str:
            if body["messages"][0]["content"] != CONDENSE_RULES:
                fill(disk)
            return ANSWER

        ollama_server.reply = fill_then_answer
        at = ask(loaded(open_app()), "How do I install the app?")

        assert not at.exception
        assert [plain(e.value) for e in at.error] == [
            f"The disk holding the conversation file {disk / 'store' / FILENAME} is full (0.0 MB free), so this could "
            "not be saved. Free some space, then ask again; what was saved before is kept."
        ]
        assert without_check(assistant(at).markdown[0].value) == answer_html(ANSWER)
        assert at.chat_input(key="question") is not None
        assert saved_states(disk / "store") == ["streaming"]  # the save before the disk filled is kept


@pytest.mark.parametrize("damage", ["not JSON", "not UTF-8", "a key renamed"])
def test_a_flipped_byte_in_an_answers_saved_details_is_one_line_and_its_text_still_shows(store, ollama_server, damage):  # noqa: F811
    ask(open_app(), "How do I install the app?")
    [conversation] = conversations()
    message_id, meta = stored_bytes(store, "SELECT id, CAST(meta AS BLOB) FROM messages WHERE role = 'assistant'")
    flipped = bytearray(meta)
    position, mask = {"not JSON": (0, 0x01), "not UTF-8": (len(meta) // 2, 0xFF),
                      "a key renamed": (meta.index(b'"snippet"') + 1, 0x01)}[damage]
    flipped[position] ^= mask
    rewrite_column(store, "UPDATE messages SET meta = CAST(? AS TEXT) WHERE id = ?", bytes(flipped), message_id)

    page = open_app(c=conversation.id)

    assert not page.exception
    assert [w.value for w in assistant(page).warning] == [DAMAGED_DETAILS]
    assert without_check(assistant(page).markdown[0].value) == answer_html(ANSWER)
    again = ask(page, "Where do I put my settings?")
    assert not again.exception and len(again.chat_message) == 4


def test_a_stored_message_with_bytes_that_are_not_utf8_is_shown_with_one_line_saying_so(store, ollama_server):  # noqa: F811
    ask(open_app(), "How do I install the app?")
    [conversation] = conversations()
    message_id, _ = stored_bytes(store, "SELECT id, content FROM messages WHERE role = 'assistant'")
    rewrite_column(store, "UPDATE messages SET content = CAST(? AS TEXT) WHERE id = ?", b"The answer is \xff42 [1].", message_id)

    page = open_app(c=conversation.id)

    assert not page.exception
    assert [w.value for w in assistant(page).warning] == [DAMAGED_TEXT]
    assert without_check(assistant(page).markdown[0].value) == answer_html("The answer is \ufffd42 [1].")
    assert [s["number"] for s in saved_answers(store)[0].meta["sources"] if s["cited"]] == [1]


@pytest.mark.parametrize("damage", ["a JSON list", "a flipped byte"])
def test_saved_settings_that_are_not_a_json_object_are_one_line_and_the_defaults_are_used(store, ollama_server, damage):  # noqa: F811
    open_app()
    owner, saved = stored_bytes(store, f"SELECT owner, CAST(preferences AS BLOB) FROM browsers WHERE owner = '{BROWSER}'")
    stored = b'["qwen2.5:3b", 7]' if damage == "a JSON list" else bytes([saved[0] ^ 0x01]) + saved[1:]
    rewrite_column(store, "UPDATE browsers SET preferences = CAST(? AS TEXT) WHERE owner = ?", stored, owner)

    page = open_app()

    assert not page.exception
    assert [plain(w.value) for w in page.main.warning] == [
        f"Your saved settings in {store / FILENAME} were damaged (not a JSON object): the defaults are used and saved "
        "in their place."
    ]
    assert page.sidebar.slider(key="top_k").value == Settings().top_k
    assert History(history_path(Settings()), BROWSER).preferences()["top_k"] == Settings().top_k
    assert not ask(page, "How do I install the app?").exception


def test_the_project_config_shows_an_uncaught_error_by_its_type_only_and_links_nowhere():
    client = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())["client"]
    assert (client["showErrorDetails"], client["showErrorLinks"]) == ("type", False)

    with patch_config_options({"client.showErrorDetails": client["showErrorDetails"]}):
        at = AppTest.from_string("raise ValueError('a secret at /home/someone/notes.md')").run()

    [shown] = at.exception  # a bug still surfaces in AppTest's at.exception, without its text or traceback
    assert (shown.proto.type, shown.stack_trace) == ("ValueError", [])
    assert "/home/someone" not in shown.message
