"""What the page offers and shows from the store: the formats ingest reads, the fields documents bring."""
from __future__ import annotations

import json
import re
from pathlib import Path

from ingest.documents import INTERNAL_FIELDS
from ingest.loaders import KINDS
from ingest.pipeline import IngestOptions, ingest
from rag.search.index_cache import RECHECK_SECONDS
from rag.store.chroma import open_collection
from rag.ui.answer import details_of, location_of
from rag.ui.store_state import summarise_store
from rag.ui.upload_box import UPLOAD_TYPES
from tests.fixtures.ingest_files import GOOD_MARKDOWN, make_docx, make_pdf
from tests.fixtures.office_files import make_epub, make_pptx, make_xlsx

ROOT = Path(__file__).resolve().parent.parent


def write_one_of_each_format(docs: Path) -> None:
    """A CSV long enough for several row groups, records with a course field, a PDF, a DOCX, Markdown, Python and shell."""
    docs.mkdir()
    rows = "".join(f"kayak model {n} with a paddle and a spray deck,{n * 10}\n" for n in range(200))
    (docs / "prices.csv").write_text("item,price\n" + rows)
    records = [{"id": f"q{n}", "text": f"Question {n} about the course.", "course": course}
               for n, course in enumerate(["mlops", "data-engineering"])]
    (docs / "faq.jsonl").write_text("\n".join(json.dumps(record) for record in records) + "\n")
    (docs / "rivers.pdf").write_bytes(make_pdf(["Otters hunt fish.", "Beavers build dams."]))
    (docs / "budget.docx").write_bytes(make_docx([("Heading 1", "Budget"), ("Normal", "Three red kayaks.")]))
    (docs / "install.md").write_text(GOOD_MARKDOWN)
    (docs / "talk.pptx").write_bytes(make_pptx([{"title": "Otters", "body": ["Otters hold hands."]}]))
    (docs / "birds.xlsx").write_bytes(make_xlsx({"Birds": [["bird", "colour"], ["flamingo", "pink"]]}))
    (docs / "night.epub").write_bytes(make_epub([("Owls", "<p>Owls hunt at night.</p>")]))
    (docs / "paddles.py").write_text("def paddle_length(height):\n    return height + 20\n")
    (docs / "launch.sh").write_text("launch_kayak() {\n  echo afloat\n}\n")


def test_the_filter_offers_the_fields_documents_bring_and_internal_fields_are_all_ingest_writes(
    tmp_path, settings, embedder
):
    write_one_of_each_format(tmp_path / "docs")
    ingest([tmp_path / "docs"], settings, embedder, IngestOptions())
    collection = open_collection(settings, settings.embed_model, None, create=False)
    metadatas = collection.get(include=["metadatas"])["metadatas"]

    summary = summarise_store(collection, metadatas)

    assert list(summary.fields) == ["course", "language"]
    assert set().union(*metadatas) - {"course", "language"} == INTERNAL_FIELDS


def test_a_csv_passage_is_located_by_its_rows_as_a_pdf_passage_by_its_page():
    csv_chunk = {"doc_id": "prices.csv", "title": "prices", "headings": "", "rows": "2-14", "course": "mlops"}
    pdf_chunk = {"doc_id": "rivers.pdf", "title": "rivers", "headings": "", "page": 2}

    assert (location_of(csv_chunk), details_of(csv_chunk)) == ("rows 2-14", {"course": "mlops"})
    assert (location_of(pdf_chunk), details_of(pdf_chunk)) == ("page 2", {})


def test_a_code_passage_is_located_by_its_symbol_path_and_lines():
    chunk = {"doc_id": "server.py", "title": "server.py", "headings": "class App > def route", "lines": "13-16",
             "language": "python"}

    assert (location_of(chunk), details_of(chunk)) == ("class App > def route, lines 13-16", {"language": "python"})


def test_the_upload_box_takes_every_format_ingest_reads():
    assert sorted(f".{kind}" for kind in UPLOAD_TYPES) == sorted(KINDS)


def test_the_readme_gives_the_store_check_interval_once_as_the_code_has_it():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")

    intervals = re.findall(r"checks?\s+the\s+(?:collection|stamp)\s+every\s+([\d.]+)\s+s", readme)

    assert intervals == [f"{RECHECK_SECONDS:g}"]
