"""Slides, workbooks, OpenDocument, RTF, EPUB and mail: each built here with the library that writes it, read into
citable sections, ingested into a real store and found at rank 1 with its citation."""
from __future__ import annotations

import re
from pathlib import Path

from ingest.__main__ import main as ingest_main
from ingest.chunking import ChunkPlan, document_pieces
from ingest.documents import Document, Problem, Section, location_of
from ingest.loaders import FORMATS, RecordFields, load_bytes, load_path
from ingest.pipeline import IngestOptions, ingest
from rag.core.settings import Settings
from rag.search.retrieval import Retriever
from rag.store.chroma import open_collection
from tests.fixtures.office_files import (
    make_email, make_epub, make_mbox, make_ods, make_odt, make_pptx, make_rtf, make_xlsx, with_cached_formula,
)

REPO = Path(__file__).resolve().parent.parent
FIELDS = RecordFields()
PPTX_MIME = "application/vnd.openxmlformats-officedocument.presentationml.presentation"


def load(name: str, raw: bytes):
    return load_bytes(raw, Path(name), name, FIELDS)


def sections(document: Document) -> list[tuple[tuple[str, ...], dict, str, str]]:
    return [(s.headings, s.metadata, s.header, s.text) for s in document.sections]


def test_the_readme_lists_exactly_the_formats_the_code_reads():
    readme = (REPO / "README.md").read_text()
    table = readme.split("<!-- formats: begin -->")[1].split("<!-- formats: end -->")[0]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.strip().splitlines()[2:]]
    assert [(name, extensions) for name, extensions, _ in rows] == [
        (fmt.name, " ".join(f"`{suffix}`" for suffix in fmt.suffixes)) for fmt in FORMATS
    ]


def test_a_slide_deck_gives_a_section_per_slide_under_its_title_with_notes_and_tables():
    raw = make_pptx([
        {"title": "Why otters", "body": ["Otters use stones as tools.", "They live in rivers."], "notes": "Mention the zoo."},
        {"title": "Costs", "table": [["item", "cost"], ["boat", "300"]]},
        {"title": "Questions"},
    ], title="Otter talk")

    [deck], problems = load("talk.pptx", raw)

    assert (deck.title, problems) == ("Otter talk", [])
    assert sections(deck) == [
        (("Why otters",), {"slide": 1}, "", "Otters use stones as tools.\n\nThey live in rivers.\n\nSpeaker notes: Mention the zoo."),
        (("Costs",), {"slide": 2}, "item | cost", "item | cost\nboat | 300"),
        (("Questions",), {"slide": 3}, "", "Questions"),
    ]


def test_a_workbook_finds_the_header_under_a_title_row_skips_hidden_sheets_and_reads_cached_formula_values():
    raw = make_xlsx({
        "Sales": [["Quarterly report"], None, ["region", "revenue", "double"], ["north", 100, None], ["south", 250.5, "=B5*2"]],
        "Plain": [[1, 2], [3, 4]],
        "Secret": [["key", "value"], ["pin", "1234"]],
    }, hidden=("Secret",), title="Sales book")
    raw = with_cached_formula(raw, "C5", "B5*2", "501")

    [book], problems = load("sales.xlsx", raw)

    assert book.title == "Sales book"
    assert sections(book) == [
        (("Sales",), {"sheet": "Sales", "rows": "1-1"}, "", "Quarterly report"),
        (("Sales",), {"sheet": "Sales", "rows": "4-5"}, "", "region: north; revenue: 100\nregion: south; revenue: 250.5; double: 501"),
        (("Plain",), {"sheet": "Plain", "rows": "1-2"}, "", "A: 1; B: 2\nA: 3; B: 4"),
    ]
    assert problems == [Problem("sheet 'Secret'", "a hidden sheet, not read (unhide it to ingest it)", False)]


def test_an_ods_spreadsheet_reads_visible_sheets_and_skips_a_million_repeated_empty_rows_at_once():
    raw = make_ods({"Prices": [["item", "cost"], ["kayak", "300"], ["canoe", "250"]], "Hidden": [["a", "b"], ["c", "d"]]},
                   hidden=("Hidden",), repeat_empty=1_000_000)

    [book], problems = load("prices.ods", raw)

    assert sections(book) == [
        (("Prices",), {"sheet": "Prices", "rows": "2-1000004"}, "", "item: kayak; cost: 300\nitem: canoe; cost: 250\nitem: after the gap"),
    ]
    assert problems == [Problem("sheet 'Hidden'", "a hidden sheet, not read (unhide it to ingest it)", False)]


