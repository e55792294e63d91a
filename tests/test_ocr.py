"""Scanned pages and images: read by OCR with page numbers and "ocr" in metadata; bombs, lies and damage skipped."""
from __future__ import annotations

import io
import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from pypdf import PdfReader, PdfWriter

from ingest.__main__ import Progress
from ingest.loaders import RecordFields, load_bytes
from ingest.ocr import PageReader, load_image
from ingest.pipeline import IngestOptions, ingest
from rag.core.settings import Settings
from rag.search.retrieval import Retriever
from rag.store.chroma import open_client, open_collection
from tests.fixtures.hostile import png_claiming
from tests.fixtures.ingest_files import make_pdf
from tests.fixtures.office_files import make_email

NOTICE = (
    "The lighthouse keeper counted seventeen herons on the northern jetty before the storm arrived. "
    "Every winter the harbour office repaints the buoys orange so that fishing boats can find the channel at dusk."
)
LEDGER = "The quarry foreman weighed ninety crates of slate and shipped them north by barge in April."


def drawn_page(paragraph: str, size: tuple[int, int] = (1400, 400)) -> Image.Image:
    """A white page with the paragraph drawn on it in black, as a scanner would give it."""
    image = Image.new("L", size, 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=28)
    for row, line in enumerate(textwrap.wrap(paragraph, 70)):
        draw.text((40, 40 + 44 * row), line, fill=0, font=font)
    return image


def encoded(image: Image.Image, kind: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, kind, **options)
    return out.getvalue()


def text_then_scan(text: str, scanned: Image.Image) -> bytes:
    """A two-page PDF: page 1 with a text layer, page 2 only an image (a scan)."""
    writer = PdfWriter()
    for source in (make_pdf([text]), encoded(scanned, "PDF", resolution=150)):
        writer.append(PdfReader(io.BytesIO(source)))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def words(text: str) -> list[str]:
    return text.lower().replace(".", " ").replace(",", " ").split()


def stored(settings: Settings) -> dict[str, tuple[str, dict]]:
    """doc_id (and @page) -> (text, metadata) of every chunk."""
    got = open_client(settings).get_collection(settings.collection).get(include=["documents", "metadatas"])
    return {m["doc_id"] + (f"@{m['page']}" if "page" in m else ""): (d, m) for d, m in zip(got["documents"], got["metadatas"])}


def test_a_scanned_image_and_a_scanned_pdf_page_are_read_found_and_cited_by_page(tmp_path, embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "notice.png").write_bytes(encoded(drawn_page(NOTICE), "PNG"))
    (docs / "ledger.pdf").write_bytes(text_then_scan("Otters hunt fish in cold rivers.", drawn_page(LEDGER)))
    settings = Settings(store_dir=tmp_path / "store")
    events = []

    report = ingest([docs], settings, embedder, IngestOptions(), lambda kind, n: events.append((kind, n)))

    assert (report.skipped, report.warnings) == ([], [])
    chunks = stored(settings)
    assert sorted(chunks) == ["ledger.pdf@1", "ledger.pdf@2", "notice.png"]
    notice, metadata = chunks["notice.png"]
    assert metadata["ocr"] is True and "page" not in metadata
    read = set(words(notice))
    assert sum(word in read for word in words(NOTICE)) >= 0.9 * len(words(NOTICE)), notice
    assert "ocr" not in chunks["ledger.pdf@1"][1]  # the page with a text layer is not read by OCR
    assert chunks["ledger.pdf@2"][1]["ocr"] is True
    assert [e for e in events if e[0].startswith("ocr")] == [("ocr_pages", 1), ("ocr", 1), ("ocr_pages", 1), ("ocr", 1)]
    retriever = Retriever(open_collection(settings, embedder.name, embedder.dimension, create=False), embedder)
    found = retriever.search("how many crates of slate did the quarry foreman weigh", 3)[0]
    assert (found.doc_id, found.metadata["page"]) == ("ledger.pdf", 2)
    assert retriever.search("how many herons did the lighthouse keeper count", 3)[0].doc_id == "notice.png"


