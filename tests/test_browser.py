"""The chat page in a real browser: headless Chromium (Debian's `chromium`) via Playwright, against
`streamlit run app.py` (with the project's .streamlit/config.toml) and the stand-in Ollama. With RAG_SCREENSHOT=PATH
(e.g. docs/screenshot.png), saves a picture of a session on the bundled guide there."""
from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import CHROMIUM, SAMPLE_DIR, import_playwright

playwright_api = import_playwright()
expect = playwright_api.expect

from ingest.lock import LOCK_NAME, writer_lock
from ingest.pipeline import IngestOptions, ingest
from rag.chat.condense import CONDENSE_RULES
from rag.core.errors import StoreError
from rag.core.settings import Settings
from tests.ollama_standin import OllamaStandin, unused_port
from tests.openai_standin import OpenAIStandin

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# Where to save the screenshot, only when asked; read at import, before conftest's isolated_env clears RAG_ variables.
SCREENSHOT = Path(os.environ["RAG_SCREENSHOT"]).resolve() if os.environ.get("RAG_SCREENSHOT") else None
OUTSIDE = "http://198.51.100.7"
ANSWER = "Start Ollama with `ollama serve` [1], then pick a model in the sidebar and ask again [2]."
SCRIPT_ANSWER = "Markup inside documents is shown as plain text [1]."
OUTSIDE_ANSWER = (f"See ![logo]({OUTSIDE}/answer.png) and [the site]({OUTSIDE}/page) or <img src=\"{OUTSIDE}/raw.png\"> "
                  f"<{OUTSIDE}/auto> www.example.com [1].")
LONG_ANSWER = " ".join(f"word{i}" for i in range(60)) + " [1]."
STANDALONE = "How do I start Ollama on Windows?"
SCRIPT_DOC = """# Script tags in documents

A page may contain markup such as <script>window.injected = "script"</script> or
<img src="x" onerror="window.injected = 'img'"> and the chat page must show it as text.
"""
OUTSIDE_DOC = f"""# Outside pictures

This page shows a logo ![logo]({OUTSIDE}/doc.png) and links to [the vendor]({OUTSIDE}/vendor) and
<img src="{OUTSIDE}/doc-raw.png">, none of which may load.
"""


def reply(body: dict) -> str:
    """A standalone query for condense prompts; otherwise an answer picked by the question's words."""
    messages = body["messages"]
    if messages[0]["content"] == CONDENSE_RULES:
        return STANDALONE
    question = messages[-1]["content"].split("Question:")[-1]
    if "markup" in question:
        return SCRIPT_ANSWER
    if "picture" in question or "outside" in question:
        return OUTSIDE_ANSWER
    if "slowly" in question:
        return LONG_ANSWER
    return ANSWER


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


def stop_process(process: subprocess.Popen) -> None:
    """Terminate, then kill if it lingers; always reaped."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def streamlit_app(workdir: Path, env: dict):
    """`streamlit run app.py` on a free port from workdir (holding a copy of the project's .streamlit/ config)."""
    shutil.copytree(ROOT / ".streamlit", workdir / ".streamlit", dirs_exist_ok=True)
    port = unused_port()
    log_path = workdir / "streamlit.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port)],
            cwd=workdir, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
        )
        url = f"http://localhost:{port}"
        try:
            wait_until(lambda: healthy(url) or process.poll() is not None, 60, "streamlit to start")
            assert process.poll() is None, log_path.read_text()
            yield url
        finally:
            stop_process(process)


@pytest.fixture
def standin():
    server = OllamaStandin(reply=reply)
    server.token_delay = 0.06
    with server:
        yield server


@pytest.fixture
def app_url(tmp_path, standin, embedder):
    """The app over a store with the user guide, a page full of markup and a page with outside pictures."""
    docs = tmp_path / "markup"
    docs.mkdir()
    (docs / "script-tags.md").write_text(SCRIPT_DOC)
    (docs / "outside-pictures.md").write_text(OUTSIDE_DOC)
    store = tmp_path / "store"
    ingest([SAMPLE_DIR, docs], Settings(store_dir=store), embedder, IngestOptions())
    with streamlit_app(tmp_path, {"RAG_STORE_DIR": str(store), "OLLAMA_HOST": standin.host}) as url:
        yield url


