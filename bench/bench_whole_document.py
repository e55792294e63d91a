"""Tokens sent and requests made to summarise a 100-page PDF, at num_ctx 4096 and 32768, against the Ollama stand-in
(which logs every request; its notes are the first words of each section shown, its answers one line).

The PDF is built here (text lines in Helvetica, as pypdf reads them), ingested into a temporary store with the real
embedder, then `summarise` is asked twice per window through WholeReader and the real Ollama client; the second
question shows what the notes cache saves. Run from the repo root:

    python -m bench.bench_whole_document [--pages 100]

Prints a table, then one JSON line. Answer quality needs a real model: this measures cost only.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest.pipeline import IngestOptions, ingest  # noqa: E402
from rag.chat.prompt import estimate_messages  # noqa: E402
from rag.chat.turn import chat_options  # noqa: E402
from rag.chat.whole import WholeReader  # noqa: E402
from rag.core.settings import Settings  # noqa: E402
from rag.llm.boxes import open_backend  # noqa: E402
from rag.search.embeddings import load_embedder  # noqa: E402
from rag.search.loader import open_retriever  # noqa: E402
from tests.ollama_standin import OllamaStandin, estimate_prompt_tokens  # noqa: E402

WINDOWS = (4096, 32768)
LINES_PER_PAGE = 40
WORDS = ("the committee reviewed budget river station contract annual delivery schedule safety report north office "
         "supplier invoice meeting training water energy project council school bridge audit policy staff members "
         "approved delayed increased reduced measured reported planned signed").split()
BLOCK = re.compile(r"^\[(\d+)\][^\n]*\n([^\n]*)", re.MULTILINE)


def page_lines(page: int, rng: random.Random) -> list[str]:
    """A page of plain sentences, numbered so every page differs."""
    return [f"{page}.{n} " + " ".join(rng.choice(WORDS) for _ in range(11)).capitalize() + "." for n in range(LINES_PER_PAGE)]


def make_pdf(pages: list[list[str]], title: str) -> bytes:
    """A PDF with lines of text on each page, in Helvetica."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"", b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    page_ids = [4 + 2 * i for i in range(len(pages))]
    objects[1] = b"<< /Type /Pages /Kids [" + b" ".join(b"%d 0 R" % i for i in page_ids) + b"] /Count %d >>" % len(pages)
    for i, lines in enumerate(pages):
        shown = b" T* ".join(b"(" + line.encode("latin-1") + b") Tj" for line in lines)
        stream = b"BT /F1 9 Tf 11 TL 50 760 Td " + shown + b" ET"
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
                       b"/Contents %d 0 R >>" % (page_ids[i] + 1))
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objects.append(b"<< /Title (" + title.encode("latin-1") + b") >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1) + b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, len(objects), xref)
    return bytes(out)


def notes_reply(body: dict) -> str:
    """Notes: the first eight words of each section shown, with its number; an answer: one cited line."""
    user = body["messages"][-1]["content"]
    if body["messages"][0]["content"].startswith("You take notes"):
        return "\n".join(f"- {' '.join(text.split()[:8])} [{n}]" for n, text in BLOCK.findall(user))
    return "The report covers budgets, contracts and safety [1]."


def measure(standin: OllamaStandin, settings: Settings, index, question: str) -> dict:
    """Ask once; the requests and tokens the stand-in received for it, and the seconds it took."""
    before = len(standin.chat_requests())
    started = time.perf_counter()
    llm = open_backend(settings)
    turn = WholeReader(settings, llm, settings.model).prepare(question, index, ["report.pdf"])
    answer = "".join(llm.stream_chat(turn.model, turn.prompt.messages, chat_options(turn, settings), turn.usage))
    seconds = time.perf_counter() - started
    sent = [b for b in standin.chat_requests()[before:] if b.get("messages")]
    return {
        "document_tokens": turn.reading.document_tokens, "mode": turn.reading.mode, "parts": turn.reading.parts, "requests": len(sent),
        "tokens_estimated": sum(estimate_messages(b["messages"]) for b in sent),
        "tokens_standin": sum(estimate_prompt_tokens(b["messages"]) for b in sent),
        "largest_request": max(estimate_messages(b["messages"]) + b["options"]["num_predict"] for b in sent),
        "seconds": round(seconds, 2), "answer_chars": len(answer),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=100)
    args = parser.parse_args()
    rng = random.Random(7)
    folder = Path(tempfile.mkdtemp(prefix="bench-whole-"))
    (folder / "docs").mkdir()
    (folder / "docs" / "report.pdf").write_bytes(make_pdf([page_lines(p + 1, rng) for p in range(args.pages)], "Annual report"))
    settings = Settings(store_dir=folder / "store")
    started = time.perf_counter()
    ingest([folder / "docs"], settings, load_embedder(settings.embed_model), IngestOptions())
    ingest_seconds = time.perf_counter() - started
    results = {}
    with OllamaStandin(reply=notes_reply, context_length=32768) as standin:
        os.environ["OLLAMA_HOST"] = standin.host
        for window in WINDOWS:
            windowed = Settings(store_dir=folder / "store", num_ctx=window, ollama_host=standin.host)
            index = open_retriever(windowed).index.get()
            first = measure(standin, windowed, index, "Summarise the report")
            second = measure(standin, windowed, index, "What are the main points of the report?")
            results[window] = {"first": first, "second": second, "num_ctx": window}
    document_tokens = results[WINDOWS[0]]["first"]["document_tokens"]
    print(f"{args.pages}-page PDF ({document_tokens:,} estimated tokens) ingested in {ingest_seconds:.1f} s; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{'num_ctx':>8} {'question':>8} {'mode':>6} {'parts':>6} {'requests':>9} {'tokens sent':>12} {'largest':>8} {'s':>6}")
    for window, result in results.items():
        for which in ("first", "second"):
            r = result[which]
            print(f"{window:>8} {which:>8} {r['mode']:>6} {r['parts']:>6} {r['requests']:>9} {r['tokens_estimated']:>12,} "
                  f"{r['largest_request']:>8,} {r['seconds']:>6}")
    small, large = results[WINDOWS[0]]["first"], results[WINDOWS[1]]["first"]
    print(f"requests at {WINDOWS[0]} / {WINDOWS[1]}: {small['requests'] / large['requests']:.1f}x; "
          f"tokens sent: {small['tokens_estimated'] / large['tokens_estimated']:.2f}x")
    print(json.dumps({"pages": args.pages, "results": results, "document_tokens": document_tokens}))


if __name__ == "__main__":
    main()
