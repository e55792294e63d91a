"""The Documents picker in headless Chromium against `streamlit run app.py` and the stand-in Ollama: pick a document by
typing part of its title, see the scope above the chat box, ask for a summary (read whole, one request), clear it with
one click, and find the scope again when the conversation is reopened."""
from __future__ import annotations

import re

import pytest

from tests.conftest import CHROMIUM, SAMPLE_DIR, import_playwright

playwright_api = import_playwright()
expect = playwright_api.expect

from ingest.pipeline import IngestOptions, ingest
from rag.chat.whole_prompts import WHOLE_RULES
from rag.core.settings import Settings
from tests.ollama_standin import OllamaStandin
from tests.test_whole_document import long_markdown, notes_reply
from tests.test_browser import CHROMIUM_ARGS, answer_text, ask, idle, messages, streamlit_app, wait_for_messages, wait_until

pytestmark = pytest.mark.browser
SUMMARY = "The page lists the settings and their defaults [1]."


@pytest.fixture
def standin():
    with OllamaStandin(reply=lambda body: SUMMARY if body["messages"][0]["content"] == WHOLE_RULES else "Elsewhere [1].") as server:
        yield server


@pytest.fixture
def app_url(tmp_path, standin, embedder):
    store = tmp_path / "store"
    ingest([SAMPLE_DIR], Settings(store_dir=store), embedder, IngestOptions())
    with streamlit_app(tmp_path, {"RAG_STORE_DIR": str(store), "OLLAMA_HOST": standin.host}) as url:
        yield url


def test_a_summary_of_a_picked_document_reads_it_whole_and_the_scope_stays_with_the_conversation(app_url, standin):
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        page.set_default_timeout(90_000)
        page.goto(app_url)
        sidebar = page.get_by_test_id("stSidebar")
        picker = sidebar.get_by_test_id("stMultiSelect")
        expect(picker).to_be_visible(timeout=180_000)  # drawn once the store has loaded
        picker.click()
        page.keyboard.type("configur")
        page.keyboard.press("Enter")
        page.keyboard.press("Escape")
        expect(picker).to_contain_text("Configuration · configuration.md")
        expect(page.get_by_role("main")).to_contain_text("Asking about: configuration.md")

        ask(page, "Summarise it")
        wait_for_messages(page, 2)
        wait_until(lambda: answer_text(page, 1).strip() == SUMMARY, 90, "the summary")
        expect(messages(page).nth(1)).to_contain_text("read whole: ")
        asked = [body for body in standin.chat_requests() if body.get("messages")]
        assert len(asked) == 1 and asked[0]["messages"][0]["content"] == WHOLE_RULES
        sent = asked[0]["messages"][-1]["content"]
        assert "RAG_TOP_K" in sent and "Getting started" not in sent  # the picked document, and only it
        conversation = page.url.split("c=")[1]

        wait_until(lambda: idle(page), 60, "the page to finish its run")
        sidebar.get_by_role("button", name="Clear documents").click()
        expect(picker).not_to_contain_text("Configuration")
        expect(page.get_by_role("main")).not_to_contain_text("Asking about:")

        other = browser.new_context(viewport={"width": 1400, "height": 1000}, storage_state=page.context.storage_state()).new_page()
        other.set_default_timeout(90_000)
        other.goto(f"{app_url}/?c={conversation}")
        expect(other.get_by_test_id("stSidebar").get_by_test_id("stMultiSelect")).to_contain_text(
            "Configuration · configuration.md", timeout=180_000)
        expect(other.get_by_role("main")).to_contain_text("Asking about: configuration.md")
        browser.close()


def test_stop_while_a_long_document_is_read_in_parts_keeps_the_notes_so_far(tmp_path, embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "handbook.md").write_text(long_markdown("alpha"))
    store = tmp_path / "store"
    ingest([docs], Settings(store_dir=store), embedder, IngestOptions())
    server = OllamaStandin(reply=notes_reply)
    server.token_delay = 0.3  # a part's notes take several seconds
    env = {"RAG_STORE_DIR": str(store), "OLLAMA_HOST": server.host, "RAG_NUM_CTX": "1024"}
    with server, streamlit_app(tmp_path, {**env, "OLLAMA_HOST": server.host}) as url, playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        page.set_default_timeout(90_000)
        page.goto(url)
        expect(page.get_by_test_id("stSidebar").get_by_test_id("stMultiSelect")).to_be_visible(timeout=180_000)
        ask(page, "summarise handbook.md")
        expect(page.get_by_text("Reading part 3 of", exact=False)).to_be_visible(timeout=120_000)
        page.locator(".st-key-stop_reading button").click()
        answer = messages(page).nth(1)
        expect(answer).to_contain_text("Stopped", timeout=60_000)
        expect(answer).to_contain_text("Notes on 'Alpha handbook', part 1 of", timeout=60_000)
        shown = answer.inner_text()
        covered = int(re.search(r"Notes on parts 1-(\d+) of", shown).group(1))
        assert covered >= 2 and f"part {covered + 1} of" not in shown.replace(f"parts 1-{covered} of", "")
        notes = [b for b in server.chat_requests() if b.get("messages") and b["messages"][0]["content"].startswith("You take notes")]
        assert covered <= len(notes) <= covered + 1  # the part being read when Stop came may have finished, unshown
        browser.close()
