"""The saved chunk index: reused after a restart, refused when stale, truncated, damaged or from another embedder,
and refreshed from the change log to exactly what a full rebuild gives, after adds, updates, deletes and a kill -9."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from concurrent.futures import Future
from pathlib import Path

import bm25s
import numpy as np
import pytest
from chromadb.api.shared_system_client import SharedSystemClient

from ingest.pipeline import IngestOptions, ingest
from rag.search import index_cache
from rag.search import index_file
from rag.search.bm25 import BM25, TermCounts
from rag.store.changelog import Changes, log_name
from rag.search.chunk_index import ChunkIndex, chunk_tokens, tokenize
from rag.search.index_cache import ChunkIndexCache
from rag.search.loader import open_index
from rag.core.settings import Settings
from rag.store.chroma import LiveCollection, open_client, open_collection
from tests.test_ingest_crash import REPO, finish, run_and_kill, write_corpus

QUERIES = ["river otter", "kayak paddle canoe bridge", "new page heron", "orchard", "page edited lantern meadow"]


def open_cache(settings: Settings, saved: bool = True) -> ChunkIndexCache:
    """A chunk index cache over the store as a fresh reader opens it (the saved index read ahead, as the app and
    rag.ask do); saved=False never touches the index file."""
    SharedSystemClient.clear_system_cache()
    if saved:
        return open_index(settings)[2]
    client = open_client(settings)
    collection = open_collection(settings, settings.embed_model, None, create=False, client=client)
    return ChunkIndexCache(LiveCollection(collection, settings, client))


def assert_same(index: ChunkIndex, rebuilt: ChunkIndex) -> None:
    """Same ids in the same order, same texts, metadata and vectors, and the same BM25 scores for every query."""
    assert index.ids == rebuilt.ids
    assert index.texts == rebuilt.texts
    assert index.metadatas == rebuilt.metadatas
    assert np.array_equal(index.vectors, rebuilt.vectors)
    for query in QUERIES:
        tokens = tokenize([query])[0]
        assert np.array_equal(index.bm25.scores(tokens), rebuilt.bm25.scores(tokens)), query


def full_rebuild(settings: Settings) -> ChunkIndex:
    """The index read whole from the store, ignoring any saved copy."""
    cache = open_cache(settings, saved=False)
    index = cache.get()
    assert cache.full_builds == 1
    return index


def refreshed(cache: ChunkIndexCache) -> ChunkIndex:
    """The cache's index after it has noticed what changed in the store."""
    cache.checked_at = float("-inf")
    return cache.get()


def test_scores_equal_bm25s_lucene_bit_for_bit():
    texts = ["Installing on Linux needs apt and apt-get", "Windows installer steps", "", "the the the", "Linux kernel modules on Linux"]
    metadatas = [{"title": "Install"}, {"title": "Windows"}, {}, {}, {"title": "Kernel", "headings": "Linux > Modules"}]
    tokens = chunk_tokens(texts, metadatas)
    reference = bm25s.BM25(k1=1.2, b=0.75)
    reference.index(tokens, show_progress=False)
    ours = BM25(TermCounts.from_tokens(tokens))
    for query in ["linux install", "linux linux windows", "kernel", "apt modules steps"]:
        words = tokenize([query])[0]
        assert np.array_equal(ours.scores(words), reference.get_scores(words)), query


def test_chunks_added_to_an_empty_index_equal_an_index_built_from_them():
    empty = ChunkIndex([], [], [], np.zeros((0, 0), np.float32), (0,))
    changes = Changes(ids=["b:1", "a:1", "a:2"], texts=["river otter", "kayak paddle", "canoe bridge otter"],
                      metadatas=[{"doc_id": "b"}, {"doc_id": "a"}, {"doc_id": "a"}],
                      vectors=[np.eye(3, 4, dtype=np.float32)])

    added = index_cache.apply_changes(empty, changes, (3,))

    assert added.ids == ["a:1", "a:2", "b:1"]
    assert_same(added, index_cache.build_index(changes, (3,)))
    assert np.array_equal(added.derived.doc_vectors, index_cache.build_index(changes, (3,)).derived.doc_vectors)


