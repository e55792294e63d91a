"""Bad slides, workbooks, e-books, OpenDocument, RTF and mail: each skipped or cut with its reason, nothing stored lost."""
from __future__ import annotations

import io
import time
import tracemalloc
from pathlib import Path

import pytest
from msoffcrypto.format.ooxml import OOXMLFile

from ingest.documents import LoadError, Problem
from ingest.loaders import Limits, RecordFields, load_bytes, load_path, megabytes
from ingest.pipeline import IngestOptions, ingest
from rag.core.settings import Settings
from rag.store.chroma import open_client
from tests.fixtures.hostile import zip_bomb
from tests.fixtures.ingest_files import make_docx, make_pdf
from tests.fixtures.office_files import (
    make_email, make_epub, make_mbox, make_ods, make_odt, make_pptx, make_rtf, make_xlsx, xlsx_of_empty_rows,
)

FIELDS = RecordFields()


def load(name: str, raw: bytes, limits: Limits = Limits()):
    return load_bytes(raw, Path(name), name, FIELDS, limits)


def refusal(name: str, raw: bytes, limits: Limits = Limits()) -> str:
    with pytest.raises(LoadError) as caught:
        load(name, raw, limits)
    return str(caught.value)


def encrypted(raw: bytes) -> bytes:
    """An Office file as Office saves it with a password: its ZIP encrypted inside a Compound File."""
    out = io.BytesIO()
    OOXMLFile(io.BytesIO(raw)).encrypt("secret", out)
    return out.getvalue()


@pytest.mark.parametrize("name", ["deck.pptx", "book.xlsx", "book.ods", "text.odt", "book.epub"])
def test_a_zip_bomb_posing_as_an_office_file_or_ebook_is_refused_before_unpacking(name):
    bomb = zip_bomb(8 * 2**20)
    limits = Limits(unpacked_bytes=2**20)
    started = time.perf_counter()

    reason = refusal(name, bomb, limits)

    assert reason == f"it would unpack to 8.0 MB from {megabytes(len(bomb))}, more than the limit of 1.0 MB (RAG_MAX_UNPACKED_MB)"
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize("name, kind, raw", [
    ("book.xlsx", "XLSX", lambda: make_xlsx({"S": [["a", "b"], ["c", "d"]]})),
    ("deck.pptx", "PPTX", lambda: make_pptx([{"title": "Secret plans"}])),
    ("letter.docx", "DOCX", lambda: make_docx([("Normal", "Secret text.")])),
])
def test_a_password_protected_office_file_is_refused_with_the_fix(name, kind, raw):
    assert refusal(name, encrypted(raw())) == f"the {kind} is password-protected (encrypted); save a copy without a password"


@pytest.mark.parametrize("name, raw, reason", [
    ("deck.pptx", lambda: make_docx([("Normal", "Words.")]),
     "not a PPTX but a DOCX (no ppt/presentation.xml in it): the file extension is wrong"),
    ("book.xlsx", lambda: make_pptx([{"title": "Slide"}]),
     "not an XLSX but a PPTX (no xl/workbook.xml in it): the file extension is wrong"),
    ("book.xlsx", lambda: make_pdf(["A page."]), "not an XLSX (not a ZIP container): the file extension is wrong"),
    ("book.epub", lambda: b"Just some text.\n", "not an EPUB (not a ZIP container): the file extension is wrong"),
    ("text.odt", lambda: make_ods({"S": [["a", "b"]]}),
     "not a text document but another OpenDocument file: the file extension is wrong"),
    ("book.ods", lambda: make_odt([("p", "Words.")]),
     "not a spreadsheet but another OpenDocument file: the file extension is wrong"),
    ("book.epub", lambda: make_xlsx({"S": [["a", "b"]]}),
     "not an EPUB but an XLSX (no META-INF/container.xml in it): the file extension is wrong"),
    ("letter.rtf", lambda: b"%PDF-1.7 not rtf", "not an RTF (no {\\rtf header): the file extension is wrong"),
    ("mail.eml", lambda: b"\x89PNG\r\n\x1a\n\x00\x00binary", "not an e-mail (no From, To or Subject header): the file extension is wrong"),
])
def test_a_file_whose_extension_lies_is_refused_naming_what_it_is(name, raw, reason):
    assert refusal(name, raw()) == reason


def test_an_mbox_that_lies_is_refused(tmp_path):
    path = tmp_path / "box.mbox"
    path.write_bytes(b"Subject: not a mailbox\n\nHello\n")
    with pytest.raises(LoadError, match=r"^not an mbox \(it does not start with a 'From ' line\): the file extension is wrong$"):
        load_path(path, "box.mbox", FIELDS)


def test_a_sheet_of_a_million_empty_rows_stops_at_the_row_limit():
    raw = xlsx_of_empty_rows(1_000_000, last="the end")  # its time and memory: bench/bench_limits.py

    reason = refusal("empty.xlsx", raw)

    assert reason == "no rows with text in its visible sheets (only its first 100,000 rows were read (RAG_MAX_SHEET_ROWS))"


def test_empty_rows_under_the_limit_are_passed_over_and_the_row_after_them_read():
    [book], problems = load("gap.xlsx", xlsx_of_empty_rows(5000, last="the end"), Limits(sheet_rows=6000))
    assert ([(s.metadata, s.text) for s in book.sections], problems) == ([({"sheet": "Data", "rows": "5001-5001"}, "A: the end")], [])