def test_an_odt_keeps_its_headings_and_its_tables_header():
    raw = make_odt([("p", "Summary first."), ("h1", "Budget"), ("p", "Kayaks cost most."), ("table", "item|cost/kayak|300"),
                    ("h2", "Travel"), ("p", "By train.")], title="Annual report")

    [doc], problems = load("report.odt", raw)

    assert (doc.title, problems) == ("Annual report", [])
    assert sections(doc) == [
        ((), {}, "", "Summary first."),
        (("Budget",), {}, "", "Kayaks cost most."),
        (("Budget",), {}, "item | cost", "item | cost\nkayak | 300"),
        (("Budget", "Travel"), {}, "", "By train."),
    ]


def test_an_rtf_is_read_as_text_with_its_embedded_binary_left_out():
    binary = bytes(range(256)) * 4 + b"}{\\par \\b1 not text"
    [doc], problems = load("letter.rtf", make_rtf(["Dear Bo,", "the caf\\'e9 opens at nine."], binary=binary))

    assert sections(doc) == [((), {}, "", "Dear Bo,\nthe café opens at nine.")]
    assert problems == [Problem("", f"{len(binary):,} bytes of embedded binary data left out", False)]


def test_an_epub_gives_its_chapters_in_reading_order_under_their_titles():
    raw = make_epub([("The River", "<h1>The River</h1><p>The heron waited.</p><h2>Dusk</h2><p>Frogs sang.</p>"),
                     ("The Forest", "<p>Owls hunted mice.</p>")], title="Night walks")

    [book], problems = load("walks.epub", raw)

    assert (book.title, problems) == ("Night walks", [])
    assert sections(book) == [
        (("The River",), {"chapter": 1}, "", "The heron waited."),
        (("The River", "Dusk"), {"chapter": 1}, "", "Frogs sang."),
        (("The Forest",), {"chapter": 2}, "", "Owls hunted mice."),
    ]
    assert location_of({"chapter": 1, "headings": "The River > Dusk"}) == "chapter 1: The River > Dusk"


def test_an_email_prefers_plain_text_keeps_from_to_date_and_reads_attachments_as_their_own_documents():
    deck = make_pptx([{"title": "Forecast", "body": ["Sales will double."]}])
    raw = make_email("Quarterly numbers", "Hi Bo,\nthe numbers are in.", html="<p>HTML only words</p>",
                     attachments=[("forecast.pptx", deck, PPTX_MIME), ("photo.gif", b"GIF89a", "image/gif"),
                                  ("forecast.pptx", deck, PPTX_MIME)])

    documents, problems = load("mail.eml", raw)

    meta = {"from": "Ana <ana@example.org>", "to": "Bo <bo@example.org>", "date": "2026-03-04T09:30:00+00:00"}
    assert [(d.doc_id, d.title, d.metadata) for d in documents] == [
        ("mail.eml", "Quarterly numbers", meta),
        ("mail.eml/forecast.pptx", "Forecast", {**meta, "attached_to": "Quarterly numbers"}),
        ("mail.eml/forecast (2).pptx", "Forecast", {**meta, "attached_to": "Quarterly numbers"}),
    ]
    assert documents[0].sections == [Section(
        "From: Ana <ana@example.org>\nTo: Bo <bo@example.org>\nDate: 2026-03-04T09:30:00+00:00\n\nHi Bo,\nthe numbers are in.")]
    assert problems == [Problem("attachment photo.gif", "unsupported file type .gif", False)]


def test_an_html_only_email_is_read_through_the_html_path():
    message = make_email("Menu", "", html="<html><body><nav>Links</nav><p>Soup of the day: lentils.</p></body></html>")
    raw = message.replace(b"Content-Type: text/plain", b"Content-Type: text/x-ignored", 1)

    [doc], _ = load("menu.eml", raw)

    assert doc.sections[0].text.endswith("\n\nSoup of the day: lentils.")