def test_cached_filter_masks_are_carried_through_a_refresh_and_equal_fresh_ones():
    metadatas = [{"doc_id": d, "course": c} for d, c in [("a", "x"), ("a", "x"), ("b", "y"), ("c", "x")]]
    index = ChunkIndex(["a:1", "a:2", "b:1", "c:1"], ["one", "two", "three", "four"], metadatas, np.eye(4, dtype=np.float32), (1,))
    filters = [{"course": "x"}, {"$or": [{"doc_id": "b"}, {"doc_id": "d"}]}]
    for where in filters:
        index.mask(where)
    changes = Changes(ids=["d:1", "a:2", "a:0"], texts=["five", "two again", "zero"],
                      metadatas=[{"doc_id": "d", "course": "y"}, {"doc_id": "a", "course": "y"}, {"doc_id": "a", "course": "x"}],
                      vectors=[np.eye(3, 4, dtype=np.float32)], removed={"c:1"})

    refreshed = index_cache.apply_changes(index, changes, (2,))

    assert refreshed.ids == ["a:0", "a:1", "a:2", "b:1", "d:1"]
    carried = {key: mask.tolist() for key, mask in refreshed.masks.items()}
    fresh = index_cache.build_index(Changes(ids=refreshed.ids, texts=refreshed.texts, metadatas=refreshed.metadatas,
                                            vectors=[refreshed.vectors]), (2,))
    assert carried == {key: fresh.mask(json.loads(key)).tolist() for key in carried}
    assert carried == {json.dumps(filters[0], sort_keys=True): [True, True, False, False, False],
                       json.dumps(filters[1], sort_keys=True): [False, False, False, True, True]}


def test_a_restart_loads_the_saved_index_without_reading_the_store(tmp_path, embedder, monkeypatch):
    docs, settings = tmp_path / "docs", Settings(store_dir=tmp_path / "store")
    write_corpus(docs, 1)
    ingest([docs], settings, embedder, IngestOptions())
    first = open_cache(settings)
    built = first.get()
    first.wait_saved()
    assert first.full_builds == 1 and first.path.is_file()

    again = open_cache(settings)
    assert_same(again.get(), built)
    assert again.full_builds == 0
    unread = ChunkIndexCache(again.live, again.path)  # no read-ahead: the file is read when first asked
    assert_same(unread.get(), built)
    assert unread.full_builds == 0


def test_an_error_of_ours_while_loading_the_index_is_raised_not_called_a_store_failure(tmp_path, embedder):
    docs, settings = tmp_path / "docs", Settings(store_dir=tmp_path / "store")
    write_corpus(docs, 1)
    ingest([docs], settings, embedder, IngestOptions())
    reader = open_cache(settings, saved=False)
    failed_read = Future()
    failed_read.set_exception(TypeError("a bug in indexing the saved copy"))  # as read_ahead hands over any failure
    cache = ChunkIndexCache(reader.live, tmp_path / "saved.index", failed_read)

    with pytest.raises(TypeError) as caught:
        cache.get()

    assert str(caught.value) == "a bug in indexing the saved copy"


def test_a_stale_saved_index_is_caught_up_from_the_change_log(tmp_path, embedder):
    docs, settings = tmp_path / "docs", Settings(store_dir=tmp_path / "store")
    write_corpus(docs, 1)
    ingest([docs], settings, embedder, IngestOptions())
    first = open_cache(settings)
    first.get()
    first.wait_saved()
    write_corpus(docs, 2)  # edits most pages, deletes five, adds five
    ingest([docs], settings, embedder, IngestOptions())

    again = open_cache(settings)
    assert_same(again.get(), full_rebuild(settings))
    assert again.full_builds == 0


