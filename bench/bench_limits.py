"""Peak memory and time of hostile inputs, each in its own process: what the RAG_MAX_* limits and num_predict bound.

The ZIP bomb is also measured under the names of the other ZIP formats (PPTX, XLSX, ODS, ODT, EPUB), with a sheet of
a million empty rows and an mbox of 1 GB. Each case runs in a child process that imports what it needs, notes its peak RSS, does the work and reports the growth
of its peak RSS (ru_maxrss) and the seconds taken. The stand-in Ollama runs in this parent process, so its memory is
not counted. Two inputs are measured before and after in the same run: the Markdown file of 20,000 tiny headings
ingested whole (RAG_MAX_CHUNKS_PER_FILE raised past it, as before the limit) and with the default limit, and the
DOCX paragraph of 3.8 million runs read as python-docx reads it (the whole XML parsed first, as load_docx did) and
as load_docx streams it now. Run from the repository root: `python bench/bench_limits.py`.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BOMBS = ("pptx_bomb", "xlsx_bomb", "ods_bomb", "odt_bomb", "epub_bomb")  # the DOCX bomb under the new formats' names
LOADS = ("docx_bomb", *BOMBS, "docx_500k_paragraphs", "docx_3_8m_runs", "pdf_5000_pages", "text_100mb",
         "xlsx_1m_empty_rows", "mbox_1gb", "png_30000x30000")
INGESTS = ("markdown_20k_headings_unlimited", "markdown_20k_headings")
CASES = (*LOADS, "docx_3_8m_runs_python_docx", *INGESTS, "reply_1m_tokens", "reply_200k_tokens_unbounded", "models_10k")
# tracemalloc slows Python's own work several times (the embedder's, a parser's calls for 3.8 million runs): these are
# timed untraced, so their seconds compare with the probe's, and their Python peak is not given
UNTRACED = (*INGESTS, "docx_3_8m_runs", "docx_3_8m_runs_python_docx", "xlsx_1m_empty_rows", "mbox_1gb")


def peak_mb() -> float:
    """This process's peak resident memory so far, in MB (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def tiny_headings(path: Path, count: int = 20_000) -> str:
    """The probe's Markdown: count one-line sections under headings of their own; its size for the notes."""
    path.write_text("".join(f"# {n}\nw{n}\n" for n in range(count)))
    return f"{path.stat().st_size / 2**10:.0f} KB file of {count:,} headings"


def folder_mb(folder: Path) -> float:
    """The size of the files under a folder, in MB."""
    return sum(entry.stat().st_size for entry in folder.rglob("*") if entry.is_file()) / 2**20


def python_docx_read(raw: bytes, paragraphs: int) -> str:
    """What load_docx did before it streamed: python-docx parses the whole XML, then paragraphs are read to the limit."""
    import docx

    word = docx.Document(io.BytesIO(raw))
    chars = sum(len(block.text) for _, block in zip(range(paragraphs), word.iter_inner_content()))
    return f"read {chars:,} chars with python-docx"


def ingest_case(name: str, path: Path, folder: Path) -> tuple[str, float, float]:
    """Ingest the file into a new store (the embedder loaded before the peak is noted); outcome, peak growth, seconds."""
    from ingest.pipeline import IngestOptions, ingest
    from rag.core.settings import Settings
    from rag.search.embeddings import load_embedder

    settings = Settings(store_dir=folder / "store")
    if name.endswith("_unlimited"):
        settings = settings.model_copy(update={"max_chunks_per_file": 10**9})
    embedder = load_embedder(settings.embed_model)
    before, started = peak_mb(), time.perf_counter()
    report = ingest([path], settings, embedder, IngestOptions())
    seconds = time.perf_counter() - started
    warnings = "; ".join(reason for _, reason in report.warnings) or "no warning"
    outcome = f"{report.chunks_written:,} chunks, store {folder_mb(settings.store_dir):.0f} MB; {warnings}"
    return outcome, peak_mb() - before, seconds


