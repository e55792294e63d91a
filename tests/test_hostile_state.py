"""Damaged local state and careless command lines: one clear `error:` line, its exit code, and a way to recover."""
from __future__ import annotations

import fcntl
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
from contextlib import closing
from pathlib import Path

import pytest
from chromadb.errors import InternalError

from ingest.__main__ import main as ingest_main
from ingest.lock import LOCK_NAME
from ingest.pipeline import IngestOptions, ingest
from rag.chat.ask import main as ask_main
from rag.core.errors import IngestCancelled
from rag.evaluation.cli import main as eval_main
from rag.core.settings import DEFAULT_EMBED_MODEL, Settings
from rag.store.chroma import chroma_call, open_client, open_collection
from tests.fixtures.hostile import flip_block, flip_bytes, garble_write_log, truncate_half
from tests.test_index_cache import assert_same, full_rebuild

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "ingest" / "sample"
QUESTION = "How do I add my own documents?"


@pytest.fixture
def own_store(tmp_path, guide_store, settings, monkeypatch):
    """A copy of the guide store this test may damage, with a conversation file and an upload beside Chroma's files."""
    store = tmp_path / "own-store"
    shutil.copytree(guide_store, store)
    (store / "conversations.sqlite3").write_bytes(b"conversations stay")
    (store / "uploads").mkdir()
    (store / "uploads" / "note.md").write_text("an upload stays")
    monkeypatch.setenv("RAG_STORE_DIR", str(store))
    return store


@pytest.fixture
def truth(tmp_path) -> Path:
    path = tmp_path / "truth.csv"
    path.write_text(f"question,document\n{QUESTION},adding-documents.md\n")
    return path


def run_all(capsys, truth: Path) -> list[tuple[int, str, str]]:
    """ingest, ask and eval in turn: (exit code, stdout, stderr) of each."""
    results = []
    for run in (lambda: ingest_main([str(SAMPLE)]), lambda: ask_main([QUESTION]), lambda: eval_main([str(truth)])):
        code = run()
        out, err = capsys.readouterr()
        results.append((code, out, err))
    return results


@pytest.mark.parametrize("damage", [truncate_half, flip_bytes], ids=["truncated", "byte-flipped"])
def test_a_damaged_chroma_database_is_one_line_naming_the_file_and_the_fix_in_ingest_ask_and_eval(
    own_store, truth, capsys, damage
):
    damage(own_store / "chroma.sqlite3")

    for code, out, err in run_all(capsys, truth):
        assert (code, out) == (3, "")
        assert err == (
            f"error: The store database {own_store}/chroma.sqlite3 is damaged (error returned from database: (code: 11) "
            "database disk image is malformed). Rebuild it with `python -m ingest --reset PATH ...` (conversations and "
            "uploads are kept), or move that file aside.\n"
        )


DAMAGED_LINE = (r"error: The store database {database} is damaged \([^\n]{{1,120}}\)\. Rebuild it with "
                r"`python -m ingest --reset PATH \.\.\.` \(conversations and uploads are kept\), or move that file "
                r"aside\.\n")


def column(database: Path, sql: str, *args) -> list:
    """The first column of every row a query returns over a read-only connection (dbstat: one row per page)."""
    with closing(sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)) as db:
        return [row[0] for row in db.execute(sql, args)]


def whole_page(database: Path, page: int) -> tuple[int, int]:
    """(start, size) of a page, numbered from 1."""
    [size] = column(database, "PRAGMA page_size")
    return (page - 1) * size, size


def root_page(database: Path, name: str) -> tuple[int, int]:
    """(start, size) of the root page of a table or index."""
    [page] = column(database, "SELECT pageno FROM dbstat WHERE name = ? AND path = '/'", name)
    return whole_page(database, page)


def free_page(database: Path) -> tuple[int, int]:
    """(start, size) of the first page that no table or index holds (one on SQLite's free list)."""
    [count] = column(database, "PRAGMA page_count")
    free = sorted(set(range(1, count + 1)) - set(column(database, "SELECT pageno FROM dbstat")))
    assert free, "the guide store has no free page to damage"
    return whole_page(database, free[0])


