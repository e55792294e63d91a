"""The sidebar's upload box: save the files safely, ingest them with progress and a Cancel, and say what happened."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from ingest.loaders import KINDS
from ingest.pipeline import IngestOptions, IngestReport, ingest
from rag.search.embeddings import embedder_options, load_embedder
from rag.core.errors import RagError
from rag.core.settings import Settings
from rag.ui.text import text
from rag.ui.uploads import SaveReport, save_uploads, uploads_dir

UPLOAD_TYPES = [suffix.removeprefix(".") for suffix in KINDS]  # every format ingest reads


def cancel_ingest() -> None:
    st.session_state.ingest_cancelled = True


def upload_limit_mb() -> int:
    """The largest file the upload box accepts, in MB (Streamlit's server.maxUploadSize)."""
    return int(st.get_option("server.maxUploadSize"))


def outcome_lines(saved: SaveReport, report: IngestReport, folder: Path, dropped: set[Path]) -> tuple[str, list[str]]:
    """The headline and one line per file that needs a word: renamed, unchanged, replaced, skipped and why (and whether
    it was kept); paths inside the uploads folder are shown as file names."""
    headline = (
        f"{len(report.added)} added, {len(report.updated)} updated, {len(report.unchanged)} unchanged, "
        f"{len(report.skipped)} skipped; {report.chunks_written} chunks written."
    )
    inside = f"{folder}/"
    lines = [f"{item.original}: {item.note}" for item in saved.files if item.note and item.path not in dropped]
    for where, reason in report.skipped:
        not_kept = " (the file was not kept)" if Path(where) in dropped else ""
        lines.append(f"{where.removeprefix(inside)}: skipped, {reason.replace(inside, '')}{not_kept}")
    lines.extend(f"{where.removeprefix(inside)}: {reason.replace(inside, '')}" for where, reason in report.warnings)
    return headline, lines


def drop_skipped(saved: SaveReport, report: IngestReport) -> set[Path]:
    """Remove from the uploads folder the files this batch added there that ingest skipped whole: a later ingest of the
    folder would only skip them again. The paths removed."""
    skipped = {where for where, _ in report.skipped}
    dropped = set()
    for item in saved.files:
        if item.created and item.path is not None and str(item.path) in skipped:
            item.path.unlink(missing_ok=True)
            dropped.add(item.path)
    return dropped


def interrupted_notice() -> None:
    """After an ingest that Cancel (or the session ending) stopped: what was done, and that the rest can be retried."""
    running = st.session_state.pop("ingest_running", None)
    cancelled = st.session_state.pop("ingest_cancelled", False)
    if running is None:
        return
    what = "Cancelled" if cancelled else "Interrupted"
    st.session_state.ingest_outcome = (
        "warning",
        f"{what} after {running['done']} of {running['files']} files ({running['chunks']} chunks written). "
        "What was written is kept and searchable; ingest the same files again to finish.",
        [],
    )


def run_ingest(settings: Settings, uploads, replace: bool, taken: frozenset[str], area) -> None:
    """Save and ingest the uploads, drawing progress in area; a Cancel click stops it at the next progress step."""
    folder = uploads_dir(settings)
    saved = save_uploads([(f.name, f.getvalue()) for f in uploads], folder, replace=replace, taken=taken)
    progress = area.progress(0.0, text="Starting…")
    area.button("Cancel", key="cancel_ingest", on_click=cancel_ingest, icon=":material/cancel:")
    running = {"files": 0, "done": 0, "chunks": 0, "ocr_pages": 0, "ocr": 0}
    st.session_state.ingest_running = running

    def on_progress(kind: str, n: int) -> None:
        if kind == "files":
            running["files"] = n
        elif kind == "file":
            running["done"] += n
        elif kind in ("chunks", "ocr_pages", "ocr"):
            running[kind] += n
        fraction = min(1.0, running["done"] / running["files"]) if running["files"] else 0.0
        ocr = f", OCR {running['ocr']}/{running['ocr_pages']} pages" if running["ocr_pages"] else ""
        # every progress call is a page update, where Streamlit stops this run when Cancel was clicked
        progress.progress(fraction, text=f"{running['done']}/{running['files']} files{ocr}, {running['chunks']} chunks written")

    try:
        report = ingest(saved.paths, settings, load_embedder(settings.embed_model, **embedder_options(settings)), IngestOptions(), on_progress)
    except RagError as exc:
        st.session_state.pop("ingest_running", None)
        st.session_state.ingest_outcome = ("error", str(exc), [f"{i.original}: {i.note}" for i in saved.files if i.note])
        return
    st.session_state.pop("ingest_running", None)
    headline, lines = outcome_lines(saved, report, folder, drop_skipped(saved, report))
    kind = "success" if report.added or report.updated else "info"
    st.session_state.ingest_outcome = (kind, headline, lines)


def upload_section(settings: Settings, taken: frozenset[str], on_change) -> None:
    """The upload box, its options, the ingest with Cancel, and the last outcome; taken: the store's document ids."""
    sidebar = st.sidebar
    interrupted_notice()
    limit = upload_limit_mb()
    uploads = sidebar.file_uploader(
        "Add documents", type=UPLOAD_TYPES, accept_multiple_files=True, key="upload",
        help=f"Up to {limit} MB per file (server.maxUploadSize in .streamlit/config.toml). Files are kept in the "
             "store folder and ingested like `python -m ingest`.",
    )
    replace = sidebar.checkbox("Replace files with the same name", False, key="replace_uploads",
                               help="Off: a different file with a name already in the store is added as 'name (2)'.")
    area = sidebar.container()
    if sidebar.button("Ingest uploaded files", key="ingest_uploads", disabled=not uploads):
        st.session_state.pop("ingest_cancelled", None)
        run_ingest(settings, uploads, replace, taken, area)
        on_change()
        st.rerun()  # redraw the filters and the store state from the new contents
    outcome = st.session_state.get("ingest_outcome")
    if outcome is not None:
        kind, headline, lines = outcome
        getattr(area, kind)(text(headline))
        for line in lines:
            area.caption(text(line))
