"""Server mode: ingest, ask and eval against a real `chroma run`, with the same results as the embedded store."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ingest.loaders import RecordFields
from ingest.pipeline import IngestOptions, ingest
from rag.search import index_cache
from rag.core.errors import StoreError
from rag.search.loader import open_retriever
from tests.ollama_standin import unused_port

ROOT = Path(__file__).resolve().parent.parent
FAQ = ROOT.parent / "shared" / "data" / "faq"
CHROMA = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")


def start_chroma(path: Path, port: int) -> subprocess.Popen:
    """Start `chroma run` and wait until its heartbeat answers."""
    process = subprocess.Popen(
        [CHROMA, "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    process.wait()
    raise RuntimeError("chroma run did not start")


@pytest.fixture
def chroma_server(tmp_path):
    """A real Chroma server on a free port; yields (url, path, port, start). Every process start() made is
    stopped afterwards, whether or not the test passed (a test may stop the server and start it again)."""
    port = unused_port()
    path = tmp_path / "chroma-data"
    started: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        process = start_chroma(path, port)
        started.append(process)
        return process

    server = {"url": f"http://127.0.0.1:{port}", "path": path, "port": port, "start": start}
    try:
        server["process"] = start()
        yield server
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
            process.wait()


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=30)


def test_ingest_then_ask_against_a_chroma_server(chroma_server, standin, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAG_CHROMA_URL": chroma_server["url"], "OLLAMA_HOST": standin.host,
           "RAG_STORE_DIR": str(tmp_path / "unused-folder")}
    ingested = subprocess.run([sys.executable, "-m", "ingest"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert ingested.returncode == 0, ingested.stderr
    assert "added 5," in ingested.stdout
    asked = subprocess.run([sys.executable, "-m", "rag.ask", "--json", "How do I pull a model with ollama?"], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
    assert asked.returncode == 0, asked.stderr
    result = json.loads(asked.stdout)
    assert result["answer"] == standin.reply
    assert result["sources"][0]["doc_id"] == "troubleshooting.md"
    assert not (tmp_path / "unused-folder").exists()
    rerun = subprocess.run([sys.executable, "-m", "ingest"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert "added 0, updated 0, unchanged 5, removed 0" in rerun.stdout


def test_server_and_embedded_store_reach_the_same_retrieval_quality(chroma_server, settings, embedder, tmp_path):
    records = [r for r in json.loads((FAQ / "documents-with-ids.json").read_text()) if r["course"] == "mlops-zoomcamp"]
    corpus = tmp_path / "mlops.json"
    corpus.write_text(json.dumps(records))
    wanted = {r["id"] for r in records}
    import csv
    rows = [r for r in csv.DictReader((FAQ / "ground-truth-dev.csv").open()) if r["document"] in wanted][:300]
    options = IngestOptions(fields=RecordFields(title_field="question"))
    figures = []
    for store in (settings, settings.model_copy(update={"chroma_url": chroma_server["url"]})):
        ingest([corpus], store, embedder, options)
        retriever = open_retriever(store)
        ranks = []
        for row in rows:
            ranked = [d.doc_id for d in retriever.search(row["question"], 5)]
            ranks.append(ranked.index(row["document"]) + 1 if row["document"] in ranked else None)
        figures.append((sum(r is not None for r in ranks) / len(rows), sum(1 / r for r in ranks if r) / len(rows)))
    (local_hit, local_mrr), (server_hit, server_mrr) = figures
    assert local_hit >= 0.9
    assert abs(local_hit - server_hit) <= 0.005 and abs(local_mrr - server_mrr) <= 0.005


def test_search_fails_clearly_while_the_server_is_down_and_works_after_restart(chroma_server, settings, embedder, monkeypatch):
    monkeypatch.setattr(index_cache, "RECHECK_SECONDS", 0.0)  # every search asks the server whether the store changed
    store = settings.model_copy(update={"chroma_url": chroma_server["url"]})
    ingest([ROOT / "ingest" / "sample"], store, embedder, IngestOptions())
    retriever = open_retriever(store)
    assert retriever.search("How do I pull a model with ollama?", 1)[0].doc_id == "troubleshooting.md"
    stop(chroma_server["process"])
    with pytest.raises(StoreError) as caught:
        retriever.search("How do I pull a model with ollama?", 1)
    assert str(caught.value).startswith(f"Search failed: the Chroma server at {chroma_server['url']} did not answer (")
    assert str(caught.value).endswith("Check that it runs (`chroma run --path DIR --port PORT`) and that RAG_CHROMA_URL points at it.")
    chroma_server["process"] = chroma_server["start"]()
    assert retriever.search("How do I pull a model with ollama?", 1)[0].doc_id == "troubleshooting.md"


def test_the_server_fixture_stops_every_process_it_started_even_when_the_test_fails(tmp_path):
    fixture = chroma_server.__wrapped__(tmp_path)
    server = next(fixture)
    first = server["process"]
    stop(first)
    second = server["start"]()
    assert second.poll() is None
    with pytest.raises(RuntimeError):
        fixture.throw(RuntimeError("the test failed"))
    assert first.poll() is not None and second.poll() is not None
