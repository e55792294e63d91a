"""Scanned pages and images -> text, read offline by RapidOCR, whose ONNX models ship in its wheel (RAG_OCR=auto|off).

Every image is measured from its header before it is decoded, so a decompression bomb (a small file that would
decode to billions of pixels) is refused at RAG_MAX_PIXELS; PDF pages are rendered with pypdfium2 at a size that
stays within it.
"""
from __future__ import annotations

import functools
import io
import math
import struct
import warnings
from collections.abc import Callable

from ingest.documents import Document, LoadError, Problem, Section

IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP"}
MAGIC = {"PNG": (b"\x89PNG",), "JPEG": (b"\xff\xd8\xff",), "TIFF": (b"II*\x00", b"MM\x00*"), "WEBP": (b"RIFF",)}
UNCLIP_RATIO = 2.0  # how far a detected line's box is widened before it is read
RENDER_DPI = 200  # scanned pages are rendered at this resolution for OCR
POINTS_PER_INCH = 72
MIN_DPI = 72  # a page that would render coarser than this within the pixel limit is left out: OCR could not read it
IMAGE_DAMAGE = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError)  # what Pillow raises on damage


@functools.cache
def engine():
    """The OCR engine, loaded once per process from the models in its package."""
    from rapidocr_onnxruntime import RapidOCR

    return RapidOCR()


class PageReader:
    """Reads the text of page images for one ingest run, telling on_progress how many pages there are and each one done."""

    def __init__(self, on_progress: Callable[[str, int], None] = lambda kind, n: None):
        self.on_progress = on_progress

    def expect(self, pages: int) -> None:
        """Announce pages about to be read."""
        self.on_progress("ocr_pages", pages)

    def read(self, image) -> str:
        """The text OCR finds on a page image, in reading order: lines top to bottom, words left to right."""
        # pages are upright (its 180-degree check turned good lines into dropped ones); a wider box around each line
        # keeps the spaces between words (the default 1.6 lost them on whole lines: 47% to 92% of words, 2.0 read 100%)
        found, _ = engine()(image.convert("RGB"), use_cls=False, unclip_ratio=UNCLIP_RATIO)
        self.on_progress("ocr", 1)
        return reading_order(found or [])


def reading_order(found: list) -> str:
    """OCR boxes ([corners, text, score]) joined into lines, a blank line where a gap of more than a line parts them."""
    boxes = sorted(
        ((min(y for _, y in corners), max(y for _, y in corners), min(x for x, _ in corners), text) for corners, text, _ in found),
        key=lambda box: (box[0] + box[1]) / 2,
    )
    lines: list[list[tuple]] = []
    for box in boxes:
        middle = (box[0] + box[1]) / 2
        if lines and lines[-1][0][0] <= middle <= lines[-1][0][1]:
            lines[-1].append(box)
        else:
            lines.append([box])
    text, previous = [], None
    for line in lines:
        top, bottom = min(box[0] for box in line), max(box[1] for box in line)
        if previous and top - previous[1] > previous[1] - previous[0]:
            text.append("")
        text.append(" ".join(box[3].strip() for box in sorted(line, key=lambda box: box[2])))
        previous = (top, bottom)
    return "\n".join(text).strip()


def load_image(
    raw: bytes, doc_id: str, title: str, suffix: str, pixel_limit: int, page_limit: int, reader: PageReader | None
) -> tuple[Document, list[Problem]]:
    """An image's text read by OCR, one section per page of a multi-page TIFF; refused above the pixel limit."""
    from PIL import Image, UnidentifiedImageError

    expected = IMAGE_FORMATS[suffix]
    if reader is None:
        raise LoadError("an image is read by OCR, which RAG_OCR=off turns off; set RAG_OCR=auto to read it")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit is checked below
            image = Image.open(io.BytesIO(raw), formats=sorted(set(IMAGE_FORMATS.values())))
    except Image.DecompressionBombError:
        raise LoadError(too_many_pixels(f"over {Image.MAX_IMAGE_PIXELS * 2:,} pixels", pixel_limit)) from None
    except UnidentifiedImageError:
        if raw.startswith(MAGIC[expected]):
            raise LoadError(f"damaged {expected} image (Pillow cannot read it)") from None
        raise LoadError(f"not a {expected} image (nor any image ingest reads): the file extension is wrong") from None
    except IMAGE_DAMAGE as exc:
        raise LoadError(f"damaged {expected} image ({type(exc).__name__}: {str(exc)[:120]})") from None
    frames = getattr(image, "n_frames", 1)
    paged = frames > 1
    problems = []
    if frames > page_limit:
        problems.append(Problem("", f"only the first {page_limit:,} of {frames:,} pages were read (RAG_MAX_PDF_PAGES)", False))
        frames = page_limit
    sections = []
    with image:
        for number in range(1, frames + 1):
            try:
                image.seek(number - 1)
                width, height = image.size
                if width * height > pixel_limit:
                    raise LoadError(too_many_pixels(f"{width:,} x {height:,} pixels", pixel_limit))
                image.load()
            except IMAGE_DAMAGE as exc:
                raise LoadError(f"damaged {image.format or expected} image ({type(exc).__name__}: {str(exc)[:120]})") from None
            reader.expect(1)
            text = reader.read(image)
            if text:
                sections.append(Section(text, (), {"ocr": True, **({"page": number} if paged else {})}))
    if not sections:
        raise LoadError("OCR found no text in the image")
    return Document(doc_id, title, sections), problems


def too_many_pixels(size: str, pixel_limit: int) -> str:
    """Why an image is refused before it is decoded."""
    return (
        f"an image of {size}, more than the limit of {pixel_limit:,} (RAG_MAX_PIXELS): a decompression bomb, or a scan "
        "to scale down"
    )


def read_pdf_pages(raw: bytes, numbers: list[int], reader: PageReader, pixel_limit: int) -> tuple[list[Section], list[Problem]]:
    """Sections of text read by OCR from the given PDF pages (1-based), rendered within the pixel limit."""
    import pypdfium2 as pdfium

    sections, problems = [], []
    reader.expect(len(numbers))
    try:
        pdf = pdfium.PdfDocument(raw)
    except pdfium.PdfiumError as exc:
        return [], [Problem("", f"{len(numbers):,} pages without text could not be rendered for OCR ({exc})", False)]
    with pdf:
        for number in numbers:
            page = pdf[number - 1]
            width, height = page.get_size()
            dpi = min(RENDER_DPI, POINTS_PER_INCH * math.sqrt(pixel_limit / max(width * height, 1.0)))
            if dpi < MIN_DPI:
                problems.append(Problem("", f"page {number} is too large to render for OCR within RAG_MAX_PIXELS", False))
                reader.on_progress("ocr", 1)
                continue
            image = page.render(scale=dpi / POINTS_PER_INCH).to_pil()
            text = reader.read(image)
            if text:
                sections.append(Section(text, (), {"page": number, "ocr": True}))
            page.close()
    return sections, problems
