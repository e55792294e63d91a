"""Inputs that would make ingest unpack, parse or hold too much: each stopped at its limit with a clear reason."""
from __future__ import annotations

import contextlib
import io
import json
import subprocess
from pathlib import Path

import docx
import pytest

from ingest.__main__ import main as ingest_main
from ingest.documents import LoadError, Problem
from ingest.loaders import Limits, RecordFields, load_bytes, megabytes
from ingest.pipeline import IngestOptions, ingest
from rag.core.settings import Settings
from rag.store.chroma import open_client
from tests.fixtures.hostile import docx_with_paragraphs, docx_with_runs, many_entries_zip, zip_bomb
from tests.fixtures.ingest_files import make_docx, make_pdf

FIELDS = RecordFields()


def load(name: str, raw: bytes, limits: Limits = Limits()):
    return load_bytes(raw, Path(name), name, FIELDS, limits)


def tiny_headings(count: int) -> str:
    """The probe's Markdown: count one-line sections under headings of their own (20,000 make about 290 KB)."""
    return "".join(f"# {n}\nw{n}\n" for n in range(count))


def stored_doc_ids(settings: Settings) -> list[str]:
    """The document id of every chunk in the store, sorted."""
    collection = open_client(settings).get_collection(settings.collection)
    return sorted(meta["doc_id"] for meta in collection.get(include=["metadatas"])["metadatas"])


def test_a_docx_that_would_unpack_past_the_limit_is_refused_before_unpacking():
    raw = zip_bomb(256 * 2**20)

    with pytest.raises(LoadError) as raised:
        load("bomb.docx", raw)

    assert str(raised.value) == (
        f"it would unpack to 256 MB from {megabytes(len(raw))}, more than the limit of 100 MB (RAG_MAX_UNPACKED_MB)"
    )


def test_a_docx_with_too_many_entries_is_refused():
    with pytest.raises(LoadError) as raised:
        load("many.docx", many_entries_zip(1001))

    assert str(raised.value) == "its ZIP container holds 1,001 files, more than the limit of 1,000 (RAG_MAX_ARCHIVE_ENTRIES)"


def test_a_docx_is_read_up_to_the_paragraph_limit_with_a_warning():
    [document], problems = load("long.docx", docx_with_paragraphs(1200, "A line of text."), Limits(paragraphs=1000))

    assert sum(section.text.count("A line of text.") for section in document.sections) == 1000
    assert problems == [Problem("", "only the first 1,000 paragraphs and table rows (RAG_MAX_PARAGRAPHS) were read", False)]


def test_a_docx_paragraph_of_3_8_million_runs_is_read_up_to_the_run_limit_with_a_warning():
    raw = docx_with_runs(3_800_000)

    [document], problems = load("runs.docx", raw)

    assert len(raw) < 250 * 2**10
    assert [section.text for section in document.sections] == ["a" * 1_000_000]
    assert problems == [Problem("", "only the first 1,000,000 text runs (RAG_MAX_RUNS) were read", False)]


def test_a_docx_paragraph_is_cut_at_the_text_limit_within_the_paragraph():
    [document], problems = load("runs.docx", docx_with_runs(5000), Limits(text_chars=1000))

    assert [section.text for section in document.sections] == ["a" * 1000]
    assert problems == [Problem("", "only the first 1 KB of text (RAG_MAX_TEXT_MB) were read", False)]


def test_a_docx_table_is_read_row_by_row_up_to_the_paragraph_limit():
    raw = make_docx([("Normal", "Prices."), ("table", "item|cost/kayak|300/canoe|250/raft|90")])

    [document], problems = load("prices.docx", raw, Limits(paragraphs=3))

    assert [section.text for section in document.sections] == ["Prices.", "item | cost\nkayak | 300"]
    assert problems == [Problem("", "only the first 3 paragraphs and table rows (RAG_MAX_PARAGRAPHS) were read", False)]


def test_a_markdown_file_of_20000_tiny_headings_stores_only_the_chunk_limit_with_a_warning(tmp_path, settings, embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "headings.md").write_text(tiny_headings(20_000))
    limited = settings.model_copy(update={"max_chunks_per_file": 100})

    report = ingest([docs], limited, embedder, IngestOptions())

    assert (report.added, report.chunks_written) == (["headings.md"], 100)
    assert report.warnings == [
        (str(docs / "headings.md"), "only its first 100 chunks were stored (RAG_MAX_CHUNKS_PER_FILE); left out: the rest of its text")
    ]
    assert stored_doc_ids(limited) == ["headings.md"] * 100