def test_an_mbox_gives_each_message_by_its_message_id_and_unquotes_from_lines(tmp_path):
    path = tmp_path / "box.mbox"
    path.write_bytes(make_mbox([
        make_email("First", "From now on we meet on Mondays.", message_id="<a1@example.org>"),
        make_email("Second", "No id on this one."),
    ]))

    documents, problems = load_path(path, "box.mbox", FIELDS)

    assert problems == []
    assert [d.doc_id for d in documents][0] == "box.mbox/a1@example.org"
    assert re.fullmatch(r"box\.mbox/message-[0-9a-f]{16}", documents[1].doc_id)
    assert documents[0].sections[0].text.endswith("\n\nFrom now on we meet on Mondays.")


def test_a_markdown_table_spanning_several_chunks_repeats_its_header_row_in_each(embedder):
    rows = "\n".join(f"| river {n} | {n * 10} km | fish species number {n} live here |" for n in range(60))
    document = load("rivers.md", f"# Rivers\n\nIntro.\n\n| name | length | notes |\n|---|---|---|\n{rows}\n\nAfter.\n".encode())[0][0]

    pieces = document_pieces(document, embedder.token_offsets, ChunkPlan(100, 20, embedder.max_tokens))

    table = [piece.body for piece in pieces if "river" in piece.body]
    assert len(table) > 3
    assert all(body.startswith("| name | length | notes |\n| river ") and body.endswith(" live here |") for body in table)
    assert sum(body.count("| river ") for body in table) == 60  # every row once: no overlap between a table's chunks
    assert [piece.body for piece in pieces if "river" not in piece.body] == ["Intro.", "After."]


def search(settings: Settings, embedder, question: str):
    collection = open_collection(settings, embedder.name, embedder.dimension, create=False)
    return Retriever(collection, embedder).search(question, 3)


def test_each_format_is_ingested_and_its_unique_sentence_found_first_with_its_citation(tmp_path, embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "talk.pptx").write_bytes(make_pptx([
        {"title": "Welcome", "body": ["Today we talk about rivers."]},
        {"title": "Otters", "body": ["Sea otters hold hands while they sleep so they do not drift apart."]},
    ]))
    rows = [["species", "habitat", "fact"]] + [[f"bird {n}", "marsh", f"ordinary fact {n}"] for n in range(40)]
    rows[30] = ["flamingo", "salt lake", "flamingos are pink because of the shrimp they eat"]
    (docs / "birds.xlsx").write_bytes(make_xlsx({"Overview": [["Birds"]], "Birds": rows}))
    (docs / "metals.ods").write_bytes(make_ods({"Metals": [["metal", "property"], ["gallium", "gallium melts in the palm of your hand"]]}))
    (docs / "night.epub").write_bytes(make_epub([
        ("Dawn", "<p>The morning was quiet.</p>"),
        ("Owls", "<h2>Hearing</h2><p>Barn owls locate mice in total darkness by sound alone.</p>"),
    ]))
    (docs / "volcano.odt").write_bytes(make_odt([("h1", "Volcanoes"), ("p", "Olympus Mons on Mars is the tallest volcano known.")]))
    (docs / "honey.rtf").write_bytes(make_rtf(["Notes.", "Honey found in Egyptian tombs was still edible after thousands of years."]))
    deck = make_pptx([{"title": "Octopus", "body": ["An octopus has three hearts and blue blood."]}])
    (docs / "mail.eml").write_bytes(make_email("Bananas", "Bananas are berries but strawberries are not.",
                                               attachments=[("octopus.pptx", deck, PPTX_MIME)]))
    (docs / "box.mbox").write_bytes(make_mbox([make_email("Wombats", "Wombats produce cube-shaped droppings.", message_id="<w@x>")]))
    settings = Settings(store_dir=tmp_path / "store")

    report = ingest([docs], settings, embedder, IngestOptions())

    assert (report.skipped, report.warnings) == ([], [])
    assert sorted(report.added) == ["birds.xlsx", "box.mbox/w@x", "honey.rtf", "mail.eml", "mail.eml/octopus.pptx",
                                    "metals.ods", "night.epub", "talk.pptx", "volcano.odt"]
    for question, doc_id, citation in [
        ("do sea otters hold hands when sleeping", "talk.pptx", "slide 2"),
        ("why are flamingos pink", "birds.xlsx", "Birds, rows FIRST-LAST"),
        ("which metal melts in your hand", "metals.ods", "Metals, rows 2-2"),
        ("how do barn owls find mice in the dark", "night.epub", "chapter 2: Owls > Hearing"),
        ("what is the tallest volcano", "volcano.odt", "Volcanoes"),
        ("is honey from tombs still edible", "honey.rtf", ""),
        ("are bananas berries", "mail.eml", ""),
        ("how many hearts does an octopus have", "mail.eml/octopus.pptx", "slide 1"),
        ("what shape are wombat droppings", "box.mbox/w@x", ""),
    ]:
        best = search(settings, embedder, question)[0]
        if "FIRST" in citation:  # the rows around row 31, the flamingo's, grouped as the loader groups them
            first, last = map(int, best.metadata["rows"].split("-"))
            assert first <= 31 <= last and "species: flamingo" in best.chunks[0].text
            citation = citation.replace("FIRST", str(first)).replace("LAST", str(last))
        assert (question, best.doc_id, location_of(best.metadata)) == (question, doc_id, citation)
    assert search(settings, embedder, "are bananas berries")[0].metadata["from"] == "Ana <ana@example.org>"


