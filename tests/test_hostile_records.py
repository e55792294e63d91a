"""Records and file names the store would refuse: fixed with a warning, or skipped alone; never the whole ingest."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ingest.chunking import Chunk
from ingest.pipeline import Batch, IngestOptions, StoreWriter, ingest
from rag.store.changelog import ChangeRecorder
from rag.core.settings import Settings
from rag.store.chroma import open_client, open_collection
from tests.test_ingest import contents, search, write

REPO = Path(__file__).resolve().parent.parent
RESERVED = "the store reserves names starting with $, # or chroma:"
ODD_NAME = os.fsdecode(b"caf\xff\x9b notes.md")  # not UTF-8: the bytes 0xff 0x9b


def hostile_folder(docs: Path) -> None:
    """The probe's inputs beside two good files: reserved metadata names, lone surrogates, a non-UTF-8 file name."""
    write(docs / "good.md", "# Ferns\n\nFerns spread by spores, not seeds.\n")
    write(docs / "dollar.json", json.dumps([
        {"id": "or-key", "text": "Otters hold hands while they sleep.", "$or": "x"},
        {"id": "contains-key", "text": "Herons stand still to fish.", "$contains": "y", "contains": "kept"},
        {"id": "chroma-key", "text": "Beavers build lodges of mud and sticks.", "chroma:document": "z"},
    ]))
    write(docs / "surrogates.jsonl", "\n".join([
        '{"id": "text-s", "text": "Moles dig \\ud800 tunnels with broad paws."}',
        '{"id": "id\\ud800s", "text": "Bats hunt by echo at dusk."}',
        '{"id": "title-s", "title": "Owls \\udc00", "text": "Owls turn their heads far around."}',
        '{"id": "meta-s", "text": "Swifts sleep while they fly.", "note": "v\\ud800", "k\\udfff": 1}',
        '{"id": "big-n", "text": "Whales sing songs that carry for miles.", "n": ' + "9" * 40 + "}",
    ]) + "\n")
    (docs / ODD_NAME).write_text("# Cafe notes\n\nThe espresso machine is descaled on Fridays.\n")


def test_hostile_records_and_names_are_stored_with_warnings_beside_the_good_files(tmp_path, embedder):
    docs, settings = tmp_path / "docs", Settings(store_dir=tmp_path / "store")
    hostile_folder(docs)

    report = ingest([docs], settings, embedder, IngestOptions())

    assert report.skipped == []
    assert report.warnings == [
        (f"{docs}/dollar.json or-key", f"metadata field '$or' renamed to 'or' ({RESERVED})"),
        (f"{docs}/dollar.json contains-key", f"metadata field '$contains' dropped ({RESERVED}; 'contains' is already a field)"),
        (f"{docs}/dollar.json chroma-key", f"metadata field 'chroma:document' renamed to 'document' ({RESERVED})"),
        (f"{docs}/surrogates.jsonl text-s", "lone surrogate escapes in its text replaced by U+FFFD"),
        (f"{docs}/surrogates.jsonl id\ufffds", "lone surrogate escapes in its id, its title replaced by U+FFFD"),
        (f"{docs}/surrogates.jsonl title-s", "lone surrogate escapes in its title replaced by U+FFFD"),
        (f"{docs}/surrogates.jsonl meta-s", "lone surrogate escapes in a metadata value, a metadata name replaced by U+FFFD"),
        (f"{docs}/surrogates.jsonl big-n", "metadata field 'n': a number too large for the store, kept as text"),
    ]
    readable = "caf\\xff\\x9b notes.md"
    assert sorted(report.added) == sorted(
        ["good.md", "or-key", "contains-key", "chroma-key", "text-s", "id\ufffds", "title-s", "meta-s", "big-n", readable]
    )
    chunks = {meta["doc_id"]: (text, meta) for text, meta in contents(settings).values()}
    assert chunks["or-key"][1]["or"] == "x"
    assert chunks["contains-key"][1]["contains"] == "kept"
    assert chunks["chroma-key"][1]["document"] == "z"
    assert chunks["text-s"][0] == "Moles dig \ufffd tunnels with broad paws."
    assert chunks["id\ufffds"][1]["title"] == "id\ufffds"
    assert chunks["title-s"][1]["title"] == "Owls \ufffd"
    assert (chunks["meta-s"][1]["note"], chunks["meta-s"][1]["k\ufffd"]) == ("v\ufffd", 1)
    assert chunks["big-n"][1]["n"] == "9" * 40
    assert chunks[readable][1]["source"] == f"{docs}/{readable}"
    assert search(settings, embedder, "when is the espresso machine descaled")[0] == readable

    again = ingest([docs], settings, embedder, IngestOptions())
    assert (again.added, again.updated, again.removed, again.chunks_written) == ([], [], [], 0)
    assert len(again.unchanged) == 10
    assert again.warnings == []  # said once, by the run that stored the fixed records