def test_a_file_cut_at_the_chunk_limit_is_unchanged_on_a_rerun_and_stored_again_when_the_limit_changes(tmp_path, settings, embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "headings.md").write_text(tiny_headings(300))
    ingest([docs], settings.model_copy(update={"max_chunks_per_file": 100}), embedder, IngestOptions())

    again = ingest([docs], settings.model_copy(update={"max_chunks_per_file": 100}), embedder, IngestOptions())
    raised = ingest([docs], settings.model_copy(update={"max_chunks_per_file": 150}), embedder, IngestOptions())

    assert (again.unchanged, again.chunks_written) == (["headings.md"], 0)
    assert (raised.updated, raised.chunks_written) == (["headings.md"], 150)
    assert stored_doc_ids(settings) == ["headings.md"] * 150


def test_a_record_file_shares_one_chunk_limit_and_the_records_past_it_are_left_out(tmp_path, settings, embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    records = [{"id": f"r{n:03}", "text": f"Record {n} is about otters."} for n in range(300)]
    (docs / "records.jsonl").write_text("\n".join(json.dumps(record) for record in records))

    report = ingest([docs], settings.model_copy(update={"max_chunks_per_file": 100}), embedder, IngestOptions())

    assert report.added == [f"r{n:03}" for n in range(100)]
    assert report.warnings == [
        (str(docs / "records.jsonl"), "only its first 100 chunks were stored (RAG_MAX_CHUNKS_PER_FILE); left out: 200 of its 300 records")
    ]
    assert stored_doc_ids(settings) == [f"r{n:03}" for n in range(100)]


def test_docx_styles_are_resolved_once_and_an_unknown_style_reads_as_body_text():
    raw = make_docx([("Title", "Handbook"), ("Heading 1", "Setup"), ("Normal", "Plug it in."), ("Heading 2", "Cables"),
                     ("Normal", "Use the red one.")])
    word = docx.Document(io.BytesIO(raw))
    word.paragraphs[2]._p.style = "NoSuchStyle"
    out = io.BytesIO()
    word.save(out)

    [document], problems = load("styled.docx", out.getvalue())

    assert document.title == "Handbook" and problems == []
    assert [(s.headings, s.text) for s in document.sections] == [(("Setup",), "Plug it in."), (("Setup", "Cables"), "Use the red one.")]


def test_a_pdf_is_read_up_to_the_page_limit_with_a_warning():
    raw = make_pdf([f"Page {n} text." for n in range(1, 31)])

    [document], problems = load("long.pdf", raw, Limits(pdf_pages=10))

    assert [section.metadata["page"] for section in document.sections] == list(range(1, 11))
    assert problems == [Problem("", "only the first 10 of 30 pages were read (RAG_MAX_PDF_PAGES)", False)]


def test_a_text_file_over_the_text_limit_is_skipped_and_the_rest_of_the_run_is_ingested(tmp_path, settings, embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "kept.md").write_text("# Kept\n\nOtters hold hands while they sleep.\n")
    ingest([docs], settings, embedder, IngestOptions())
    (docs / "huge.txt").write_text("words and more words\n" * 5000)
    (docs / "new.md").write_text("# New\n\nBadgers dig setts.\n")

    report = ingest([docs], settings.model_copy(update={"max_text_mb": 0.05}), embedder, IngestOptions())

    assert report.skipped == [(str(docs / "huge.txt"), "too much text (103 KB; the limit is 51 KB a file, RAG_MAX_TEXT_MB): split it, or raise the limit")]
    assert (report.added, report.unchanged) == (["new.md"], ["kept.md"])


@contextlib.contextmanager
def small_disk(folder: Path, size: str):
    """A tmpfs of the given size mounted at folder (needs root); skips the test where mounting is not allowed."""
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_disk_says_the_disk_is_full(tmp_path, monkeypatch, capsys):
    docs = tmp_path / "docs"
    docs.mkdir()
    for n in range(30):
        (docs / f"d{n}.md").write_text(f"# Doc {n}\n\n" + " ".join(f"word{j}" for j in range(n * 1000, n * 1000 + 400)))
    with small_disk(tmp_path / "disk", "600k") as disk:
        monkeypatch.setenv("RAG_STORE_DIR", str(disk / "store"))

        code = ingest_main([str(docs)])
        out, err = capsys.readouterr()

    assert (code, out) == (3, "")
    assert err == (
        f"error: The disk holding the store at {disk / 'store'} is full (0.0 MB free). Free some space, then run again; "
        "what was written before is kept.\n"
    )