def test_a_changed_mailbox_updates_exactly_the_messages_and_attachments_that_changed(tmp_path, embedder):
    box = tmp_path / "mail" / "box.mbox"
    box.parent.mkdir()
    deck = make_pptx([{"title": "Plan", "body": ["Version one of the plan."]}])
    kept = make_email("Kept", "This message stays.", message_id="<kept@x>")
    going = make_email("Going", "This message will be deleted.", message_id="<going@x>")
    box.write_bytes(make_mbox([kept, going, make_email("Plan", "See the plan.", message_id="<plan@x>",
                                                        attachments=[("plan.pptx", deck, PPTX_MIME)])]))
    settings = Settings(store_dir=tmp_path / "store")
    first = ingest([box.parent], settings, embedder, IngestOptions())
    assert sorted(first.added) == ["box.mbox/going@x", "box.mbox/kept@x", "box.mbox/plan@x", "box.mbox/plan@x/plan.pptx"]

    new_deck = make_pptx([{"title": "Plan", "body": ["Version two of the plan."]}])
    box.write_bytes(make_mbox([kept, make_email("Plan", "See the plan.", message_id="<plan@x>",
                                                 attachments=[("plan.pptx", new_deck, PPTX_MIME)]),
                               make_email("New", "A message that just arrived.", message_id="<new@x>")]))
    second = ingest([box.parent], settings, embedder, IngestOptions())

    assert (second.added, second.updated, sorted(second.unchanged), second.removed) == (
        ["box.mbox/new@x"], ["box.mbox/plan@x/plan.pptx"], ["box.mbox/kept@x", "box.mbox/plan@x"], ["box.mbox/going@x"])
    assert search(settings, embedder, "version of the plan")[0].chunks[0].text == "Version two of the plan."


def test_dry_run_lists_each_file_with_its_format(tmp_path, capsys, monkeypatch):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "talk.pptx").write_bytes(make_pptx([{"title": "Hi", "body": ["Hello."]}]))
    (docs / "book.xlsx").write_bytes(make_xlsx({"S": [["a", "b"], ["c", "d"]]}))
    (docs / "notes.md").write_text("# Notes\n\nText.\n")
    (docs / "photo.bmp").write_bytes(b"BM....")
    monkeypatch.setenv("RAG_STORE_DIR", str(tmp_path / "store"))

    code = ingest_main(["--dry-run", str(docs)])

    out = capsys.readouterr().out
    assert code == 1  # the .bmp is skipped
    files = out.split("Files (4):\n")[1].split("  add ")[0]
    assert files == (f"  {docs}/book.xlsx: Excel workbook (XLSX)\n  {docs}/notes.md: Markdown\n"
                     f"  {docs}/photo.bmp: unsupported (.bmp)\n  {docs}/talk.pptx: PowerPoint (PPTX)\n")