def full_text_index_page(database: Path) -> tuple[int, int]:
    """(start, size) of the root page of Chroma's full-text index (the app ranks with its own BM25)."""
    return root_page(database, "embedding_fulltext_search_data")


def unused_space_in_a_chunk_page(database: Path) -> tuple[int, int]:
    """(start, size) of the unallocated bytes between the cell pointers and the cells of the roomiest leaf page of
    chunk metadata (texts included): garbled by a torn write without touching a record."""
    [page] = column(database, "SELECT pageno FROM dbstat WHERE name = 'embedding_metadata' AND pagetype = 'leaf' "
                              "ORDER BY unused DESC LIMIT 1")
    start, _ = whole_page(database, page)
    with database.open("rb") as file:
        file.seek(start)
        header = file.read(8)
    cells, content = int.from_bytes(header[3:5], "big"), int.from_bytes(header[5:7], "big")
    gap = 8 + 2 * cells  # a leaf page's header, then two bytes per cell pointer
    assert content - gap > 500, "the roomiest chunk page has no unused space to damage"
    return start + gap, content - gap


def ask_over(store: Path, monkeypatch, capfd) -> tuple[int, str, str]:
    """rag.ask's exit code, stdout and stderr (the real file descriptors) for QUESTION over the store."""
    monkeypatch.setenv("RAG_STORE_DIR", str(store))
    code = ask_main([QUESTION])
    return (code, *capfd.readouterr())


@pytest.mark.parametrize("name", [
    "sqlite_schema", "collections", "segments", "max_seq_id", "embedding_metadata", "sqlite_autoindex_embeddings_1",
    "embeddings_queue",
])
def test_a_garbled_page_that_ask_reads_is_one_line_naming_the_file_and_the_fix(own_store, monkeypatch, capfd, name):
    """A torn page of SQLite's schema, Chroma's catalogue, its chunk texts and ids, or its write log, all read when ask
    opens the store and rebuilds the chunk index: exit 3 and the damaged-store line on the real stderr (no traceback,
    no panic report of Chroma's Rust core)."""
    shutil.rmtree(own_store / "index", ignore_errors=True)  # no saved index: every chunk is read from the database
    database = own_store / "chroma.sqlite3"
    flip_block(database, *root_page(database, name))

    code, out, err = ask_over(own_store, monkeypatch, capfd)

    assert (code, out) == (3, ""), err
    assert re.fullmatch(DAMAGED_LINE.format(database=re.escape(str(database))), err), err


@pytest.mark.parametrize("damage", [free_page, full_text_index_page, unused_space_in_a_chunk_page],
                         ids=["free-page", "full-text-index", "unused-space-in-a-chunk-page"])
def test_a_garbled_page_that_ask_never_reads_goes_unnoticed_and_the_answer_and_index_are_whole(
    own_store, tmp_path, monkeypatch, capfd, damage
):
    """A free page, Chroma's full-text index or the unused middle of a page is garbled: no read of ask checks it, and
    the answer, its sources and the chunk index read from the store equal those of the undamaged store."""
    shutil.rmtree(own_store / "index", ignore_errors=True)
    undamaged = tmp_path / "undamaged"
    shutil.copytree(own_store, undamaged)
    database = own_store / "chroma.sqlite3"
    flip_block(database, *damage(database))

    expected = ask_over(undamaged, monkeypatch, capfd)
    answered = ask_over(own_store, monkeypatch, capfd)

    assert expected[0] == 0 and expected[1].startswith("The answer is 42 [1].\n\nSources:\n  [1] ")
    assert answered == expected
    assert_same(full_rebuild(Settings(store_dir=own_store)), full_rebuild(Settings(store_dir=undamaged)))


@pytest.mark.parametrize("backtrace", ["0", "1", "full"])
def test_a_panic_in_chromas_core_is_one_line_and_never_its_report_whatever_rust_backtrace_says(own_store, backtrace):
    garble_write_log(own_store / "chroma.sqlite3")

    asked = subprocess.run([sys.executable, "-m", "rag.ask", QUESTION], capture_output=True, text=True, cwd=ROOT,
                           env={**os.environ, "RUST_BACKTRACE": backtrace})

    assert (asked.returncode, asked.stdout) == (3, "")
    assert asked.stderr == (
        f"error: Reading the store at {own_store} failed (InternalError: Error executing plan: Error sending backfill "
        "request to compactor: Failed to receive response).\n"
    )


