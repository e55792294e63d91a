"""The ingest pipeline against the real embedder and a real Chroma store: formats, hostile inputs, sync, CLI."""
from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ingest.__main__ import main as ingest_main, summary
from ingest.lock import LOCK_NAME
from ingest.pipeline import IngestOptions, IngestReport, ingest
from rag.core.errors import EmbedderMismatch, StoreError
from rag.store.changelog import SEQ_KEY
from rag.search.retrieval import Retriever
from rag.core.settings import Settings
from rag.store.chroma import open_client, open_collection
from tests.fixtures.ingest_files import GOOD_MARKDOWN, make_docx, make_pdf, write_hostile_folder

REPO = Path(__file__).resolve().parent.parent


class CountingEmbedder:
    """The real embedder, counting the texts it is asked to embed."""

    def __init__(self, embedder):
        self.inner = embedder
        self.embedded = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)  # name, dimension, variant, describe(), ...: the real embedder's

    def embed(self, texts, batch_size=64):
        self.embedded += len(texts)
        return self.inner.embed(texts, batch_size)


@pytest.fixture
def store(tmp_path) -> Settings:
    """Settings for a fresh store under tmp_path."""
    return Settings(store_dir=tmp_path / "store")


@pytest.fixture
def counting(embedder) -> CountingEmbedder:
    return CountingEmbedder(embedder)


def contents(settings: Settings) -> dict[str, tuple[str, dict]]:
    """Every chunk in the store: id -> (text, metadata without the change-log sequence, which numbers runs)."""
    collection = open_client(settings).get_collection(settings.collection)
    got = collection.get(include=["documents", "metadatas"])
    return {i: (d, without_seq(m)) for i, d, m in zip(got["ids"], got["documents"], got["metadatas"])}


def without_seq(metadata: dict) -> dict:
    """A chunk's metadata without `ingest_seq`, after checking the ingest set it."""
    assert isinstance(metadata.pop(SEQ_KEY), int)
    return metadata


def generation_of(settings: Settings) -> int:
    """The store's generation stamp, which readers watch to know when to reopen."""
    return int(open_client(settings).get_collection(settings.collection).metadata["generation"])


def doc_ids(settings: Settings) -> set[str]:
    return {meta["doc_id"] for _, meta in contents(settings).values()}


def search(settings: Settings, embedder, question: str, k: int = 3) -> list[str]:
    collection = open_collection(settings, embedder.name, embedder.dimension, create=False)
    return [doc.doc_id for doc in Retriever(collection, embedder).search(question, k)]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_every_format_is_ingested_and_searchable_with_its_citation_metadata(tmp_path, store, embedder):
    docs = tmp_path / "docs"
    write(docs / "guide" / "install.md", GOOD_MARKDOWN)
    (docs / "rivers.pdf").write_bytes(make_pdf(["Otters hunt fish in cold rivers.", "Beavers build dams from branches."]))
    write(docs / "herons.html", "<html><body><nav>Menu</nav><main><h1>Herons</h1><h2>Diet</h2><p>Herons wade and spear frogs.</p></main></body></html>")
    (docs / "budget.docx").write_bytes(make_docx([("Heading 1", "Budget"), ("Normal", "The team bought three red kayaks.")]))
    write(docs / "capitals.csv", "country,capital\nPeru,Lima\nNorway,Oslo\n")
    write(docs / "faq.jsonl", json.dumps({"id": "q1", "title": "Refunds", "text": "Refunds take fourteen days.", "course": "shop"}) + "\n")
    write(docs / "notes.txt", "Saturn has many icy moons.")

    report = ingest([docs], store, embedder, IngestOptions())

    assert (report.skipped, report.warnings) == ([], [])
    assert sorted(report.added) == ["budget.docx", "capitals.csv", "guide/install.md", "herons.html", "notes.txt", "q1", "rivers.pdf"]
    chunks = {meta["doc_id"] + (f"@{meta['page']}" if "page" in meta else ""): (text, meta) for text, meta in contents(store).values()}
    assert chunks["guide/install.md"][1]["headings"] == "Linux"
    assert chunks["herons.html"][1]["headings"] == "Diet" and chunks["herons.html"][0] == "Herons wade and spear frogs."
    assert chunks["rivers.pdf@2"][0] == "Beavers build dams from branches."
    assert chunks["budget.docx"][1]["headings"] == "Budget"
    assert chunks["capitals.csv"][0] == "country: Peru; capital: Lima\ncountry: Norway; capital: Oslo"
    assert chunks["q1"][1]["course"] == "shop"
    assert search(store, embedder, "which animal builds dams?")[0] == "rivers.pdf"
    assert search(store, embedder, "what is the capital of Norway")[0] == "capitals.csv"
    assert search(store, embedder, "how many kayaks did the team buy")[0] == "budget.docx"
    assert search(store, embedder, "how do I install on Linux")[0] == "guide/install.md"