@pytest.fixture
def browser():
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def requests_seen(browser):
    """Every URL any page of the test's browser context asks for (outside hosts are recorded, then refused)."""
    return []


@pytest.fixture
def context(browser, requests_seen):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.on("request", lambda request: requests_seen.append(request.url))
    context.route(lambda url: not on_loopback(url), lambda route: route.abort())
    yield context
    context.close()


@pytest.fixture
def page(context):
    page = context.new_page()
    page.set_default_timeout(90_000)
    return page


def on_loopback(url: str) -> bool:
    """True for URLs that stay on this machine (and for data:, blob:, about: URLs, which fetch nothing)."""
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def idle(page) -> bool:
    """True when no script run is in progress (Streamlit's 'Running…' status is gone)."""
    return page.get_by_test_id("stStatusWidget").count() == 0


def ask(page, question: str, wait: bool = True) -> None:
    """Type a question and send it; unless told not to wait, first let the current run finish."""
    if wait:
        wait_until(lambda: idle(page), 60, "the page to finish its run")
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill(question)
    box.press("Enter")


def messages(page):
    return page.get_by_test_id("stChatMessage")


def wait_for_messages(page, count: int) -> None:
    wait_until(lambda: messages(page).count() == count, 60, f"{count} chat messages")


def answer_text(page, index: int) -> str:
    """The answer's words as shown, without the sentence check's marks ("not found in the sources")."""
    answer = messages(page).nth(index).locator(".rag-answer")
    if not answer.count():
        return ""
    shown = answer.first.inner_text()
    for mark in answer.first.locator(".rag-unfound, .rag-wrong").all_inner_texts():
        shown = shown.replace(mark, "", 1)
    return shown


def outside_links_and_images(page) -> list[str]:
    """Every image source and link target on the page that leaves the machine."""
    urls = page.eval_on_selector_all("img, a[href], link[href]", "els => els.map(e => e.src || e.href)")
    return [url for url in urls if url and not on_loopback(url)]


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
    full = SCRIPT_ANSWER
    wait_until(lambda: seen.append(answer_text(page, 1)) or seen[-1] == full, 90, "the whole answer")
    partial = [text for text in seen if text and text != full]
    assert partial and all(full.startswith(text.strip()) for text in partial), seen
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
    wait_until(lambda: answer_text(page, 3) == ANSWER.replace("`", ""), 90, "the second answer")
    messages(page).nth(3).get_by_text("Searched for: " + STANDALONE).wait_for()
    later = [r for r in standin.chat_requests()[asked:] if r["messages"]]  # warm-ups carry no messages
    assert [(r["messages"][0]["content"] == CONDENSE_RULES, r["model"]) for r in later] == [
        (True, "llama3.2:latest"),
        (False, "llama3.2:latest"),
    ]
    messages(page).nth(3).get_by_text(" · llama3.2:latest", exact=False).wait_for()

    # reload: the conversation, the model and the settings come back
    page.reload()
    wait_for_messages(page, 4)
    wait_until(lambda: answer_text(page, 3) == ANSWER.replace("`", ""), 90, "the restored answers")
    assert messages(page).nth(0).inner_text().strip().endswith("How is markup in documents shown?")
    assert answer_text(page, 1) == full
    assert messages(page).nth(2).inner_text().strip().endswith("And how do I start Ollama?")
    assert answer_text(page, 3) == ANSWER.replace("`", "")
    expect(page.get_by_role("combobox", name="Chat model")).to_have_value("llama3.2:latest")

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


