"""RAG_EMBED_RUNTIME: the packaged model run by ONNX Runtime (float32 or int8) gives torch's vectors (float32) or
ranks alike (int8); a store records which variant embedded it, and the other variant is refused with the --reset hint."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ingest.__main__ import summary
from ingest.pipeline import IngestOptions, IngestReport, ingest
from rag.core.errors import EmbedderMismatch, SettingsError
from rag.core.settings import Settings
from rag.search.embeddings import load_embedder, onnx_embedder, resolve_model_path
from rag.search.onnx_embedder import OnnxEmbedder
from rag.search.loader import open_retriever
from tests.conftest import SAMPLE_DIR

REPO = Path(__file__).resolve().parent.parent
FAQ = REPO.parent / "shared" / "data" / "faq"
MODEL = "all-MiniLM-L6-v2"
TEXTS = [
    "Otters hold hands while they sleep.",
    "How do I install Docker on Windows? " * 40,  # past the model's 256 word pieces: cut alike
    "x",
    "Une phrase en français, avec des accents: été, çà, où. Und ein Satz auf Deutsch.",
    "def main():\n    return {'key': [1, 2, 3]}  # code",
]


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory) -> Path:
    """One export of the packaged model for the whole session."""
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="session")
def onnx_float32(onnx_cache):
    return load_embedder(MODEL, runtime="onnx", cache=onnx_cache)


@pytest.fixture(scope="session")
def onnx_int8(onnx_cache):
    return load_embedder(MODEL, runtime="onnx-int8", cache=onnx_cache)


def cosines(a: list[list[float]], b: list[list[float]]) -> np.ndarray:
    """Row-wise cosine of two lists of unit vectors."""
    return (np.asarray(a) * np.asarray(b)).sum(axis=1)


def test_onnx_float32_gives_torchs_vectors_within_1e_3(embedder, onnx_float32):
    assert cosines(embedder.embed(TEXTS), onnx_float32.embed(TEXTS)).min() > 1 - 1e-3
    assert cosines([embedder.embed_query(TEXTS[1])], [onnx_float32.embed_query(TEXTS[1])])[0] > 1 - 1e-3
    norms = np.linalg.norm(np.asarray(onnx_float32.embed(TEXTS)), axis=1)
    assert np.allclose(norms, 1.0, atol=1e-5)


def test_vectors_come_back_in_the_order_of_the_texts_whatever_the_batch(onnx_float32):
    one_by_one = [onnx_float32.embed([text])[0] for text in TEXTS]
    assert cosines(onnx_float32.embed(TEXTS, batch_size=2), one_by_one).min() > 1 - 1e-5


def test_onnx_counts_word_pieces_as_torch_does(embedder, onnx_float32, onnx_int8):
    for onnx in (onnx_float32, onnx_int8):
        assert (onnx.max_tokens, onnx.dimension) == (embedder.max_tokens, embedder.dimension) == (256, 384)
        assert [onnx.token_offsets(text) for text in TEXTS] == [embedder.token_offsets(text) for text in TEXTS]
    assert (embedder.variant, onnx_float32.variant, onnx_int8.variant) == ("float32", "float32", "int8")
    assert onnx_int8.describe() == "cpu (onnx int8), batch 32"


def test_the_export_is_made_once_and_kept_by_the_weights_content_hash(onnx_cache, onnx_int8):
    exports = sorted(p.relative_to(onnx_cache).parts[1] for p in onnx_cache.glob("*/*.onnx"))
    assert exports == ["model-int8.onnx", "model.onnx"]
    folder = next(onnx_cache.glob("*/model.onnx")).parent
    assert len(folder.name) == 64 and all(c in "0123456789abcdef" for c in folder.name)
    stamp = {p: p.stat().st_mtime_ns for p in folder.iterdir()}
    again = OnnxEmbedder(MODEL, Path(resolve_model_path(MODEL)), True, onnx_cache)
    assert {p: p.stat().st_mtime_ns for p in folder.iterdir()} == stamp
    assert cosines(again.embed(TEXTS), onnx_int8.embed(TEXTS)).min() > 1 - 1e-6


def test_int8_ranks_a_faq_dev_sample_like_float32(embedder, onnx_int8):
    records = [r for r in json.loads((FAQ / "documents-with-ids.json").read_text()) if r["course"] == "mlops-zoomcamp"]
    questions = [row["question"] for row in csv.DictReader((FAQ / "ground-truth-dev.csv").open())
                 if row["course"] == "mlops-zoomcamp"][:80]
    passages = [f"{r['question']}\n{r['text']}" for r in records]
    overlaps, firsts = [], []
    ranked = {}
    for name, model in (("float32", embedder), ("int8", onnx_int8)):
        scores = np.asarray([model.embed_query(q) for q in questions]) @ np.asarray(model.embed(passages)).T
        ranked[name] = np.argsort(-scores, axis=1)[:, :5]
    for a, b in zip(ranked["float32"], ranked["int8"]):
        overlaps.append(len(set(a) & set(b)) / 5)
        firsts.append(a[0] == b[0])
    # measured: top-5 overlap 0.91 (never below 4 of 5), the same first passage for 79 of 80 questions
    assert np.mean(overlaps) >= 0.85 and min(overlaps) >= 0.6 and np.mean(firsts) >= 0.95, (np.mean(overlaps), np.mean(firsts))


def test_a_float32_store_is_searched_by_onnx_float32_as_by_torch(tmp_path, embedder, onnx_cache):
    store = tmp_path / "store"
    ingest([SAMPLE_DIR], Settings(store_dir=store), embedder, IngestOptions())
    by_torch = open_retriever(Settings(store_dir=store)).search("How do I add my own documents?", 5)
    by_onnx = open_retriever(Settings(store_dir=store, embed_runtime="onnx", embed_cache=onnx_cache)).search(
        "How do I add my own documents?", 5)
    assert [d.doc_id for d in by_onnx] == [d.doc_id for d in by_torch]
    assert np.allclose([d.score for d in by_onnx], [d.score for d in by_torch], atol=1e-4)


def test_a_store_embedded_in_int8_is_refused_by_float32_with_the_reset_hint(tmp_path, embedder, onnx_int8):
    store = tmp_path / "store"
    ingest([SAMPLE_DIR], Settings(store_dir=store, embed_runtime="onnx-int8"), onnx_int8, IngestOptions())
    message = ("The store was embedded by the int8 variant of 'all-MiniLM-L6-v2' but RAG_EMBED_RUNTIME makes float32 "
               "vectors, and the two are not mixed in one store. Set RAG_EMBED_RUNTIME=onnx-int8, or rebuild it: "
               "`python -m ingest --reset PATH ...`.")
    with pytest.raises(EmbedderMismatch) as refused:
        open_retriever(Settings(store_dir=store))
    assert str(refused.value) == message
    with pytest.raises(EmbedderMismatch) as refused:
        ingest([SAMPLE_DIR], Settings(store_dir=store), embedder, IngestOptions(dry_run=True))
    assert str(refused.value) == message
    assert open_retriever(Settings(store_dir=store, embed_runtime="onnx-int8")).search("add documents", 3)


def test_a_float32_store_is_refused_by_int8_and_reset_rebuilds_it(tmp_path, embedder, onnx_int8):
    store = tmp_path / "store"
    ingest([SAMPLE_DIR], Settings(store_dir=store), embedder, IngestOptions())
    int8 = Settings(store_dir=store, embed_runtime="onnx-int8")
    with pytest.raises(EmbedderMismatch, match="embedded by the float32 variant .* Set RAG_EMBED_RUNTIME=torch or onnx, or "
                                               r"rebuild it: `python -m ingest --reset PATH \.\.\.`\."):
        ingest([SAMPLE_DIR], int8, onnx_int8, IngestOptions())
    report = ingest([SAMPLE_DIR], int8, onnx_int8, IngestOptions(reset=True))
    assert report.chunks_written and report.embedded_on == "cpu (onnx int8), batch 32"
    assert open_retriever(int8).collection.metadata["embedder_variant"] == "int8"


def test_onnx_on_a_gpu_is_a_setting_to_fix():
    with pytest.raises(SettingsError, match="RAG_EMBED_RUNTIME=onnx runs on the CPU, but RAG_EMBED_DEVICE=cuda. Set "
                                            "RAG_EMBED_DEVICE=auto or cpu, or RAG_EMBED_RUNTIME=torch"):
        onnx_embedder(MODEL, "cuda", "onnx", None)


def test_the_ingest_summary_names_device_runtime_and_batch():
    report = IngestReport(added=["a"], chunks_written=250, seconds=2.5, load_seconds=0.5, embed_seconds=2.0,
                          embedded_on="cpu (onnx int8), batch 32")
    assert summary(report, "store").splitlines()[2] == (
        "  250 chunks written in 2.5 s (model loaded in 0.5 s; embedding 2.0 s, 125 chunks/s) on cpu (onnx int8), batch 32")
    assert summary(IngestReport(unchanged=["a"], seconds=0.2, embedded_on="cpu (onnx int8), batch 32"), "store").splitlines()[2] == (
        "  0 chunks written in 0.2 s")


def test_ingest_and_ask_with_onnx_never_import_torch(tmp_path, settings, onnx_cache, onnx_int8):
    (tmp_path / "notes.md").write_text("# Otters\n\nOtters hold hands while they sleep, so they do not drift apart.\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {
        "PYTHONPATH": str(REPO), "RAG_EMBED_RUNTIME": "onnx-int8", "RAG_EMBED_CACHE": str(onnx_cache)}

    def run(*command):
        done = subprocess.run([sys.executable, "-X", "importtime", "-m", *command], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        imported = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines() if "import time:" in line}
        return done, imported

    ingested, imported = run("ingest", str(tmp_path / "notes.md"))
    assert ingested.returncode == 0, ingested.stderr
    assert "1 chunk written in" in ingested.stdout and ingested.stdout.rstrip().endswith("on cpu (onnx int8), batch 32")
    assert "onnxruntime" in imported and not {"torch", "sentence_transformers", "transformers"} & imported

    asked, imported = run("rag.ask", "Why do otters hold hands?")
    assert asked.returncode == 0, asked.stderr
    assert "notes.md" in asked.stdout
    assert "onnxruntime" in imported and not {"torch", "sentence_transformers", "transformers"} & imported