def test_hostile_files_are_listed_with_reasons_and_the_rest_is_ingested_and_kept(tmp_path, store, embedder):
    earlier = write(tmp_path / "earlier" / "moon.md", "# Moon\n\nThe moon has no atmosphere to speak of.\n")
    ingest([earlier.parent], store, embedder, IngestOptions())
    docs = tmp_path / "docs"
    expected = write_hostile_folder(docs)
    write(docs / "good.md", GOOD_MARKDOWN)
    write(docs / "records.jsonl", '{"id": "r1", "text": "Penguins cannot fly."}\n{oops\n{"id": "r2"}\n')
    (docs / "latin.txt").write_bytes("Le café est très chaud à midi.".encode("cp1252"))
    write(docs / "link-to-good.md", "").unlink()
    (docs / "link-to-good.md").symlink_to(docs / "good.md")

    report = ingest([docs], store, embedder, IngestOptions())

    reasons = {str(Path(where).relative_to(docs)): reason for where, reason in report.skipped}
    for name, fragment in expected.items():
        assert fragment in reasons.pop(name), name
    assert reasons.pop("records.jsonl line 2").startswith("malformed JSON")
    assert reasons.pop("records.jsonl line 3") == "no text in field 'text' (choose it with --text-field)"
    assert reasons.pop("link-to-good.md") == f"same file as {docs / 'good.md'}"
    assert reasons == {}
    assert report.warnings == [(str(docs / "latin.txt"), "not UTF-8 (byte 6); decoded as cp1252")]
    assert sorted(report.added) == ["good.md", "latin.txt", "r1"]
    assert doc_ids(store) == {"moon.md", "good.md", "latin.txt", "r1"}
    assert search(store, embedder, "can penguins fly?")[0] == "r1"
    assert search(store, embedder, "zebra-installer on Linux")[0] == "good.md"


def test_unchanged_rerun_embeds_nothing_changed_file_is_replaced_and_vanished_file_removed(tmp_path, store, counting):
    docs = tmp_path / "docs"
    write(docs / "a.md", "# A\n\nApples are red.\n")
    write(docs / "b.md", "# B\n\nBananas are yellow.\n")
    write(docs / "sub" / "c.md", "# C\n\nCherries are dark.\n")
    ingest([docs], store, counting, IngestOptions())
    before, generation = contents(store), generation_of(store)
    counting.embedded = 0

    again = ingest([docs], store, counting, IngestOptions())
    assert (again.added, again.updated, sorted(again.unchanged), again.removed, again.chunks_written) == ([], [], ["a.md", "b.md", "sub/c.md"], [], 0)
    assert counting.embedded == 0
    assert (contents(store), generation_of(store)) == (before, generation)

    write(docs / "a.md", "# A\n\nApples are green.\n")
    (docs / "sub" / "c.md").unlink()
    changed = ingest([docs], store, counting, IngestOptions())
    assert (changed.updated, changed.removed, changed.unchanged, changed.chunks_written) == (["a.md"], ["sub/c.md"], ["b.md"], 1)
    assert counting.embedded == 1
    assert generation_of(store) > generation
    after = contents(store)
    assert sorted(text for text, _ in after.values()) == ["Apples are green.", "Bananas are yellow."]


def test_ctrl_c_mid_run_keeps_what_was_embedded_and_a_rerun_finishes_the_job(tmp_path, store, embedder):
    docs = tmp_path / "docs"
    for i in range(30):
        write(docs / f"{i:02d}.md", f"# Page {i}\n\n" + f"Sentence {i} about lakes and hills. " * 40)
    clean = Settings(store_dir=tmp_path / "clean")
    ingest([docs], clean, embedder, IngestOptions())

    planned = []

    def ctrl_c_after_the_first_batch(kind, n):
        planned.extend([n] if kind == "planned" else [])
        if len(planned) == 20:  # the first batch of 32 chunks is embedded and handed to the writer by now
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ingest([docs], store, embedder, IngestOptions(), ctrl_c_after_the_first_batch)
    partial = contents(store)
    assert 0 < len(partial) < len(contents(clean))
    report = ingest([docs], store, embedder, IngestOptions())
    assert report.chunks_written == len(contents(clean)) - len(partial)
    assert contents(store) == contents(clean)


