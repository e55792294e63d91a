"""OCR speed and accuracy: scanned A4 pages (an image-only PDF drawn by Pillow) read by ingest's PDF loader.

Prints pages per second (the engine loaded and warmed on one page first, as it is once per ingest run), the CPU
seconds a page took (all threads: on a shared machine the figure to compare), the share of the drawn words read back,
then one JSON line. Run from the repository root: `python bench/bench_ocr.py --pages 5`.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import random
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORDS = (
    "harbour lighthouse keeper storm channel buoy ferry quarry slate barge river otter heron meadow orchard village "
    "council budget ledger invoice shipment winter summer morning evening northern southern crates barrels nets "
    "counted weighed repaired painted shipped delivered recorded measured the a of to and in on by with before after"
).split()


def scanned_pdf(pages: int, dpi: int = 150) -> tuple[bytes, list[str]]:
    """An image-only PDF of A4 pages of drawn paragraphs, and each page's text."""
    from PIL import Image, ImageDraw, ImageFont

    chooser = random.Random(31)
    font = ImageFont.load_default(size=round(11 / 72 * dpi * 1.3))  # 11-point text
    images, texts = [], []
    for _ in range(pages):
        text = " ".join(chooser.choice(WORDS) for _ in range(260)).capitalize() + "."
        image = Image.new("L", (round(8.27 * dpi), round(11.69 * dpi)), 255)
        draw = ImageDraw.Draw(image)
        for row, line in enumerate(textwrap.wrap(text, 75)):
            draw.text((dpi, dpi + row * round(font.size * 1.6)), line, fill=0, font=font)
        images.append(image)
        texts.append(text)
    out = io.BytesIO()
    images[0].save(out, "PDF", resolution=dpi, save_all=True, append_images=images[1:])
    return out.getvalue(), texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=5)
    args = parser.parse_args()
    from ingest.loaders import load_pdf
    from ingest.ocr import PageReader

    pages = args.pages
    raw, texts = scanned_pdf(pages)
    warm, _ = scanned_pdf(1)
    started = time.perf_counter()
    load_pdf(warm, "warm", "warm", ocr=PageReader())
    loaded = time.perf_counter() - started
    started, cpu = time.perf_counter(), time.process_time()
    document, problems = load_pdf(raw, "scan", "scan", ocr=PageReader())
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    drawn = [word for text in texts for word in text.lower().replace(".", "").split()]
    read = [word for section in document.sections for word in section.text.lower().replace(".", "").split()]
    found = sum(min(drawn.count(w), read.count(w)) for w in set(drawn)) / len(drawn)
    load = os.getloadavg()[0]
    print(f"{pages} A4 pages at 200 dpi: {seconds:.1f} s, {pages / seconds:.2f} pages/s ({seconds / pages:.1f} s a page, {cpu / pages:.1f} CPU s a page); "
          f"words read back {found:.1%}; engine load and first page {loaded:.1f} s; load average {load:.1f}")
    print(json.dumps({"pages": pages, "seconds": round(seconds, 2), "pages_per_s": round(pages / seconds, 3), "cpu_s_per_page": round(cpu / pages, 2),
                      "words_read": round(found, 4), "first_page_s": round(loaded, 2), "load": round(load, 1),
                      "problems": [p.reason for p in problems]}))


if __name__ == "__main__":
    main()