def test_a_jsonl_line_nested_too_deeply_or_with_a_too_long_number_is_skipped_and_the_other_lines_stored(tmp_path, embedder):
    docs, settings = tmp_path / "docs", Settings(store_dir=tmp_path / "store")
    write(docs / "records.jsonl", "\n".join([
        '{"id": "otters", "text": "Otters hold hands while they sleep."}',
        "[" * 100_000,
        '{"id": "big", "text": "Whales sing.", "n": ' + "9" * 5_000 + "}",
        '{"id": "herons", "text": "Herons stand still to fish."}',
    ]) + "\n")

    report = ingest([docs], settings, embedder, IngestOptions())

    assert sorted(report.added) == ["herons", "otters"]
    assert report.skipped == [
        (f"{docs}/records.jsonl line 2", "JSON nested too deeply to read"),
        (f"{docs}/records.jsonl line 3", "a number of more than 4,300 digits, too long to read"),
    ]
    assert {meta["doc_id"] for _, meta in contents(settings).values()} == {"otters", "herons"}


def test_a_file_named_in_bytes_that_are_not_utf8_is_removed_when_it_leaves_the_folder(tmp_path, embedder):
    docs, settings = tmp_path / "docs", Settings(store_dir=tmp_path / "store")
    write(docs / "good.md", "# Ferns\n\nFerns spread by spores.\n")
    (docs / ODD_NAME).write_text("# Cafe\n\nDescaled on Fridays.\n")
    ingest([docs], settings, embedder, IngestOptions())

    (docs / ODD_NAME).unlink()
    report = ingest([docs], settings, embedder, IngestOptions())

    assert report.removed == ["caf\\xff\\x9b notes.md"]
    assert {meta["doc_id"] for _, meta in contents(settings).values()} == {"good.md"}


def test_the_cli_ingests_the_probes_inputs_and_exits_0_with_warnings(tmp_path):
    docs = tmp_path / "docs"
    hostile_folder(docs)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")} | {
        "RAG_STORE_DIR": str(tmp_path / "store"), "PYTHONPATH": str(REPO)}

    done = subprocess.run([sys.executable, "-m", "ingest", str(docs)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)

    assert (done.returncode, done.stderr) == (0, "")
    assert "added 10, updated 0, unchanged 0, removed 0, skipped 0" in done.stdout
    assert f"  {docs}/caf\\xff\\x9b notes.md" not in done.stdout  # added, so only in the counts
    assert f"  {docs}/surrogates.jsonl id\ufffds: lone surrogate escapes in its id, its title replaced by U+FFFD" in done.stdout


def chunk(doc_id: str, index: int, n_chunks: int, doc_hash: str, **extra) -> Chunk:
    """A chunk as the planner makes it, with extra metadata."""
    meta = {"doc_id": doc_id, "title": doc_id, "headings": "", "chunk_index": index, "n_chunks": n_chunks, "doc_hash": doc_hash,
            "source": f"/docs/{doc_id}", "root": "/docs", **extra}
    return Chunk(f"{doc_id}:{doc_hash[:12]}:{index}", f"{doc_id} part {index}", f"{doc_id} part {index}", meta)


def test_a_batch_the_store_refuses_is_written_record_by_record_and_only_the_refused_document_is_left_out(tmp_path, embedder):
    settings = Settings(store_dir=tmp_path / "store")
    collection = open_collection(settings, embedder.name, embedder.dimension, create=True)
    client = open_client(settings)
    old = chunk("mixed", 0, 1, "a" * 64)
    writer = StoreWriter(collection, ChangeRecorder(client, collection))
    writer.write(Batch([old], embedder.embed([old.text]), []))

    good = [chunk("good", i, 2, "b" * 64) for i in range(2)]
    mixed = [chunk("mixed", 0, 3, "c" * 64), chunk("mixed", 1, 3, "c" * 64, **{"$or": 1}), chunk("mixed", 2, 3, "c" * 64)]
    first = [mixed[0], good[0], mixed[1]]
    second = [mixed[2], good[1]]
    taken = writer.write(Batch(first, embedder.embed([c.text for c in first]), []))
    taken += writer.write(Batch(second, embedder.embed([c.text for c in second]), [("mixed", [old.id]), ("good", [])]))

    assert taken == 3  # mixed 0 and both good chunks; mixed 0 was then removed with its document
    assert writer.written == 1 + 3 - 1  # the old version's chunk, then the three taken less the one removed
    assert sorted(collection.get()["ids"]) == sorted([old.id, good[0].id, good[1].id])
    assert list(writer.refused) == ["mixed"]
    assert writer.refused["mixed"].startswith("the store refused chunk 2 of 3 (InvalidArgumentError: ")
    assert writer.refused["mixed"].endswith("); the document was not stored, an earlier version is kept")