def test_a_sheet_past_the_row_limit_keeps_its_first_rows_with_a_warning():
    rows = [["n", "square"]] + [[n, n * n] for n in range(1, 60)]
    [book], problems = load("squares.xlsx", make_xlsx({"Squares": rows}), Limits(sheet_rows=21))
    assert book.sections[-1].text.splitlines()[-1] == "n: 20; square: 400"
    assert problems == [Problem("sheet 'Squares'", "only its first 21 rows were read (RAG_MAX_SHEET_ROWS)", False)]


def test_a_large_mbox_is_read_as_a_stream_up_to_the_message_limit_and_a_huge_message_is_skipped(tmp_path):
    huge = make_email("Huge", "x" * 200_000, message_id="<huge@x>")
    messages = [make_email(f"Note {n}", f"Note number {n}.", message_id=f"<n{n}@x>") for n in range(6)]
    path = tmp_path / "box.mbox"
    path.write_bytes(make_mbox([messages[0], huge, *messages[1:]]))
    limits = Limits(file_bytes=100_000, messages=4)  # the mailbox itself is larger than RAG_MAX_FILE_MB: it is streamed

    documents, problems = load_path(path, "box.mbox", FIELDS, limits)

    assert path.stat().st_size > limits.file_bytes
    assert [d.doc_id for d in documents] == ["box.mbox/n0@x", "box.mbox/n1@x", "box.mbox/n2@x"]
    assert problems == [
        Problem("message 2", "larger than 98 KB (RAG_MAX_FILE_MB), not read"),
        Problem("", "only its first 4 messages were read (RAG_MAX_MESSAGES)", False),
    ]


def test_an_mbox_of_one_endless_line_is_read_in_bounded_pieces(tmp_path):
    path = tmp_path / "box.mbox"
    with open(path, "wb") as out:
        out.write(b"From a@b Wed Mar  4 09:30:00 2026\nSubject: long\n\n")
        for _ in range(64):
            out.write(b"y" * 2**20)
    tracemalloc.start()

    documents, problems = load_path(path, "box.mbox", FIELDS, Limits(file_bytes=8 * 2**20))

    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert (documents, problems) == ([], [Problem("message 1", "larger than 8.0 MB (RAG_MAX_FILE_MB), not read")])
    assert peak < 12 * 2**20


def test_an_rtf_whose_binary_claims_more_bytes_than_it_has_ends_there():
    raw = b"{\\rtf1\\ansi Before the blob.\\par {\\*\\objdata\\bin999999999 \x00\x01\x02}"
    [doc], problems = load("short.rtf", raw)
    assert (doc.sections[0].text, problems) == ("Before the blob.", [Problem("", "4 bytes of embedded binary data left out", False)])


def stored_doc_ids(settings: Settings) -> set[str]:
    collection = open_client(settings).get_collection(settings.collection)
    return {meta["doc_id"] for meta in collection.get(include=["metadatas"])["metadatas"]}


def test_hostile_versions_of_stored_files_are_skipped_with_their_reasons_and_the_stored_versions_kept(tmp_path, embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    good = {
        "deck.pptx": make_pptx([{"title": "Otters", "body": ["Otters hold hands."]}]),
        "book.xlsx": make_xlsx({"S": [["animal", "food"], ["otter", "fish"]]}),
        "walk.epub": make_epub([("One", "<p>The heron waited.</p>")]),
        "notes.odt": make_odt([("p", "Gallium melts in the hand.")]),
        "letter.rtf": make_rtf(["Dear Bo,", "honey keeps."]),
    }
    for name, raw in good.items():
        (docs / name).write_bytes(raw)
    settings = Settings(store_dir=tmp_path / "store")
    ingest([docs], settings, embedder, IngestOptions())
    bomb = zip_bomb(8 * 2**20)
    (docs / "deck.pptx").write_bytes(bomb)
    (docs / "book.xlsx").write_bytes(encrypted(good["book.xlsx"]))
    (docs / "walk.epub").write_bytes(b"not a zip")
    (docs / "notes.odt").write_bytes(make_docx([("Normal", "Words.")]))
    (docs / "letter.rtf").write_bytes(b"\x00" * 100)
    settings = Settings(store_dir=tmp_path / "store", max_unpacked_mb=1)

    report = ingest([docs], settings, embedder, IngestOptions())

    assert sorted(report.skipped) == [
        (f"{docs}/book.xlsx", "the XLSX is password-protected (encrypted); save a copy without a password"),
        (f"{docs}/deck.pptx", f"it would unpack to 8.0 MB from {megabytes(len(bomb))}, more than the limit of 1.0 MB (RAG_MAX_UNPACKED_MB)"),
        (f"{docs}/letter.rtf", "not an RTF (no {\\rtf header): the file extension is wrong"),
        (f"{docs}/notes.odt", "not an ODT but a DOCX (no content.xml in it): the file extension is wrong"),
        (f"{docs}/walk.epub", "not an EPUB (not a ZIP container): the file extension is wrong"),
    ]
    assert (report.added, report.updated, report.removed) == ([], [], [])
    assert stored_doc_ids(settings) == set(good)