def test_a_run_killed_between_writing_a_new_version_and_deleting_the_old_one_is_finished_without_embedding(tmp_path, store, counting):
    path = write(tmp_path / "docs" / "a.md", "# A\n\nOld text about apples.\n")
    ingest([path.parent], store, counting, IngestOptions())
    write(path, "# A\n\nNew text about pears.\n")
    newer = Settings(store_dir=tmp_path / "newer")
    ingest([path.parent], newer, counting, IngestOptions())
    new_chunks = open_client(newer).get_collection(newer.collection).get(include=["documents", "metadatas", "embeddings"])
    open_client(store).get_collection(store.collection).upsert(
        ids=new_chunks["ids"], documents=new_chunks["documents"], metadatas=new_chunks["metadatas"], embeddings=new_chunks["embeddings"])
    assert len(contents(store)) == 2  # both versions, as a kill between the two writes leaves them
    counting.embedded = 0

    report = ingest([path.parent], store, counting, IngestOptions())

    assert (report.updated, report.chunks_written, counting.embedded) == (["a.md"], 0, 0)
    assert contents(store) == contents(newer)


def test_a_record_removed_from_a_file_is_removed_from_the_store(tmp_path, store, embedder):
    path = write(tmp_path / "faq.json", json.dumps([{"id": 1, "text": "one"}, {"id": 2, "text": "two"}]))
    ingest([path], store, embedder, IngestOptions())
    write(path, json.dumps([{"id": 2, "text": "two"}]))
    report = ingest([path], store, embedder, IngestOptions())
    assert (report.removed, report.unchanged) == (["1"], ["2"])
    assert doc_ids(store) == {"2"}


def test_a_record_moved_to_another_file_of_the_folder_follows_it_in_one_run(tmp_path, store, embedder):
    docs = tmp_path / "docs"
    write(docs / "a.json", json.dumps([{"id": "x", "text": "Xylophones are loud."}, {"id": "y", "text": "Yaks are hairy."}]))
    write(docs / "b.json", json.dumps([{"id": "z", "text": "Zebras are striped."}]))
    ingest([docs], store, embedder, IngestOptions())
    write(docs / "a.json", json.dumps([{"id": "y", "text": "Yaks are hairy."}]))
    write(docs / "b.json", json.dumps([{"id": "z", "text": "Zebras are striped."}, {"id": "x", "text": "Xylophones are loud."}]))
    report = ingest([docs], store, embedder, IngestOptions())
    assert (report.updated, report.removed, report.skipped) == (["x"], [], [])
    sources = {meta["doc_id"]: Path(meta["source"]).name for _, meta in contents(store).values()}
    assert sources == {"x": "b.json", "y": "a.json", "z": "b.json"}


def test_a_file_that_became_unreadable_keeps_its_earlier_content(tmp_path, store, embedder):
    docs = tmp_path / "docs"
    path = write(docs / "a.md", "# A\n\nApples.\n")
    ingest([docs], store, embedder, IngestOptions())
    path.write_bytes(b"\x00\x01binary now")
    report = ingest([docs], store, embedder, IngestOptions())
    assert (report.skipped, report.removed) == ([(str(path), "binary content, not text")], [])
    assert doc_ids(store) == {"a.md"}


def test_dry_run_lists_the_diff_and_changes_nothing(tmp_path, store, embedder):
    docs = tmp_path / "docs"
    write(docs / "keep.md", "Keep me.")
    write(docs / "edit.md", "Old text.")
    write(docs / "gone.md", "Bye.")
    ingest([docs], store, embedder, IngestOptions())
    before = contents(store)
    write(docs / "edit.md", "New text.")
    write(docs / "new.md", "Hello.")
    (docs / "gone.md").unlink()

    report = ingest([docs], store, embedder, IngestOptions(dry_run=True))

    assert (report.added, report.updated, report.unchanged, report.removed, report.chunks_written) == (
        ["new.md"], ["edit.md"], ["keep.md"], ["gone.md"], 0)
    assert contents(store) == before


def test_dry_run_on_a_missing_store_creates_nothing(tmp_path, store, embedder):
    write(tmp_path / "docs" / "a.md", "A.")
    report = ingest([tmp_path / "docs"], store, embedder, IngestOptions(dry_run=True))
    assert report.added == ["a.md"]
    assert open_client(store).list_collections() == []


