"""`python -m ingest [PATH ...]`: bring the store in line with files and folders, with progress and a summary."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from ingest.loaders import FORMATS, RecordFields
from ingest.pipeline import IngestOptions, IngestReport, ingest
from rag.core.errors import INTERRUPTED, OK, OTHER, OUTPUT_CLOSED, SETTING, STORE, RagError, exit_codes_help
from rag.core.settings import load_settings
from rag.store.chroma import store_location
from rag.core.terminal import output_closed, print_error, safe_line, tolerant_output

SAMPLE_DIR = Path(__file__).parent / "sample"
SOME_SKIPPED = OTHER


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m ingest",
        description=f"Ingest files and folders ({', '.join(fmt.name for fmt in FORMATS)}) into the document store. "
        "A re-run only embeds what changed and removes what disappeared; --dry-run lists each file with its format.",
        epilog=exit_codes_help([OK, OTHER, SETTING, STORE, INTERRUPTED, OUTPUT_CLOSED]),
    )
    parser.add_argument("paths", nargs="*", type=Path, help="files or folders (default: the bundled user guide)")
    parser.add_argument("--id-field", default="id", help="record field holding the document id (default: id)")
    parser.add_argument("--text-field", default="text", help="record field holding the text (default: text)")
    parser.add_argument("--title-field", default="title", help="record field holding the title (default: title)")
    parser.add_argument("--reset", action="store_true", help="delete the collection and rebuild it from PATHs")
    parser.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    return parser.parse_args(argv)


class Progress:
    """A tqdm bar over chunks embedded and written, with files read and an ETA; silent when stderr is not a terminal."""

    def __init__(self, enabled: bool | None = None):
        enabled = sys.stderr.isatty() if enabled is None else enabled
        self.bar = tqdm(total=0, unit="chunk", desc="ingest", disable=not enabled, dynamic_ncols=True, file=sys.stderr)
        self.files = self.files_done = 0
        self.ocr_pages = self.ocr_done = 0

    def __call__(self, kind: str, n: int) -> None:
        if kind == "files":
            self.files = n
        elif kind == "file":
            self.files_done += n
        elif kind == "planned":
            self.bar.total += n
        elif kind == "chunks":
            self.bar.update(n)
        elif kind == "ocr_pages":
            self.ocr_pages += n
        elif kind == "ocr":
            self.ocr_done += n
        ocr = f", OCR {self.ocr_done}/{self.ocr_pages} pages" if self.ocr_pages else ""
        self.bar.set_description(f"{self.files_done}/{self.files} files{ocr}", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def summary(report: IngestReport, location: str) -> str:
    """The end-of-run summary."""
    verb = "would be" if report.dry_run else "were"
    lines = [
        f"{'Dry run: nothing changed in' if report.dry_run else 'Store:'} {safe_line(location)}",
        f"  added {len(report.added)}, updated {len(report.updated)}, unchanged {len(report.unchanged)}, "
        f"removed {len(report.removed)}, skipped {len(report.skipped)}",
    ]
    if report.dry_run:
        lines.append(f"Files ({len(report.formats)}):")
        lines.extend(f"  {safe_line(name)}: {fmt}" for name, fmt in report.formats)
        for label, ids in (("add", report.added), ("update", report.updated), ("remove", report.removed)):
            lines.extend(f"  {label} {safe_line(doc_id)}" for doc_id in ids)
    else:
        plural = "" if report.chunks_written == 1 else "s"
        lines.append(f"  {report.chunks_written} chunk{plural} written in {report.seconds:.1f} s{time_spent(report)}"
                     + (f" on {report.embedded_on}" if report.chunks_written and report.embedded_on else ""))
    if report.warnings:
        lines.append(f"Warnings ({len(report.warnings)}):")
        lines.extend(f"  {safe_line(where)}: {safe_line(reason)}" for where, reason in report.warnings)
    if report.skipped:
        lines.append(f"Skipped inputs ({len(report.skipped)}) {verb} not ingested:")
        lines.extend(f"  {safe_line(where)}: {safe_line(reason)}" for where, reason in report.skipped)
    return "\n".join(lines)


def time_spent(report: IngestReport) -> str:
    """Where the run's time went: loading the model (while files were read) and embedding, with the embedding rate."""
    parts = [f"model loaded in {report.load_seconds:.1f} s"] if report.load_seconds else []
    if report.chunks_written and report.embed_seconds:
        rate = report.chunks_written / report.embed_seconds
        parts.append(f"embedding {report.embed_seconds:.1f} s, {rate:.0f} chunks/s" if rate >= 10
                     else f"embedding {report.embed_seconds:.1f} s, {rate:.1f} chunks/s")
    return f" ({'; '.join(parts)})" if parts else ""


def main(argv: list[str] | None = None) -> int:
    """Run an ingest and return the exit code."""
    tolerant_output()
    args = parse_args(argv)
    paths = args.paths or [SAMPLE_DIR]
    progress = None
    try:
        settings = load_settings()
        options = IngestOptions(RecordFields(args.id_field, args.text_field, args.title_field), args.reset, args.dry_run)
        progress = Progress()
        report = ingest(paths, settings, None, options, progress)
    except RagError as exc:
        if progress:
            progress.close()
        print_error(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        if progress:
            progress.close()
        print("interrupted: what was written is kept; run the same command again to finish.", file=sys.stderr)
        return INTERRUPTED
    progress.close()
    try:
        print(summary(report, store_location(settings)), flush=True)
    except BrokenPipeError:
        return output_closed()
    return SOME_SKIPPED if report.skipped else OK


if __name__ == "__main__":
    sys.exit(main())