def test_a_whole_session_makes_no_request_outside_this_machine(app_url, page, standin, requests_seen, tmp_path):
    page.goto(app_url)
    page.get_by_test_id("stChatInputTextArea").wait_for()

    # an answer and a document that both carry outside images and links
    ask(page, "Which outside pictures does the page show?")
    wait_for_messages(page, 2)
    wait_until(lambda: "[image: logo]" in answer_text(page, 1) and answer_text(page, 1).endswith("[1]."), 90, "the answer")
    sources = messages(page).nth(1).get_by_test_id("stExpander")
    sources.get_by_text("Outside pictures").first.wait_for()
    expect(sources).to_contain_text("This page shows a logo logo and links to the vendor and <img src=")

    # models: refresh and pull; an upload holding an outside picture; history: new chat, open, delete, undo
    page.get_by_role("button", name="Refresh models").click()
    page.get_by_test_id("stSidebar").get_by_text("Pull a model", exact=True).click()
    page.get_by_label("Model name").fill("tinyllama")
    page.get_by_role("button", name="Pull", exact=True).click()
    page.get_by_text("Pulled tinyllama:latest").wait_for()
    upload = tmp_path / "upload-outside.md"
    upload.write_text(f"# Uploaded picture\n\n![up]({OUTSIDE}/upload.png) [go]({OUTSIDE}/go)\n")
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(upload))
    page.get_by_role("button", name="Ingest uploaded files").click()
    page.get_by_text("1 added, 0 updated, 0 unchanged, 0 skipped").wait_for()
    page.get_by_role("button", name="New chat").click()
    wait_for_messages(page, 0)
    ask(page, f"![q]({OUTSIDE}/question.png) what does the uploaded picture page say?")
    wait_for_messages(page, 2)
    wait_until(lambda: answer_text(page, 1).endswith("[1]."), 90, "the answer")
    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar).to_contain_text(f"![q](http\u2060://{OUTSIDE[7:]}/question.png)")  # a word joiner: no link
    first = sidebar.get_by_role("button", name="Which outside pictures does the page show?", exact=True)
    first.click()
    wait_for_messages(page, 2)
    sidebar.get_by_role("button", name="Delete conversation Which outside pictures does the page show?").click()
    sidebar.get_by_role("button", name="Undo").click()
    # the undo's own run is over once the conversation is listed again
    sidebar.get_by_role("button", name="Delete conversation Which outside pictures does the page show?").wait_for()
    wait_for_messages(page, 2)

    # an error: Ollama down
    standin.stop()
    ask(page, "And the outside pictures once more?")
    wait_for_messages(page, 4)
    expect(messages(page).nth(3).get_by_test_id("stAlert").first).to_contain_text("Cannot reach Ollama")
    page.reload()
    wait_for_messages(page, 4)
    page.wait_for_timeout(1000)

    outside = [url for url in requests_seen if not on_loopback(url)]
    assert outside == []
    assert len(requests_seen) > 20 and any("/_stcore/" in url or "/static/" in url for url in requests_seen)
    assert outside_links_and_images(page) == []
    favicon = page.eval_on_selector("link[rel~='icon']", "e => e.href")
    assert on_loopback(favicon)


def test_stop_a_second_question_and_a_reload_never_lose_an_answer(app_url, page, standin):
    standin.token_delay = 0.15  # about 9 s per answer
    page.goto(app_url)
    page.get_by_test_id("stChatInputTextArea").wait_for()
    words = LONG_ANSWER.split()

    # Stop: what was written stays, marked as stopped
    ask(page, "How do I start Ollama? Answer slowly, first")
    wait_for_messages(page, 2)
    wait_until(lambda: len(answer_text(page, 1).split()) >= 5, 90, "a few words")
    messages(page).nth(1).get_by_role("button", name="Stop").click()
    messages(page).nth(1).get_by_text("Stopped: you pressed Stop.").wait_for()
    stopped = answer_text(page, 1).split()
    assert 5 <= len(stopped) < len(words) and words[: len(stopped)] == stopped

    # a second question while one streams: the first stops, is kept and says why; the second is answered
    ask(page, "How do I start Ollama? Answer slowly, second")
    wait_for_messages(page, 4)
    wait_until(lambda: len(answer_text(page, 3).split()) >= 5, 90, "a few words of the second answer")
    ask(page, "How do I start Ollama? Answer slowly, third", wait=False)
    wait_for_messages(page, 6)
    messages(page).nth(3).get_by_text("Stopped when you asked the next question.").wait_for()
    wait_until(lambda: answer_text(page, 5) == LONG_ANSWER, 60, "the third answer")
    second = answer_text(page, 3).split()
    assert 5 <= len(second) < len(words) and words[: len(second)] == second

    # a reload mid-answer: the reloaded page shows the turn with what was written so far, never a bare question
    ask(page, "How do I start Ollama? Answer slowly, fourth")
    wait_for_messages(page, 8)
    wait_until(lambda: len(answer_text(page, 7).split()) >= 5, 90, "a few words of the fourth answer")
    page.reload()
    wait_for_messages(page, 8)
    shown = wait_until(lambda: answer_text(page, 7).split(), 90, "the fourth answer after the reload")
    assert words[: len(shown)] == shown
    roles = page.eval_on_selector_all("[data-testid=stChatMessage]", "els => els.map(e => e.querySelector('.rag-answer') ? 'a' : 'q')")
    assert roles == ["q", "a"] * 4
    page.wait_for_timeout(12_000)  # the run the reload left finishes (or is cut off) and saves
    page.reload()
    wait_for_messages(page, 8)
    final = answer_text(page, 7)
    marks = messages(page).nth(7).inner_text()
    assert final == LONG_ANSWER or ("Interrupted" in marks and LONG_ANSWER.startswith(final)), marks