def test_reset_rebuilds_from_the_given_paths_only(tmp_path, store, embedder):
    write(tmp_path / "one" / "a.md", "Alpha.")
    write(tmp_path / "two" / "b.md", "Beta.")
    ingest([tmp_path / "one"], store, embedder, IngestOptions())
    ingest([tmp_path / "two"], store, embedder, IngestOptions())
    assert doc_ids(store) == {"a.md", "b.md"}
    report = ingest([tmp_path / "two"], store, embedder, IngestOptions(reset=True))
    assert report.added == ["b.md"]
    assert doc_ids(store) == {"b.md"}


def test_changed_chunking_or_embedder_asks_for_a_rebuild(tmp_path, store, embedder):
    write(tmp_path / "docs" / "a.md", "Alpha.")
    ingest([tmp_path / "docs"], store, embedder, IngestOptions())
    with pytest.raises(StoreError, match=r"chunked with tokens=200,overlap=40, the settings now say tokens=120,overlap=40\. Rebuild it: `python -m ingest --reset"):
        ingest([tmp_path / "docs"], Settings(store_dir=store.store_dir, chunk_tokens=120), embedder, IngestOptions())
    collection = open_client(store).get_collection(store.collection)
    collection.modify(metadata={**{k: v for k, v in collection.metadata.items() if not k.startswith("hnsw:")}, "embedder": "other-model"})
    with pytest.raises(EmbedderMismatch, match=r"--reset"):
        ingest([tmp_path / "docs"], store, embedder, IngestOptions())
    report = ingest([tmp_path / "docs"], Settings(store_dir=store.store_dir, chunk_tokens=120), embedder, IngestOptions(reset=True))
    assert report.added == ["a.md"]


