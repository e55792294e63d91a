"""The chat page in a real browser: headless Chromium (Debian's `chromium`) via Playwright, against
`streamlit run app.py` and the stand-in Ollama. Saves docs/screenshot.png."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

from ingest.pipeline import IngestOptions, ingest
from rag.condense import CONDENSE_RULES
from rag.settings import Settings
from tests.conftest import SAMPLE_DIR
from tests.ollama_standin import OllamaStandin, unused_port

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOT = ROOT / "docs" / "screenshot.png"
ANSWER = "Start Ollama with `ollama serve` [1], then pick a model in the sidebar and ask again [2]."
SCRIPT_ANSWER = "Markup inside documents is shown as plain text [1]."
STANDALONE = "How do I start Ollama on Windows?"
SCRIPT_DOC = """# Script tags in documents

A page may contain markup such as <script>window.injected = "script"</script> or
<img src="x" onerror="window.injected = 'img'"> and the chat page must show it as text.
"""


def reply(body: dict) -> str:
    """A standalone query for condense prompts; an answer about markup or about starting Ollama otherwise."""
    messages = body["messages"]
    if messages[0]["content"] == CONDENSE_RULES:
        return STANDALONE
    return SCRIPT_ANSWER if "markup" in messages[-1]["content"].split("Question:")[-1] else ANSWER


def wait_until(check, timeout: float, what: str):
    """Poll check() until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as response:
            return response.read() == b"ok"
    except OSError:
        return False


@pytest.fixture
def standin():
    server = OllamaStandin(reply=reply)
    server.token_delay = 0.06
    with server:
        yield server


@pytest.fixture
def app_url(tmp_path, standin, embedder):
    """`streamlit run app.py` on a free port, over a store with the user guide and a page full of markup."""
    markup = tmp_path / "markup"
    markup.mkdir()
    (markup / "script-tags.md").write_text(SCRIPT_DOC)
    store = tmp_path / "store"
    ingest([SAMPLE_DIR, markup], Settings(store_dir=store), embedder, IngestOptions())
    port = unused_port()
    env = {**os.environ, "RAG_STORE_DIR": str(store), "OLLAMA_HOST": standin.host}
    log = (tmp_path / "streamlit.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.headless", "true",
         "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
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


@pytest.fixture
def page():
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed: apt-get install -y chromium")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        yield page
        browser.close()


def ask(page, question: str) -> None:
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill(question)
    box.press("Enter")


def messages(page):
    return page.get_by_test_id("stChatMessage")


def wait_for_messages(page, count: int) -> None:
    wait_until(lambda: messages(page).count() == count, 60, f"{count} chat messages")


def answer_text(page, index: int) -> str:
    markdown = messages(page).nth(index).get_by_test_id("stMarkdownContainer")
    return markdown.first.inner_text() if markdown.count() else ""


def test_chat_in_a_real_browser(app_url, page, standin):
    page.goto(app_url)
    page.get_by_test_id("stChatInputTextArea").wait_for()
    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar.get_by_text("Loading the store at", exact=False).or_(sidebar.get_by_text(" chunks · ", exact=False))).to_be_visible()
    expect(sidebar).to_contain_text(" chunks · ", timeout=180_000)  # the page is drawn first; embedder and index load behind it
    model = page.get_by_role("combobox", name="Chat model")
    expect(model).to_have_value("qwen2.5:3b")

    # a question: the answer streams in, then its sources appear; markup in a document stays text
    ask(page, "How is markup in documents shown?")
    wait_for_messages(page, 2)
    seen = []
    full = SCRIPT_ANSWER.replace("`", "")
    wait_until(lambda: seen.append(answer_text(page, 1)) or seen[-1] == full, 30, "the whole answer")
    partial = [text for text in seen if text and text != full]
    assert partial and all(full.startswith(text.rstrip("…").strip()) for text in partial), seen
    sources = messages(page).nth(1).get_by_test_id("stExpander")
    sources.get_by_text("Cited in the answer").wait_for()
    expect(sources.get_by_text("Script tags in documents").first).to_be_visible()
    expect(sources.get_by_text('<script>window.injected = "script"</script>', exact=False)).to_be_visible()
    expect(sources.get_by_text("""<img src="x" onerror="window.injected = 'img'">""", exact=False)).to_be_visible()
    assert page.evaluate("window.injected") is None
    assert page.evaluate("[...document.scripts].some(s => s.textContent.includes('window.injected'))") is False
    assert page.locator('img[src="x"]').count() == 0

    # switch the model: the next question, and its rewrite into a standalone query, use it
    model.click()
    page.get_by_role("option", name="llama3.2:latest").click()
    expect(model).to_have_value("llama3.2:latest")
    page.wait_for_timeout(500)  # let the rerun that records the choice finish
    asked = len(standin.chat_requests())
    ask(page, "And how do I start Ollama?")
    wait_for_messages(page, 4)
    wait_until(lambda: answer_text(page, 3) == ANSWER.replace("`", ""), 30, "the second answer")
    messages(page).nth(3).get_by_text("Searched for: " + STANDALONE).wait_for()
    later = [r for r in standin.chat_requests()[asked:] if r["messages"]]  # warm-ups carry no messages
    assert [(r["messages"][0]["content"] == CONDENSE_RULES, r["model"]) for r in later] == [
        (True, "llama3.2:latest"),
        (False, "llama3.2:latest"),
    ]
    messages(page).nth(3).get_by_text(" · llama3.2:latest", exact=False).wait_for()
    page.set_viewport_size({"width": 1400, "height": 1900})  # tall enough for the whole second turn
    page.wait_for_timeout(500)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))
    page.set_viewport_size({"width": 1400, "height": 1000})

    # reload: the conversation comes back from SQLite
    page.reload()
    wait_for_messages(page, 4)
    assert messages(page).nth(0).inner_text().strip().endswith("How is markup in documents shown?")
    assert answer_text(page, 1) == full
    assert messages(page).nth(2).inner_text().strip().endswith("And how do I start Ollama?")
    assert answer_text(page, 3) == ANSWER.replace("`", "")

    # Ollama goes away: a readable message, the sources still shown, no traceback
    standin.stop()
    ask(page, "How do I add my own documents?")
    wait_for_messages(page, 6)
    failed = messages(page).nth(5)
    alert = failed.get_by_test_id("stAlert").first
    expect(alert).to_contain_text(f"Cannot reach Ollama at http://{standin.host}")
    expect(alert).to_contain_text("OLLAMA_HOST")
    expect(failed.get_by_test_id("stExpander").get_by_text("Adding your documents").first).to_be_visible()
    assert page.get_by_test_id("stException").count() == 0
    assert "Traceback" not in page.inner_text("body")
