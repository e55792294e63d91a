"""Cold start per embedder runtime, in one run: `python bench/bench_cold_start.py [--rounds 2]`.

Over the bundled guide (one store per vector variant) with the stand-in Ollama, for RAG_EMBED_RUNTIME=torch, onnx and
onnx-int8, alternating runtimes each round and keeping the fastest of each:
- `python -m rag.ask QUESTION` as a whole process, from its start to its exit (target <= 3 s on a quiet machine);
- the chat page: from `streamlit run` starting to the chat box drawn, and to the first words of an answer to a
  question typed as soon as the box is there (the page answers once the embedder and the index are loaded).
The ONNX export is made before the timings (once per weights, as on a user's machine after the first run).
Prints lines, then one JSON line, with the load average at the start and the end.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_first_paint import CHROMIUM, CHROMIUM_ARGS, SAMPLE, healthy  # noqa: E402
from ingest.pipeline import IngestOptions, ingest  # noqa: E402
from rag.core.settings import Settings  # noqa: E402
from rag.search.embeddings import load_embedder, variant_of  # noqa: E402
from tests.ollama_standin import OllamaStandin, unused_port  # noqa: E402

RUNTIMES = ("torch", "onnx", "onnx-int8")
QUESTION = "How do I add my own documents?"


def load() -> str:
    """The load averages, for the report."""
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def environment(runtime: str, store: Path, cache: Path, host: str) -> dict:
    """The process environment for one runtime."""
    return {k: v for k, v in os.environ.items() if not k.startswith("RAG_")} | {
        "RAG_STORE_DIR": str(store), "RAG_EMBED_RUNTIME": runtime, "RAG_EMBED_CACHE": str(cache), "OLLAMA_HOST": host,
        "PYTHONPATH": str(ROOT)}


def ask_seconds(env: dict) -> float:
    """Wall time of `python -m rag.ask` from start to exit."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "rag.ask", QUESTION], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    seconds = time.perf_counter() - started
    assert done.returncode == 0 and "Sources:" in done.stdout, done.stderr
    return seconds


def page_seconds(env: dict, browser) -> dict:
    """From `streamlit run` starting: the chat box drawn, and the first words of the answer to a question typed then."""
    port = unused_port()
    url = f"http://localhost:{port}"
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.headless", "true",
         "--server.fileWatcherType", "none"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    events: dict[str, float] = {}
    try:
        while not healthy(url):
            if process.poll() is not None:
                raise RuntimeError("streamlit did not start")
            time.sleep(0.05)
        page.goto(url)
        box = page.get_by_test_id("stChatInputTextArea")
        box.wait_for(timeout=600_000)
        events["chat_box"] = time.perf_counter() - started
        box.fill(QUESTION)
        box.press("Enter")
        answer = page.get_by_test_id("stChatMessage").nth(1).locator(".rag-answer")
        deadline = started + 600
        while time.perf_counter() < deadline:
            if answer.count() and answer.first.inner_text().strip():
                events["first_answer"] = time.perf_counter() - started
                break
            time.sleep(0.02)
    finally:
        page.close()
        process.terminate()
        try:
            process.wait(60)  # a page still loading torch ends when its import does
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return events


def main() -> int:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="rounds, each timing every runtime once; the fastest is kept")
    options = parser.parse_args()
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    result: dict = {"load_start": load()}
    print(f"load {result['load_start']}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as folder:
        cache = Path(folder) / "onnx-cache"
        stores = {}
        for variant, runtime in (("float32", "torch"), ("int8", "onnx-int8")):
            stores[variant] = Path(folder) / f"store-{variant}"
            embedder = load_embedder("all-MiniLM-L6-v2", runtime=runtime, cache=cache)
            ingest([SAMPLE], Settings(store_dir=stores[variant], embed_runtime=runtime), embedder, IngestOptions())
        load_embedder("all-MiniLM-L6-v2", runtime="onnx", cache=cache)
        times: dict[str, dict[str, list[float]]] = {r: {"ask": [], "chat_box": [], "first_answer": []} for r in RUNTIMES}
        with OllamaStandin() as standin, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                for round_number in range(options.rounds):
                    for runtime in RUNTIMES:
                        env = environment(runtime, stores[variant_of(runtime)], cache, standin.host)
                        times[runtime]["ask"].append(ask_seconds(env))
                        for name, seconds in page_seconds(env, browser).items():
                            times[runtime][name].append(seconds)
                        print(f"round {round_number + 1}, {runtime}: rag.ask {times[runtime]['ask'][-1]:.2f} s; page: chat box "
                              f"{times[runtime]['chat_box'][-1]:.2f} s, first answer "
                              f"{(times[runtime]['first_answer'] or [float('nan')])[-1]:.2f} s (load {load()})", flush=True)
            finally:
                browser.close()
    result["fastest_s"] = {r: {name: round(min(values), 2) for name, values in figures.items() if values} for r, figures in times.items()}
    result["all_s"] = {r: {name: [round(v, 2) for v in values] for name, values in figures.items()} for r, figures in times.items()}
    result["load_end"] = load()
    for runtime, figures in result["fastest_s"].items():
        print(f"{runtime}: fastest rag.ask {figures['ask']} s, page chat box {figures.get('chat_box')} s, "
              f"first answer {figures.get('first_answer')} s (target <= 3 s on a quiet machine)")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
