"""The chat page's first paint: `python bench/bench_first_paint.py [--store DIR]`.

Starts `streamlit run app.py` over a store (the bundled guide, or --store, e.g. a 100,000-chunk one)
with the stand-in Ollama, opens it in headless Chromium once the server answers its health check, and
measures, in one run: the first paint (the sidebar drawn, target <= 1.5 s), when the loading notice
("Loading the embedder and the index (n of m chunks)") showed, and when the chat was ready (the notice
gone). The order of events is printed too: sidebar and notice before the index is ready.
Prints lines, then one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest.pipeline import ingest  # noqa: E402
from rag.core.settings import Settings  # noqa: E402
from tests.ollama_standin import OllamaStandin, unused_port  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SAMPLE = ROOT / "ingest" / "sample"


def healthy(url: str) -> bool:
    """True when Streamlit answers its health check."""
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as response:
            return response.read() == b"ok"
    except OSError:
        return False


def measure(store: Path) -> dict:
    """Start the app over the store and time what the browser sees."""
    from playwright.sync_api import sync_playwright

    port = unused_port()
    url = f"http://localhost:{port}"
    with OllamaStandin() as standin, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")} | {
            "RAG_STORE_DIR": str(store), "OLLAMA_HOST": standin.host}
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.headless", "true",
             "--server.fileWatcherType", "none"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            while not healthy(url):
                if process.poll() is not None:
                    raise RuntimeError("streamlit did not start")
                time.sleep(0.05)
            answered = time.perf_counter()
            page.goto(url)
            events: dict[str, float] = {}
            notice = page.get_by_text("Loading the", exact=False)
            sidebar = page.get_by_test_id("stSidebar").get_by_text("Model", exact=True)
            chat = page.get_by_test_id("stChatInputTextArea")
            deadline = answered + 600
            while "ready" not in events and time.perf_counter() < deadline:
                now = time.perf_counter() - answered
                if "sidebar" not in events and sidebar.count():
                    events["sidebar"] = now
                if "loading_notice" not in events and notice.count():
                    events["loading_notice"] = now
                if "sidebar" in events and chat.count() and not notice.count() and page.get_by_test_id("stSidebar").get_by_text(
                        "chunks ·", exact=False).count():
                    events["ready"] = now
                time.sleep(0.02)
        finally:
            process.terminate()
            process.wait(10)
            browser.close()
    return {name: round(seconds, 2) for name, seconds in events.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, help="an existing store folder (default: the bundled guide, ingested now)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-paint-") as folder:
        store = args.store
        if store is None:
            store = Path(folder) / "store"
            ingest([SAMPLE], Settings(store_dir=store))
        events = measure(store)
    order = sorted(events, key=events.get)
    print(f"store: {store}")
    print(f"first paint (sidebar drawn) {events.get('sidebar')} s after the server answered (target <= 1.5 s); "
          f"loading notice at {events.get('loading_notice', 'never seen')} s; chat ready at {events.get('ready')} s")
    print(f"order: {' < '.join(order)}")
    print(json.dumps({"first_paint": events, "order": order, "target_s": 1.5}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