def test_what_another_thread_writes_while_a_chroma_call_fails_is_passed_on_without_the_panic_report(own_store, capfd):
    garble_write_log(own_store / "chroma.sqlite3")
    collection = open_collection(Settings(), DEFAULT_EMBED_MODEL, None, create=False)
    capfd.readouterr()

    with pytest.raises(InternalError):
        with chroma_call():
            writer = threading.Thread(target=os.write, args=(2, b"another thread's warning\n"))
            writer.start()
            writer.join()
            collection.count()  # a worker thread of Chroma's core panics on the log and writes its report to stderr

    assert capfd.readouterr().err == "another thread's warning\n"


def test_reset_rebuilds_a_damaged_store_and_keeps_conversations_uploads_and_the_damaged_files(own_store, truth, capsys):
    truncate_half(own_store / "chroma.sqlite3")
    damaged = (own_store / "chroma.sqlite3").read_bytes()

    code = ingest_main(["--reset", str(SAMPLE)])
    out, err = capsys.readouterr()

    assert (code, err) == (0, "")
    assert "added 5, updated 0, unchanged 0, removed 0, skipped 0" in out
    assert (own_store / "conversations.sqlite3").read_bytes() == b"conversations stay"
    assert (own_store / "uploads" / "note.md").read_text() == "an upload stays"
    [aside] = own_store.glob("damaged-*")
    assert (aside / "chroma.sqlite3").read_bytes() == damaged
    assert eval_main([str(truth)]) == 0
    assert capsys.readouterr().out.startswith('{"questions": 1, "hit_rate": 1.0')


