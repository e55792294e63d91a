"""The Models page in a real browser: reached from the chat page's sidebar, its table and chart drawn, and
every request the browser makes going to the local app only."""
from __future__ import annotations

import os
import subprocess
import sys
from urllib.parse import urlsplit

import pytest

from tests.conftest import CHROMIUM, SAMPLE_DIR, import_playwright

playwright_api = import_playwright()
expect = playwright_api.expect

from ingest.pipeline import IngestOptions, ingest
from rag.evaluation.cli import main as eval_main
from rag.core.settings import Settings
from tests.ollama_standin import UNRELATED_REPLY, OllamaStandin, grounded_reply, unused_port
from tests.test_answer_eval import ON_TOPIC, write_truth
from tests.test_browser import CHROMIUM_ARGS, ROOT, healthy, wait_until

pytestmark = pytest.mark.browser
LOOPBACK = {"localhost", "127.0.0.1", "::1", "data", "blob"}  # data: and blob: URLs never leave the browser


@pytest.fixture
def app_url(tmp_path, embedder, monkeypatch, capsys):
    """`streamlit run app.py` over the guide, with an evaluation of two stand-in models already in its store."""
    standin = OllamaStandin(models=("grounded:latest", "unrelated:latest"))
    standin.model_replies.update({"grounded:latest": grounded_reply, "unrelated:latest": UNRELATED_REPLY})
    with standin:
        store = tmp_path / "store"
        ingest([SAMPLE_DIR], Settings(store_dir=store), embedder, IngestOptions())
        monkeypatch.setenv("OLLAMA_HOST", standin.host)
        monkeypatch.setenv("RAG_STORE_DIR", str(store))
        truth = write_truth(tmp_path / "truth.csv", ON_TOPIC[:3])
        eval_main([str(truth), "--answers", "--models", "grounded,unrelated"])
        capsys.readouterr()
        port = unused_port()
        log = (tmp_path / "streamlit.log").open("w")
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.headless",
             "true", "--server.fileWatcherType", "none"],
            cwd=ROOT, env={**os.environ}, stdout=log, stderr=subprocess.STDOUT,
        )
        url = f"http://localhost:{port}"
        try:
            wait_until(lambda: healthy(url) or process.poll() is not None, 60, "streamlit to start")
            assert process.poll() is None, (tmp_path / "streamlit.log").read_text()
            yield url
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
            log.close()


def test_models_page_in_a_real_browser(app_url):
    hosts = []
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(90_000)
        page.on("request", lambda request: hosts.append(urlsplit(request.url).hostname or urlsplit(request.url).scheme))
        page.goto(app_url)
        page.get_by_test_id("stChatInputTextArea").wait_for(timeout=120_000)  # the first load opens the embedder

        page.get_by_role("link", name="Compare models").click()

        expect(page.get_by_role("heading", name="Models", exact=True)).to_be_visible()
        expect(page.get_by_text("Latest evaluation")).to_be_visible()
        frames = page.get_by_test_id("stDataFrame")
        expect(frames).to_have_count(2)
        chart = page.get_by_test_id("stVegaLiteChart")
        expect(chart).to_be_visible()
        expect(chart.locator("canvas, svg").first).to_be_visible()
        expect(page.get_by_role("button", name="Run the evaluation in the background")).to_be_visible()
        page.wait_for_timeout(1000)  # let the chart finish drawing and any late fetches happen
        browser.close()
    # a ":material/...:" page icon would make the browser fetch the favicon from fonts.gstatic.com
    assert hosts and set(hosts) <= LOOPBACK, sorted(set(hosts) - LOOPBACK)