def run_case(name: str, host: str, folder: Path) -> dict:
    """Build the input, note the peak RSS, do the work; the peak's growth and the seconds taken."""
    from ingest.documents import LoadError
    from ingest.loaders import Limits, RecordFields, load_path
    from ingest.ocr import PageReader
    from rag.chat.turn import Turn
    from rag.llm.backend import ChatOptions, ChatUsage
    from rag.llm.ollama import Ollama
    from rag.core.settings import Settings

    note = ""
    if name in INGESTS:
        path = folder / "headings.md"
        note = tiny_headings(path)
        outcome, growth, seconds = ingest_case(name, path, folder)
        return {"case": name, "input": note, "outcome": outcome, "peak_growth_mb": round(growth, 1),
                "python_peak_mb": None, "seconds": round(seconds, 2)}
    if name == "docx_bomb" or name in BOMBS:
        from tests.fixtures.hostile import zip_bomb

        path = folder / f"bomb.{name.split('_')[0]}"
        path.write_bytes(zip_bomb(2**30))
        note = f"{path.stat().st_size / 2**20:.1f} MB file declaring 1 GB"
    elif name == "xlsx_1m_empty_rows":
        from tests.fixtures.office_files import xlsx_of_empty_rows

        path = folder / "empty.xlsx"
        path.write_bytes(xlsx_of_empty_rows(1_000_000, last="the end"))
        note = f"{path.stat().st_size / 2**20:.1f} MB file"
    elif name == "mbox_1gb":
        from tests.fixtures.office_files import make_email, make_mbox

        path = folder / "big.mbox"
        with path.open("wb") as handle:
            for n in range(100_000):
                handle.write(make_mbox([make_email(f"Note {n}", "A line of a long letter.\n" * 400, message_id=f"<{n}@x>")]))
        note = f"{path.stat().st_size / 2**30:.2f} GB file of 100,000 messages"
    elif name == "docx_500k_paragraphs":
        from tests.fixtures.hostile import docx_with_paragraphs

        path = folder / "long.docx"
        path.write_bytes(docx_with_paragraphs(500_000))
        note = f"{path.stat().st_size / 2**10:.0f} KB file"
    elif name.startswith("docx_3_8m_runs"):
        from tests.fixtures.hostile import docx_with_runs

        path = folder / "runs.docx"
        path.write_bytes(docx_with_runs(3_800_000))
        note = f"{path.stat().st_size / 2**10:.0f} KB file"
    elif name == "pdf_5000_pages":
        from tests.fixtures.ingest_files import make_pdf

        path = folder / "long.pdf"
        path.write_bytes(make_pdf([f"Page {n} has a line of text on it." for n in range(5000)]))
        note = f"{path.stat().st_size / 2**20:.1f} MB file"
    elif name == "png_30000x30000":
        from tests.fixtures.hostile import png_claiming

        path = folder / "bomb.png"
        path.write_bytes(png_claiming(30_000, 30_000))
        note = f"{path.stat().st_size:,} B file declaring 900 million pixels"
    elif name == "text_100mb":
        path = folder / "huge.txt"
        with path.open("w") as handle:
            for _ in range(100):
                handle.write(("All work and no play makes a dull document. " * 23 + "\n") * 1000)
        note = f"{path.stat().st_size / 2**20:.0f} MB file"
    settings = Settings(ollama_host=host)
    if name not in UNTRACED:
        tracemalloc.start()
    before, started = peak_mb(), time.perf_counter()
    if name == "docx_3_8m_runs_python_docx":
        outcome = python_docx_read(path.read_bytes(), settings.max_paragraphs)
    elif name in LOADS:
        try:
            documents, problems = load_path(path, path.name, RecordFields(), Limits.from_settings(settings), PageReader())
            outcome = f"read {sum(len(s.text) for d in documents for s in d.sections):,} chars; " + "; ".join(p.reason for p in problems)
        except LoadError as exc:
            outcome = f"skipped: {exc}"
    elif name.startswith("reply"):
        num_predict = 200_000 if name == "reply_200k_tokens_unbounded" else settings.answer_tokens
        turn = Turn("q", "q", "qwen2.5:3b", 8192, [], None)
        usage = ChatUsage()
        options = ChatOptions(settings.num_ctx, max_tokens=num_predict)
        for piece in Ollama(settings).stream_chat("qwen2.5:3b", [{"role": "user", "content": "q"}], options, usage):
            turn.pieces.append(piece)
        outcome = f"{len(turn.pieces):,} pieces, {len(turn.answer):,} chars, finish reason {usage.finish_reason}"
    else:
        models = Ollama(settings).list_models()
        outcome = f"{len(models)} names listed"
    seconds = time.perf_counter() - started
    python_peak = round(tracemalloc.get_traced_memory()[1] / 2**20, 1) if name not in UNTRACED else None
    return {"case": name, "input": note, "outcome": outcome, "peak_growth_mb": round(peak_mb() - before, 1),
            "python_peak_mb": python_peak, "seconds": round(seconds, 2)}


def answer_building_ratio(pieces: int = 400_000) -> dict:
    """Seconds to build an answer of many pieces: `turn.answer += piece` (as before) against Turn.pieces, in one run."""
    from rag.chat.turn import Turn

    class Old:
        answer = ""

    old, turn = Old(), Turn("q", "q", "m", 1, [], None)
    started = time.perf_counter()
    for _ in range(pieces):
        old.answer += " token"
    middle = time.perf_counter()
    for _ in range(pieces):
        turn.pieces.append(" token")
    assert turn.answer == old.answer
    ended = time.perf_counter()
    return {"pieces": pieces, "concatenated_s": round(middle - started, 2), "collected_s": round(ended - middle, 3),
            "speedup": round((middle - started) / (ended - middle), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=CASES, help="run one case in this process (used by the parent)")
    parser.add_argument("--only", default=",".join(CASES), help="the cases to run, comma-separated (default: all)")
    parser.add_argument("--host", default="")
    args = parser.parse_args()
    if args.case:
        with tempfile.TemporaryDirectory() as folder:
            print(json.dumps(run_case(args.case, args.host, Path(folder))))
        return

    from tests.ollama_standin import OllamaStandin

    results = []
    with OllamaStandin(models=[f"model-{n:05d}:latest" for n in range(10_000)] + ["qwen2.5:3b"]) as standin:
        standin.ignore_num_predict = True
        for case in [case for case in CASES if case in args.only.split(",")]:
            standin.reply = " ".join(["token"] * (200_000 if "200k" in case else 1_000_000)) if case.startswith("reply") else "ok"
            child = subprocess.run(
                [sys.executable, __file__, "--case", case, "--host", standin.host],
                capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            if child.returncode:
                raise SystemExit(child.stderr)
            result = json.loads(child.stdout.splitlines()[-1])
            results.append(result)
            traced = "" if case in UNTRACED else f"Python allocations peak {result['python_peak_mb']} MB, "
            print(
                f"{case}: {result['input']} -> {result['outcome']}; peak RSS +{result['peak_growth_mb']} MB, "
                f"{traced}{result['seconds']} s{'' if case in UNTRACED else ' (traced)'}"
            )
    pieces = answer_building_ratio()
    print(f"Answer of 400,000 pieces: {pieces}")
    print(json.dumps({"cases": results, "answer_pieces": pieces}))


if __name__ == "__main__":
    main()