def test_a_truncated_damaged_or_other_embedder_index_is_rebuilt(tmp_path, embedder):
    docs, settings = tmp_path / "docs", Settings(store_dir=tmp_path / "store")
    write_corpus(docs, 1)
    ingest([docs], settings, embedder, IngestOptions())
    first = open_cache(settings)
    built = first.get()
    first.wait_saved()
    path, whole = first.path, first.path.read_bytes()

    def reopened_after(damage) -> ChunkIndexCache:
        damage()
        cache = open_cache(settings)
        assert_same(cache.get(), built)
        assert cache.full_builds == 1
        cache.wait_saved()
        restarted = open_cache(settings)  # saved again, whole: the next start reads no chunk from the store
        assert_same(restarted.get(), built)
        assert restarted.full_builds == 0
        return cache

    reopened_after(lambda: path.write_bytes(whole[: len(whole) // 2]))
    flipped = bytearray(whole)
    flipped[-100] ^= 0xFF
    reopened_after(lambda: path.write_bytes(bytes(flipped)))
    saved = index_file.load(path)
    saved.header.embedder = "another-embedder"
    reopened_after(lambda: index_file.save(path, saved))
    reopened_after(lambda: path.unlink())


def test_incremental_refresh_equals_a_full_rebuild_after_adds_updates_deletes_and_a_kill_9(tmp_path, embedder, monkeypatch):
    monkeypatch.setattr(index_cache, "RECHECK_SECONDS", 0.0)
    docs, settings = tmp_path / "docs", Settings(store_dir=tmp_path / "store")
    write_corpus(docs, 1)
    ingest([docs], settings, embedder, IngestOptions())
    reader = open_cache(settings)
    reader.get()

    write_corpus(docs, 2)
    run_and_kill(docs, settings.store_dir, signal.SIGKILL)  # killed after its first batch: half the update is in
    assert_same(refreshed(reader), full_rebuild(settings))
    finish(docs, settings.store_dir)
    assert_same(refreshed(reader), full_rebuild(settings))

    write_corpus(docs, 1)  # back: the new pages go, the edits are undone, the deleted pages return
    ingest([docs], settings, embedder, IngestOptions())
    assert_same(refreshed(reader), full_rebuild(settings))
    assert reader.full_builds == 1


def warnings(caplog) -> list[str]:
    """What the chunk index warned about."""
    return [r.getMessage() for r in caplog.records if r.name == index_cache.__name__ and r.levelno == logging.WARNING]


def write_pages(folder: Path, animal: str) -> None:
    """Six one-chunk pages about an animal: another animal rewrites every page and keeps the chunk count."""
    folder.mkdir(exist_ok=True)
    for n in range(6):
        (folder / f"page{n}.md").write_text(f"# Page {n}\n\nThe {animal} number {n} lives by the river.\n")


def test_a_flipped_bit_in_the_saved_headers_seq_is_caught_and_the_index_rebuilt_with_a_warning(tmp_path, embedder, caplog):
    docs, settings = tmp_path / "docs", Settings(store_dir=tmp_path / "store")
    write_pages(docs, "otter")
    ingest([docs], settings, embedder, IngestOptions())
    first = open_cache(settings)
    first.get()
    first.wait_saved()
    write_pages(docs, "heron")
    ingest([docs], settings, embedder, IngestOptions())
    data = bytearray(first.path.read_bytes())
    data[data.index(b'"seq":') + len(b'"seq":')] ^= 0x08  # 1,999,999,999 becomes 9,999,999,999: past every change
    first.path.write_bytes(bytes(data))

    again = open_cache(settings)

    assert_same(again.get(), full_rebuild(settings))
    assert all("heron" in text for text in again.get().texts)
    assert again.full_builds == 1
    assert warnings(caplog) == [
        f"chunk index: the saved copy {again.path} cannot be used (its header is damaged (a checksum does not match)); "
        "rebuilding it from the store"
    ]


def test_an_unreadable_change_log_entry_falls_back_to_a_full_rebuild_with_a_warning(tmp_path, embedder, caplog):
    docs, settings = tmp_path / "docs", Settings(store_dir=tmp_path / "store")
    write_corpus(docs, 1)
    ingest([docs], settings, embedder, IngestOptions())
    first = open_cache(settings)
    first.get()
    first.wait_saved()
    write_corpus(docs, 2)  # deletes five pages: their chunk ids are logged
    ingest([docs], settings, embedder, IngestOptions())
    log = open_client(settings).get_collection(log_name(settings.collection), embedding_function=None)
    entries = log.get(include=["documents"])
    entry, document = entries["ids"][0], entries["documents"][0]
    log.update(ids=[entry], documents=[document[: len(document) // 2]], embeddings=[[0.0]])

    again = open_cache(settings)

    assert_same(again.get(), full_rebuild(settings))
    assert again.full_builds == 1
    [warning] = warnings(caplog)
    assert warning.startswith(f"chunk index: the change log entry {entry} is unreadable (JSONDecodeError: ")
    assert warning.endswith("); rebuilding from the store instead of following the log")


def test_a_reader_open_across_ingest_reset_with_the_same_chunk_count_reads_the_new_collection(tmp_path, embedder):
    docs, settings = tmp_path / "docs", Settings(store_dir=tmp_path / "store")
    write_pages(docs, "otter")
    ingest([docs], settings, embedder, IngestOptions())
    reader = open_cache(settings)
    before = reader.get()
    write_pages(docs, "heron")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env |= {"RAG_STORE_DIR": str(settings.store_dir), "PYTHONPATH": str(REPO)}
    reset = subprocess.run([sys.executable, "-m", "ingest", "--reset", str(docs)], env=env, capture_output=True, text=True,
                           timeout=300)
    assert reset.returncode == 0, reset.stderr

    after = refreshed(reader)

    assert len(after.ids) == len(before.ids) == 6
    assert_same(after, full_rebuild(settings))
    assert all("heron" in text for text in after.texts)
