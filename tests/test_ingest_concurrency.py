"""An ingest while another process (the app, rag.ask) keeps the store open and searches it.

Chroma's embedded PersistentClient is thread-safe but not process-safe for concurrent writers, and a reader
process keeps a cached view of the files another process changed. Ingest serialises writers with a lock and
records what each run changed; our reader (open_retriever: the chunk index cache over a LiveCollection) notices
the new version, reopens the store and catches up from that change log.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ingest.pipeline import IngestOptions, ingest
from rag.core.settings import Settings
from rag.store.chroma import open_client

ROOT = Path(__file__).resolve().parent.parent
READER = r"""
import json, sys, time
from pathlib import Path
from rag.core.settings import Settings
from rag.search.index_cache import RECHECK_SECONDS
from rag.search.loader import open_retriever

store, flag, question = sys.argv[1:]
retriever = open_retriever(Settings(store_dir=store))
before = [doc.doc_id for doc in retriever.search(question, 3)]
print("ready", flush=True)
errors, searches = [], 0
while not Path(flag).exists():
    try:
        retriever.search(question, 3)
        searches += 1
    except Exception as exc:
        errors.append(repr(exc))
    time.sleep(0.02)
time.sleep(RECHECK_SECONDS)  # a search rechecks the store at most this often
after = [doc.doc_id for doc in retriever.search(question, 3)]
print(json.dumps({"before": before, "after": after, "errors": errors, "searches": searches,
                  "ids": retriever.index.get().ids, "full_builds": retriever.index.full_builds}))
"""


def test_a_reader_process_searches_through_an_ingest_and_then_finds_the_new_content(tmp_path, embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(20):
        (docs / f"old{i:02d}.md").write_text(f"# Old page {i}\n\nNotes about topic number {i} and routine matters.\n")
    settings = Settings(store_dir=tmp_path / "store")
    ingest([docs], settings, embedder, IngestOptions())

    new_text = "Penguins huddle together to survive the Antarctic winter."
    flag = tmp_path / "ingest-done"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(settings.store_dir), str(flag), new_text],
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    assert reader.stdout.readline().strip() == "ready", reader.stderr.read()

    (docs / "penguins.md").write_text(f"# Penguins huddle\n\n{new_text}\n")
    for i in range(20, 60):
        (docs / f"more{i:03d}.md").write_text(f"# More page {i}\n\n" + "Extra words about many things. " * 10 + "\n")
    report = ingest([docs], settings, embedder, IngestOptions())
    flag.touch()
    out, err = reader.communicate(timeout=120)

    assert reader.returncode == 0, err
    seen = json.loads(out)
    stored = open_client(settings).get_collection(settings.collection).get(include=[])["ids"]
    assert report.added[0] == "more020.md" and "penguins.md" in report.added
    assert seen["errors"] == [] and seen["searches"] > 0
    assert "penguins.md" not in seen["before"]
    assert seen["after"][0] == "penguins.md"
    assert seen["ids"] == sorted(stored)  # every chunk the ingest wrote, none missing, none extra
    assert seen["full_builds"] == 1  # caught up from the change log, not by reading the whole store again
