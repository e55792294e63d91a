"""The embedder's runtimes against each other, in one run: `python bench/bench_embed_runtime.py [--sample N]`.

For torch (sentence-transformers, float32), onnx (ONNX Runtime, float32) and onnx-int8 (dynamically quantised):
- the export and quantisation, once, into a fresh cache folder (then reused, as a user's cache is);
- whole-process ingest of the FAQ (`python -m ingest`, interpreter start and imports included) against a bare
  torch `SentenceTransformer.encode` of the same chunk texts in this process (target <= 0.6x);
- query embedding p50 over FAQ questions, one at a time (target <= 3 ms);
- retrieval hit rate and MRR (top 5, hybrid) on the FAQ dev set (per course) and on bench/longform by document, each
  store queried by its own runtime, and the float32 stores queried by int8 and back (cross-variant; target: within
  0.005 of float32);
- int8 vectors' cosine against torch's on 300 FAQ chunks.
Prints lines, then one JSON line; states the load average at the start and the end.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_ingest import chunk_texts  # noqa: E402
from ingest.loaders import RecordFields  # noqa: E402
from rag.core.settings import Settings  # noqa: E402
from rag.evaluation.cli import evaluate, parse_args  # noqa: E402
from rag.search.embeddings import load_embedder  # noqa: E402
from rag.search.retrieval import Retriever  # noqa: E402
from rag.store.chroma import open_collection  # noqa: E402

FAQ = ROOT.parent / "shared" / "data" / "faq"
LONGFORM = ROOT / "bench" / "longform"
RUNTIMES = ("onnx-int8", "onnx", "torch")  # int8 first: the figures that decide the default come first
MODEL = "all-MiniLM-L6-v2"


def load() -> str:
    """The load averages, for the report."""
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def whole_ingest(runtime: str, paths: list[Path], store: Path, cache: Path, extra: list[str]) -> float:
    """Seconds for `python -m ingest` of paths into a new store with this runtime."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")} | {
        "RAG_STORE_DIR": str(store), "RAG_EMBED_RUNTIME": runtime, "RAG_EMBED_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ingest", *map(str, paths), *extra], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    print(f"  {runtime}: {done.stdout.strip().splitlines()[2].strip()}", flush=True)
    return seconds


def bare_torch_encode(torch_embedder, texts: list[str]) -> float:
    """Seconds for sentence-transformers to encode the texts in this process (the model loaded and warm)."""
    torch_embedder.model.encode(texts[:64])
    started = time.perf_counter()
    torch_embedder.model.encode(texts, normalize_embeddings=True)
    return time.perf_counter() - started


def query_p50(embedder, questions: list[str]) -> float:
    """Median milliseconds to embed one question."""
    embedder.embed_query("warm up")
    times = []
    for question in questions:
        started = time.perf_counter()
        embedder.embed_query(question)
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 2)


def quality(store: Path, embedder, argv: list[str]) -> dict:
    """Hit rate and MRR of the store searched with this embedder's question vectors (the store's check bypassed)."""
    settings = Settings(store_dir=store)
    collection = open_collection(settings, MODEL, None, create=False)
    args = parse_args(argv)
    result = evaluate(Retriever(collection, embedder), rows(args), args, settings.relevance_floor)
    return {"hit_rate": result["hit_rate"], "mrr": result["mrr"]}