def test_garbage_in_a_held_lock_file_is_not_shown(own_store, capsys):
    lock = own_store / LOCK_NAME
    lock.write_bytes(b"\x1b[2J\xff\xfe" * 1000)
    with open(lock, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code = ingest_main([str(SAMPLE)])
    out, err = capsys.readouterr()

    assert (code, out) == (3, "")
    assert err == (
        f"error: Another ingest (another process) is writing to the store at {own_store}. "
        "Wait for it to finish, then run again.\n"
    )


def test_a_lock_that_is_a_folder_names_the_file_and_the_fix(own_store, capsys):
    (own_store / LOCK_NAME).unlink()
    (own_store / LOCK_NAME).mkdir()

    code = ingest_main([str(SAMPLE)])
    out, err = capsys.readouterr()

    assert (code, out) == (3, "")
    assert err == (
        f"error: Cannot open the ingest lock {own_store / LOCK_NAME} (Is a directory). Check RAG_STORE_DIR; if no ingest "
        "is running, remove that file or folder, then run again.\n"
    )


def test_a_cancelled_ingest_frees_the_lock_and_keeps_what_was_there(tmp_path, settings, embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "first.md").write_text("# First\n\nThe first document is about owls.\n")
    ingest([docs], settings, embedder, IngestOptions())
    for number in range(40):
        (docs / f"more-{number}.md").write_text(f"# More {number}\n\n" + "Some words about badgers. " * 200)

    def cancel(kind, n):
        if kind == "chunks":
            raise IngestCancelled("Cancelled.")

    with pytest.raises(IngestCancelled):
        ingest([docs], settings, embedder, IngestOptions(), cancel)
    report = ingest([docs], settings, embedder, IngestOptions())

    assert "first.md" in report.unchanged
    assert len(report.added) + len(report.unchanged) == 41


def test_ask_on_a_missing_store_exits_3_and_creates_nothing(tmp_path, settings, monkeypatch, capsys):
    missing = tmp_path / "nowhere" / "store"
    monkeypatch.setenv("RAG_STORE_DIR", str(missing))

    code = ask_main([QUESTION])
    out, err = capsys.readouterr()

    assert (code, out) == (3, "")
    assert err == (
        f"error: The store at {missing} has no collection 'docs'. The folder has no chroma.sqlite3: run `python -m "
        "ingest` first (or `python -m ingest PATH` for your documents), or set RAG_STORE_DIR to where the store is.\n"
    )
    assert not missing.parent.exists()


def test_an_empty_store_dir_setting_is_refused_instead_of_using_the_current_folder(tmp_path, settings, monkeypatch, capsys):
    monkeypatch.setenv("RAG_STORE_DIR", "")

    code = ask_main([QUESTION])
    out, err = capsys.readouterr()

    assert (code, out) == (2, "")
    assert err == "error: RAG_STORE_DIR='' is not valid: give a folder, e.g. ./store. Fix it in the environment or .env.\n"
    assert list(tmp_path.glob("chroma.sqlite3")) == []


def test_a_store_of_768_dimension_vectors_without_embedder_metadata_is_refused(tmp_path, settings, capsys):
    client = open_client(settings)
    collection = client.create_collection(settings.collection, embedding_function=None)
    collection.add(ids=["a"], documents=["text"], metadatas=[{"doc_id": "a"}], embeddings=[[0.1] * 768])

    code = ask_main([QUESTION])
    out, err = capsys.readouterr()

    assert (code, out) == (3, "")
    assert err == (
        "error: The store's vectors have 768 dimensions, but RAG_EMBED_MODEL 'all-MiniLM-L6-v2' makes 384; the store "
        "does not say which embedder built it. Rebuild it: `python -m ingest --reset PATH ...`, or set RAG_EMBED_MODEL "
        "to the model that built it.\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--where", "$and=x", QUESTION], "--where '$and=x' must look like FIELD=VALUE, FIELD a metadata field name (not empty, not a $ operator)."),
        (["--where", "=x", QUESTION], "--where '=x' must look like FIELD=VALUE, FIELD a metadata field name (not empty, not a $ operator)."),
        (["--k", "-1", QUESTION], "argument --k: '-1' is not a number of documents from 1 to 50 (see python -m rag.ask --help)"),
        (["--k", "0", QUESTION], "argument --k: '0' is not a number of documents from 1 to 50 (see python -m rag.ask --help)"),
        (["--k", "1000000000", QUESTION], "argument --k: '1000000000' is not a number of documents from 1 to 50 (see python -m rag.ask --help)"),
        (["--k", "five", QUESTION], "argument --k: 'five' is not a number of documents from 1 to 50 (see python -m rag.ask --help)"),
        ([""], 'argument question: the question is empty; ask something, e.g. "How do I add documents?" (see python -m rag.ask --help)'),
        (["  \n "], 'argument question: the question is empty; ask something, e.g. "How do I add documents?" (see python -m rag.ask --help)'),
    ],
)
def test_bad_command_lines_are_one_line_and_exit_1_before_any_request(guide_store, settings, standin, monkeypatch, capsys, args, message):
    monkeypatch.setenv("RAG_STORE_DIR", str(guide_store))

    try:
        code = ask_main(args)
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()

    assert (code, out, err) == (1, "", f"error: {message}\n")
    assert standin.chat_requests() == []


@pytest.mark.parametrize("command", [["rag.ask", QUESTION], ["ingest", "--dry-run"], ["rag.eval", "truth.csv"]])
def test_an_ollama_host_that_is_not_an_address_is_a_bad_setting_not_a_traceback(tmp_path, command):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OLLAMA_HOST": "http://[::1", "RAG_STORE_DIR": str(tmp_path / "s")}
    (tmp_path / "truth.csv").write_text("question,document\nq,d\n")

    result = subprocess.run(
        [sys.executable, "-m", *command], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )

    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "error: OLLAMA_HOST='http://[::1' is not valid: not an address like 127.0.0.1:11434 or http://host:11434 "
        "(Invalid IPv6 URL). Fix it in the environment or .env.\n"
    )


@pytest.mark.parametrize("command", [["rag.ask", QUESTION], ["ingest", "--dry-run", str(SAMPLE)]])
def test_a_reader_that_goes_away_is_exit_141_without_a_traceback(guide_store, settings, monkeypatch, command):
    """`python -m rag.ask ... | head -1`: the pipe is closed before anything is written; no BrokenPipeError traceback."""
    monkeypatch.setenv("RAG_STORE_DIR", str(guide_store))
    process = subprocess.Popen([sys.executable, "-m", *command], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()

    err = process.stderr.read().decode()

    assert (process.wait(timeout=120), err) == (141, "")