def test_phone_width_keyboard_focus_and_the_conversation_list(app_url, browser, standin):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        page.set_default_timeout(90_000)
        page.goto(app_url)
        box = page.get_by_test_id("stChatInputTextArea")
        box.wait_for()
        wait_until(lambda: page.evaluate("document.activeElement.dataset.testid") == "stChatInputTextArea", 10,
                   "the chat box to have the focus")
        page.keyboard.type("How do I start Ollama?")
        page.keyboard.press("Enter")
        wait_for_messages(page, 2)
        wait_until(lambda: answer_text(page, 1) == ANSWER.replace("`", ""), 90, "the answer")

        page.get_by_test_id("stExpandSidebarButton").click()
        sidebar = page.get_by_test_id("stSidebar")
        title = sidebar.get_by_role("button", name="How do I start Ollama?", exact=True)
        delete = sidebar.get_by_role("button", name="Delete conversation How do I start Ollama?")
        expect(delete).to_be_visible()

        def one_row() -> bool:
            if title.count() != 1 or delete.count() != 1:  # a rerun may still be replacing the list
                return False
            a, b = title.bounding_box(), delete.bounding_box()
            return abs((a["y"] + a["height"] / 2) - (b["y"] + b["height"] / 2)) < 4 and a["x"] + a["width"] <= b["x"] + 1

        wait_until(one_row, 15, "the title and its delete button on one row")

        sidebar.get_by_role("button", name="New chat").click()
        wait_for_messages(page, 0)
        wait_until(lambda: (sidebar.bounding_box() or {"x": -1, "width": 0})["x"] + sidebar.bounding_box()["width"] <= 0,
                   10, "the sidebar to close")
        page.reload()
        page.get_by_test_id("stChatInputTextArea").wait_for()
        page.wait_for_timeout(1000)
        assert messages(page).count() == 0  # after New chat, a reload does not reopen the previous conversation
    finally:
        context.close()


def test_cancel_stops_an_upload_and_frees_the_ingest_lock(app_url, page, tmp_path):
    big = tmp_path / "big-upload.md"
    big.write_text("\n\n".join(f"## Part {i}\n\n" + f"Paragraph {i} talks about topic {i}. " * 40 for i in range(400)))
    page.goto(app_url)
    page.get_by_test_id("stSidebar").get_by_text("chunks · last ingest", exact=False).wait_for(timeout=180_000)  # loaded (a hang guard)
    expect(page.get_by_test_id("stFileUploaderDropzone")).to_contain_text("50MB per file")  # .streamlit/config.toml
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(big))
    page.get_by_role("button", name="Ingest uploaded files").click()
    page.get_by_text("chunks written", exact=False).first.wait_for()
    store = tmp_path / "store"
    with pytest.raises(StoreError):  # the upload holds the writer lock
        with writer_lock(Settings(store_dir=store), active=True):
            pass
    page.get_by_role("button", name="Cancel").click()
    page.get_by_text("Cancelled after", exact=False).wait_for()
    with writer_lock(Settings(store_dir=store), active=True):  # freed: another ingest can start
        assert (store / LOCK_NAME).exists()
    expect(page.get_by_test_id("stSidebar")).to_contain_text("ingest the same files again to finish")


