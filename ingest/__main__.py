"""`python -m ingest [PATH ...]`: bring the store in line with files and folders, with progress and a summary."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from ingest.loaders import RecordFields
from ingest.pipeline import IngestOptions, IngestReport, ingest
from rag.embeddings import load_embedder
from rag.errors import RagError
from rag.settings import load_settings
from rag.store import store_location

SAMPLE_DIR = Path(__file__).parent / "sample"
EXIT_OK, EXIT_SKIPPED = 0, 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m ingest",
        description="Ingest files and folders (Markdown, text, JSON/JSONL records) into the document store.",
        epilog="Exit codes: 0 all ingested, 1 some inputs skipped (listed), 2 bad settings, 3 store unusable.",
    )
    parser.add_argument("paths", nargs="*", type=Path, help="files or folders (default: the bundled user guide)")
    parser.add_argument("--id-field", default="id", help="record field holding the document id (default: id)")
    parser.add_argument("--text-field", default="text", help="record field holding the text (default: text)")
    parser.add_argument("--title-field", default="title", help="record field holding the title (default: title)")
    parser.add_argument("--reset", action="store_true", help="delete the collection and rebuild it from PATHs")
    parser.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    return parser.parse_args(argv)


class Progress:
    """A tqdm bar over files, with chunk counts; silent when stderr is not a terminal."""

    def __init__(self):
        self.bar = tqdm(total=0, unit="file", desc="ingest", disable=not sys.stderr.isatty(), dynamic_ncols=True)
        self.chunks = 0

    def __call__(self, kind: str, n: int) -> None:
        if kind == "files":
            self.bar.total = n
            self.bar.refresh()
        elif kind == "file":
            self.bar.update(n)
        elif kind == "chunks":
            self.chunks += n
            self.bar.set_postfix(chunks=self.chunks)

    def close(self) -> None:
        self.bar.close()


def summary(report: IngestReport, location: str) -> str:
    """The end-of-run summary."""
    verb = "would be" if report.dry_run else "were"
    lines = [
        f"{'Dry run: nothing changed in' if report.dry_run else 'Store:'} {location}",
        f"  added {len(report.added)}, updated {len(report.updated)}, unchanged {len(report.unchanged)}, "
        f"removed {len(report.removed)}, skipped {len(report.skipped)}",
    ]
    if report.dry_run:
        for label, ids in (("add", report.added), ("update", report.updated), ("remove", report.removed)):
            lines.extend(f"  {label} {doc_id}" for doc_id in ids)
    else:
        rate = report.chunks_written / report.seconds if report.seconds else 0.0
        lines.append(f"  {report.chunks_written} chunks written in {report.seconds:.1f} s ({rate:.0f} chunks/s)")
    if report.warnings:
        lines.append(f"Warnings ({len(report.warnings)}):")
        lines.extend(f"  {where}: {reason}" for where, reason in report.warnings)
    if report.skipped:
        lines.append(f"Skipped inputs ({len(report.skipped)}) {verb} not ingested:")
        lines.extend(f"  {where}: {reason}" for where, reason in report.skipped)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run an ingest and return the exit code."""
    args = parse_args(argv)
    paths = args.paths or [SAMPLE_DIR]
    progress = None
    try:
        settings = load_settings()
        embedder = load_embedder(settings.embed_model)
        options = IngestOptions(RecordFields(args.id_field, args.text_field, args.title_field), args.reset, args.dry_run)
        progress = Progress()
        report = ingest(paths, settings, embedder, options, progress)
    except RagError as exc:
        if progress:
            progress.close()
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    progress.close()
    print(summary(report, store_location(settings)))
    return EXIT_SKIPPED if report.skipped else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