def test_a_scan_attached_to_an_email_is_read_by_ocr_as_its_own_document():
    scan = encoded(drawn_page(NOTICE), "PNG")
    raw = make_email("Harbour notice", "See the scan.", attachments=[("notice.png", scan, "image/png")])
    events = []
    reader = PageReader(lambda kind, n: events.append((kind, n)))

    documents, problems = load_bytes(raw, Path("mail.eml"), "mail.eml", RecordFields(), ocr=reader)

    assert [d.doc_id for d in documents] == ["mail.eml", "mail.eml/notice.png"]
    assert (problems, events) == ([], [("ocr_pages", 1), ("ocr", 1)])
    [section] = documents[1].sections
    read = set(words(section.text))
    assert section.metadata == {"ocr": True}
    assert sum(word in read for word in words(NOTICE)) >= 0.9 * len(words(NOTICE)), section.text


def test_bombs_lying_extensions_and_truncated_images_are_skipped_with_the_reason_and_nothing_stored_is_lost(tmp_path, embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "kept.md").write_text("# Kept\n\nThe archive keeps every letter the mayor signed.\n")
    settings = Settings(store_dir=tmp_path / "store", max_pixels=1_000_000)
    ingest([docs], settings, embedder, IngestOptions())
    before = stored(settings)
    whole = encoded(drawn_page(NOTICE), "PNG")
    (docs / "bomb.png").write_bytes(png_claiming(30_000, 30_000))
    (docs / "big.png").write_bytes(png_claiming(2_000, 1_000))
    (docs / "notes.jpg").write_text("These are notes, not a photo.")
    (docs / "cut.png").write_bytes(whole[: len(whole) // 2])
    (docs / "cut.webp").write_bytes(encoded(drawn_page(NOTICE), "WEBP")[:300])

    report = ingest([docs], settings, embedder, IngestOptions())

    assert sorted((Path(path).name, reason) for path, reason in report.skipped) == [
        ("big.png", "an image of 2,000 x 1,000 pixels, more than the limit of 1,000,000 (RAG_MAX_PIXELS): a decompression "
                    "bomb, or a scan to scale down"),
        ("bomb.png", "an image of over 178,956,970 pixels, more than the limit of 1,000,000 (RAG_MAX_PIXELS): a "
                     "decompression bomb, or a scan to scale down"),
        ("cut.png", "damaged PNG image (OSError: image file is truncated)"),
        ("cut.webp", "damaged WEBP image (OSError: could not create decoder object)"),
        ("notes.jpg", "not a JPEG image (nor any image ingest reads): the file extension is wrong"),
    ]
    assert stored(settings) == before


def test_with_ocr_off_scans_are_skipped_saying_how_to_read_them(tmp_path, embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "scan.pdf").write_bytes(encoded(drawn_page(LEDGER), "PDF", resolution=150))
    (docs / "notice.png").write_bytes(encoded(drawn_page(NOTICE), "PNG"))

    report = ingest([docs], Settings(store_dir=tmp_path / "store", ocr="off"), embedder, IngestOptions())

    assert sorted((Path(path).name, reason) for path, reason in report.skipped) == [
        ("notice.png", "an image is read by OCR, which RAG_OCR=off turns off; set RAG_OCR=auto to read it"),
        ("scan.pdf", "no text layer in the PDF (scanned pages?); set RAG_OCR=auto to read it with OCR"),
    ]


def test_the_progress_bar_counts_ocr_pages_beside_files():
    progress = Progress(enabled=True)
    for event in [("files", 2), ("file", 1), ("ocr_pages", 3), ("ocr", 1), ("ocr", 1)]:
        progress(*event)

    assert progress.bar.desc == "1/2 files, OCR 2/3 pages: "  # tqdm ends a description with ": "
    progress.close()


def test_a_multi_page_tiff_gives_each_page_its_number_up_to_the_page_limit(tmp_path):
    pages = [drawn_page("Harbour office opens at nine.", (900, 120)), drawn_page("Ferries leave from pier four.", (900, 120))]
    raw = encoded(pages[0], "TIFF", save_all=True, append_images=pages[1:])

    whole, problems = load_image(raw, "s.tif", "s", ".tif", 50_000_000, 2000, PageReader())
    first, cut = load_image(raw, "s.tif", "s", ".tif", 50_000_000, 1, PageReader())

    assert ([(s.metadata, s.text) for s in whole.sections], problems) == (
        [({"ocr": True, "page": 1}, "Harbour office opens at nine."), ({"ocr": True, "page": 2}, "Ferries leave from pier four.")], [],
    )
    assert [(s.metadata, s.text) for s in first.sections] == [({"ocr": True, "page": 1}, "Harbour office opens at nine.")]
    assert [(p.reason, p.skipped) for p in cut] == [("only the first 1 of 2 pages were read (RAG_MAX_PDF_PAGES)", False)]