@pytest.fixture
def guide_app(tmp_path, embedder):
    """The app as a new user runs it: the bundled guide in ./store, a stand-in Ollama answering from it."""
    answer = ("Run `python -m ingest docs/` to add a folder of your own files [1]; a re-run only embeds what "
              "changed [2]. Then ask about them here.")
    server = OllamaStandin(reply=lambda body: STANDALONE if body["messages"][0]["content"] == CONDENSE_RULES else answer)
    with server:
        ingest([SAMPLE_DIR], Settings(store_dir=tmp_path / "store"), embedder, IngestOptions())
        with streamlit_app(tmp_path, {"RAG_STORE_DIR": "store", "OLLAMA_HOST": server.host}) as url:
            yield url, answer


def test_a_real_session_on_the_bundled_guide_answers_with_its_sources_and_a_screenshot_when_asked(guide_app, page):
    url, answer = guide_app
    page.goto(url)
    page.get_by_test_id("stChatInputTextArea").wait_for()
    page.get_by_text("For example:").wait_for(timeout=180_000)
    ask(page, "How do I add my own documents?")
    wait_for_messages(page, 2)
    wait_until(lambda: answer_text(page, 1) == answer.replace("`", ""), 90, "the answer")
    messages(page).nth(1).get_by_text("Cited in the answer").wait_for()
    expect(page.get_by_test_id("stSidebar")).to_contain_text("5 documents (5 md)")
    if SCREENSHOT is None:
        return
    page.set_viewport_size({"width": 1400, "height": 2000})  # the question, the answer and its sources
    page.wait_for_timeout(800)
    page.evaluate("document.querySelectorAll('[data-testid=stAppScrollToBottomContainer], section').forEach(e => e.scrollTop = 0)")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))


def test_the_dropdown_lists_both_boxes_and_an_openai_server_answers_with_its_reasoning_apart(tmp_path, embedder, page):
    store = tmp_path / "store"
    ingest([SAMPLE_DIR], Settings(store_dir=store), embedder, IngestOptions())
    with OllamaStandin() as ollama_box, OpenAIStandin(reply="Use python -m ingest [1].") as openai_box:
        openai_box.reasoning = "The guide's section on adding documents answers this."
        env = {"RAG_STORE_DIR": str(store), "OLLAMA_HOST": ollama_box.host, "RAG_OPENAI_URL": openai_box.url}
        with streamlit_app(tmp_path, env) as url:
            page.goto(url)
            page.get_by_test_id("stChatInputTextArea").wait_for()
            model = page.get_by_role("combobox", name="Chat model")
            expect(model).to_have_value("ollama:qwen2.5:3b", timeout=60_000)
            model.click()
            options = [text.strip() for text in page.get_by_role("option").all_inner_texts()]
            assert options == ["ollama:llama3.2:latest", "ollama:qwen2.5:3b", "openai:Qwen/Qwen2.5-3B-Instruct",
                               "openai:llama-3.2-3b"]
            page.get_by_role("option", name="openai:Qwen/Qwen2.5-3B-Instruct").click()
            expect(model).to_have_value("openai:Qwen/Qwen2.5-3B-Instruct")
            page.wait_for_timeout(500)  # let the rerun that records the choice finish
            ask(page, "How do I add my own documents?")
            wait_for_messages(page, 2)
            wait_until(lambda: answer_text(page, 1) == "Use python -m ingest [1].", 90, "the answer from the OpenAI box")
            reasoning = messages(page).nth(1).get_by_text("The model's reasoning", exact=False)
            expect(reasoning).to_be_visible()
            assert [body["model"] for body in openai_box.chat_requests()] == ["Qwen/Qwen2.5-3B-Instruct"]