def rows(args) -> list[dict]:
    """The labelled rows of an evaluation, sampled as `rag.eval --sample` does."""
    from rag.evaluation.answers import pick_rows
    from rag.evaluation.cli import read_rows

    columns = [args.question_column, args.id_column] + ([args.filter_column] if args.filter_column else [])
    return [row for _, row in pick_rows(read_rows(args.ground_truth, columns), args.limit, args.sample)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, help="FAQ dev rows evaluated (default: all 3,762)")
    parser.add_argument("--queries", type=int, default=300, help="questions timed for the query embedding p50")
    options = parser.parse_args()
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    result: dict = {"machine": f"{platform.machine()} {os.cpu_count()} cores", "load_start": load()}
    print(f"machine: {result['machine']}, load {result['load_start']}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-runtime-"))
    cache = workdir / "onnx-cache"
    try:
        torch_embedder = load_embedder(MODEL)
        started = time.perf_counter()
        load_embedder(MODEL, runtime="onnx", cache=cache)
        export_s = time.perf_counter() - started
        started = time.perf_counter()
        embedders = {"torch": torch_embedder, "onnx": load_embedder(MODEL, runtime="onnx", cache=cache),
                     "onnx-int8": load_embedder(MODEL, runtime="onnx-int8", cache=cache)}
        quantise_s = time.perf_counter() - started
        result["export_s"], result["quantise_s"] = round(export_s, 1), round(quantise_s, 1)
        print(f"export {export_s:.1f} s, int8 quantisation {quantise_s:.1f} s (once per weights, cached)", flush=True)

        texts = chunk_texts([FAQ / "documents-with-ids.json"], torch_embedder, Settings(store_dir=workdir / "unused"),
                            RecordFields(title_field="question"))
        per_runtime: dict = {}
        faq_args = [str(FAQ / "ground-truth-dev.csv"), "--filter-column", "course"]
        faq_args += ["--sample", str(options.sample)] if options.sample else []
        longform_args = [str(LONGFORM / "starlette-questions.csv")]
        questions = [row["question"] for row in csv.DictReader((FAQ / "ground-truth-dev.csv").open())][: options.queries]
        bare = None
        for runtime in RUNTIMES:
            faq_store, longform_store = workdir / f"faq-{runtime}", workdir / f"longform-{runtime}"
            seconds = whole_ingest(runtime, [FAQ / "documents-with-ids.json"], faq_store, cache, ["--title-field", "question"])
            if bare is None:  # right after the first ingest, so the main ratio is known early on a busy machine
                bare = bare_torch_encode(torch_embedder, texts)
                result["faq_chunks"], result["bare_torch_encode_s"] = len(texts), round(bare, 2)
                print(f"faq: {len(texts)} chunks, bare torch encode {bare:.2f} s (load {load()})", flush=True)
            figures = {"ingest_s": round(seconds, 2), "ingest_vs_bare_torch": round(seconds / bare, 3),
                       "query_p50_ms": query_p50(embedders[runtime], questions)}
            print(f"{runtime}: whole-process ingest {seconds:.2f} s = {figures['ingest_vs_bare_torch']:.3f}x the bare torch encode "
                  f"(target <= 0.6); query p50 {figures['query_p50_ms']} ms (target <= 3) (load {load()})", flush=True)
            figures["faq"] = quality(faq_store, embedders[runtime], faq_args)
            whole_ingest(runtime, [LONGFORM / "corpus"], longform_store, cache, [])
            figures["longform"] = quality(longform_store, embedders[runtime], longform_args)
            per_runtime[runtime] = figures
            print(f"{runtime}: FAQ {figures['faq']}, longform {figures['longform']} (load {load()})", flush=True)
        cosines = (np.asarray(embedders["onnx-int8"].embed(texts[:300])) * np.asarray(torch_embedder.embed(texts[:300]))).sum(axis=1)
        result["int8_cosine_to_torch_300_chunks"] = {"min": round(float(cosines.min()), 6), "mean": round(float(cosines.mean()), 6)}
        print(f"int8 vs torch cosine on 300 FAQ chunks: min {cosines.min():.6f}, mean {cosines.mean():.6f}", flush=True)
        cross = {
            "faq torch store, int8 questions": quality(workdir / "faq-torch", embedders["onnx-int8"], faq_args),
            "faq int8 store, torch questions": quality(workdir / "faq-onnx-int8", torch_embedder, faq_args),
            "longform torch store, int8 questions": quality(workdir / "longform-torch", embedders["onnx-int8"], longform_args),
            "longform int8 store, torch questions": quality(workdir / "longform-onnx-int8", torch_embedder, longform_args),
        }
        for label, figures in cross.items():
            print(f"cross-variant, {label}: {figures}", flush=True)
        result.update(runtimes=per_runtime, cross_variant=cross, load_end=load())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