def test_a_second_ingest_is_refused_while_one_holds_the_store(tmp_path, store, embedder):
    write(tmp_path / "docs" / "a.md", "Alpha.")
    store.store_dir.mkdir(parents=True)
    with open(store.store_dir / LOCK_NAME, "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("pid 4242")
        held.flush()
        with pytest.raises(StoreError, match=r"Another ingest \(pid 4242\) is writing to the store"):
            ingest([tmp_path / "docs"], store, embedder, IngestOptions())
    assert ingest([tmp_path / "docs"], store, embedder, IngestOptions()).added == ["a.md"]


def test_the_store_folder_inside_an_ingested_folder_is_not_ingested(tmp_path, embedder):
    settings = Settings(store_dir=tmp_path / "store")
    write(tmp_path / "a.md", "Alpha.")
    ingest([tmp_path], settings, embedder, IngestOptions())
    report = ingest([tmp_path], settings, embedder, IngestOptions())
    assert (report.skipped, report.unchanged) == ([], ["a.md"])


def test_progress_reports_files_planned_and_written_chunks_on_the_calling_thread(tmp_path, store, embedder):
    import threading

    for i in range(3):
        write(tmp_path / "docs" / f"{i}.md", f"# Doc {i}\n\n" + "word " * 300)
    events, threads = [], set()

    def on_progress(kind, n):
        events.append((kind, n))
        threads.add(threading.get_ident())

    report = ingest([tmp_path / "docs"], store, embedder, IngestOptions(), on_progress)
    totals = {kind: sum(n for k, n in events if k == kind) for kind in ("files", "file", "planned", "chunks")}
    assert events[0] == ("files", 3)
    assert totals == {"files": 3, "file": 3, "planned": report.chunks_written, "chunks": report.chunks_written}
    assert report.chunks_written > 3
    assert threads == {threading.get_ident()}


def run_cli(args: list[str], env_extra: dict) -> subprocess.CompletedProcess:
    """`python -m ingest` run from the test's own folder, so no .env of the developer's applies."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")} | {"PYTHONPATH": str(REPO)} | env_extra
    return subprocess.run([sys.executable, "-m", "ingest", *args], cwd=Path.cwd(), env=env, capture_output=True, text=True, timeout=120)


def test_cli_exit_codes_summary_and_no_progress_bar_off_a_terminal(tmp_path):
    write(tmp_path / "docs" / "a.md", "# A\n\nAlpha.\n")
    (tmp_path / "docs" / "b.bmp").write_bytes(b"BM")
    env = {"RAG_STORE_DIR": str(tmp_path / "store")}

    first = run_cli([str(tmp_path / "docs")], env)
    assert first.returncode == 1, first.stderr
    assert first.stdout.splitlines()[:2] == [f"Store: {tmp_path / 'store'}", "  added 1, updated 0, unchanged 0, removed 0, skipped 1"]
    assert f"  {tmp_path / 'docs' / 'b.bmp'}: unsupported file type .bmp" in first.stdout
    assert "chunks/s" in first.stdout
    assert "\r" not in first.stderr and "chunk" not in first.stderr

    bad = run_cli([str(tmp_path / "docs")], env | {"RAG_CHUNK_TOKENS": "zero"})
    assert (bad.returncode, bad.stdout) == (2, "")
    assert bad.stderr.startswith("error: RAG_CHUNK_TOKENS='zero' is not valid")

    mismatch = run_cli([str(tmp_path / "docs")], env | {"RAG_CHUNK_TOKENS": "100"})
    assert mismatch.returncode == 3
    assert "python -m ingest --reset" in mismatch.stderr and "Traceback" not in mismatch.stderr


def test_summary_tells_the_model_load_from_embedding_and_rates_only_the_embedding():
    lines = lambda report: summary(report, "store").splitlines()[2:]
    assert lines(IngestReport(added=["a"], chunks_written=19, seconds=20.1, load_seconds=17.5, embed_seconds=1.9)) == [
        "  19 chunks written in 20.1 s (model loaded in 17.5 s; embedding 1.9 s, 10 chunks/s)"
    ]
    assert lines(IngestReport(added=["a"], chunks_written=250, seconds=0.6, embed_seconds=0.5)) == [
        "  250 chunks written in 0.6 s (embedding 0.5 s, 500 chunks/s)"
    ]
    assert lines(IngestReport(unchanged=["a"], seconds=0.2)) == ["  0 chunks written in 0.2 s"]
    assert lines(IngestReport(added=["a"], chunks_written=1)) == ["  1 chunk written in 0.0 s"]
    assert lines(IngestReport(added=["a"], chunks_written=2, seconds=6.3, embed_seconds=6.0)) == [
        "  2 chunks written in 6.3 s (embedding 6.0 s, 0.3 chunks/s)"
    ]


def test_cli_summary_counts_the_model_load_apart_from_the_embedding(tmp_path):
    write(tmp_path / "docs" / "a.md", "# A\n\nAlpha.\n")
    result = run_cli([str(tmp_path / "docs")], {"RAG_STORE_DIR": str(tmp_path / "store")})
    assert result.returncode == 0, result.stderr
    written = result.stdout.splitlines()[2]
    match = re.fullmatch(r"  1 chunk written in ([\d.]+) s \(model loaded in ([\d.]+) s; embedding ([\d.]+) s, ([\d.]+) chunks/s\) on cpu \(torch float32\), batch 32", written)
    assert match, written
    total, load, embedding, _ = map(float, match.groups())
    assert 0 < load <= total and embedding < load  # one chunk embeds in far less time than the model takes to load


def test_cli_ingests_faq_records_with_title_field(tmp_path, embedder):
    records = [{"id": f"r{i}", "course": "c", "section": "s", "question": f"Question {i}?", "text": f"Answer number {i}."} for i in range(5)]
    path = write(tmp_path / "faq.json", json.dumps(records))
    assert ingest_main([str(path), "--title-field", "question"]) == 0  # no RAG_ variables: the store is ./store in tmp_path
    chunks = contents(Settings(store_dir=tmp_path / "store"))
    assert sorted(meta["title"] for _, meta in chunks.values()) == [f"Question {i}?" for i in range(5)]
    assert {(meta["course"], meta["section"]) for _, meta in chunks.values()} == {("c", "s")}


def test_a_files_warnings_are_given_by_the_run_that_stores_it_not_by_every_unchanged_rerun(tmp_path, embedder):
    settings, path = Settings(store_dir=tmp_path / "store"), tmp_path / "faq.json"
    records = [{"id": "a", "text": "Kettles boil water."}, {"id": "b", "text": "Toasters brown bread."},
               {"id": "a", "text": "Kettles also whistle."}]
    path.write_text(json.dumps(records))
    duplicate = (f"{path} record 3", "duplicate id 'a' (first at record 1): its text was added to that document")

    assert ingest([path], settings, embedder, IngestOptions()).warnings == [duplicate]
    assert ingest([path], settings, embedder, IngestOptions()).warnings == []
    assert ingest([path], settings, embedder, IngestOptions(dry_run=True)).warnings == []
    records[1]["text"] = "Toasters brown bread on both sides."  # another record of the file changes
    path.write_text(json.dumps(records))
    assert ingest([path], settings, embedder, IngestOptions(dry_run=True)).warnings == [duplicate]
    changed = ingest([path], settings, embedder, IngestOptions())
    assert (changed.updated, changed.warnings) == (["b"], [duplicate])
