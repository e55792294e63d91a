"""An ingest while another process (the app) keeps the store open and searches it.

Chroma's embedded PersistentClient is thread-safe but not process-safe for concurrent writers, and a
reader process keeps its vector index in memory: it sees new rows at once but new vectors only after it
drops its cached system (SharedSystemClient.clear_system_cache) and reopens. Ingest serialises writers with
a lock and bumps the collection's `generation` when it finishes, which is what a reader watches.
"""
from __future__ import annotations

import json
import subprocess
import sys

from ingest.pipeline import IngestOptions, ingest
from rag.core.settings import Settings

READER = r"""
import json, sys, time, chromadb
from chromadb.api.shared_system_client import SharedSystemClient
store, flag, probe = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
collection = chromadb.PersistentClient(store).get_collection("docs")
generation = collection.metadata.get("generation")
errors, searches = [], 0
print("ready", flush=True)
while True:
    try:
        collection.query(query_embeddings=[probe], n_results=3)
        searches += 1
    except Exception as exc:
        errors.append(repr(exc))
    if __import__("os").path.exists(flag):
        break
    time.sleep(0.02)
stale = collection.query(query_embeddings=[probe], n_results=1)["ids"][0]
fresh_generation = chromadb.PersistentClient(store).get_collection("docs").metadata.get("generation")
if fresh_generation != generation:
    SharedSystemClient.clear_system_cache()
    collection = chromadb.PersistentClient(store).get_collection("docs")
reloaded = collection.query(query_embeddings=[probe], n_results=1)["ids"][0]
print(json.dumps({"errors": errors, "searches": searches, "stale": stale, "reloaded": reloaded,
                  "generation_changed": fresh_generation != generation}))
"""


def test_a_reader_process_searches_through_an_ingest_and_sees_new_content_after_reopening(tmp_path, embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(20):
        (docs / f"old{i:02d}.md").write_text(f"# Old page {i}\n\nNotes about topic number {i} and routine matters.\n")
    settings = Settings(store_dir=tmp_path / "store")
    ingest([docs], settings, embedder, IngestOptions())

    new_text = "Penguins huddle together to survive the Antarctic winter."
    probe = embedder.embed(["Penguins huddle\n" + new_text])[0]
    flag = tmp_path / "ingest-done"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(settings.store_dir), str(flag), json.dumps(probe)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert reader.stdout.readline().strip() == "ready"

    (docs / "penguins.md").write_text(f"# Penguins huddle\n\n{new_text}\n")
    for i in range(20, 60):
        (docs / f"more{i:03d}.md").write_text(f"# More page {i}\n\n" + "Extra words about many things. " * 10 + "\n")
    report = ingest([docs], settings, embedder, IngestOptions())
    flag.touch()
    out, err = reader.communicate(timeout=60)

    assert reader.returncode == 0, err
    seen = json.loads(out)
    assert report.added[0] == "more020.md" and "penguins.md" in report.added
    assert seen["errors"] == [] and seen["searches"] > 0
    assert seen["generation_changed"] is True
    assert seen["reloaded"][0].startswith("penguins.md:")
    # chromadb 1.5.9: without reopening, the reader's in-memory index never saw the new vectors
    assert not seen["stale"][0].startswith("penguins.md:")
