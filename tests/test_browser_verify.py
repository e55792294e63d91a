"""Verified answers in a real browser: a cited [n] opens its passage with the matching sentence highlighted, a
sentence found in no passage is marked, and a reload shows the same marks."""
from __future__ import annotations

import pytest

from ingest.pipeline import IngestOptions, ingest
from rag.core.settings import Settings
from tests.conftest import SAMPLE_DIR
from tests.ollama_standin import OllamaStandin
from tests.test_browser import CHROMIUM_ARGS, ask, idle, messages, streamlit_app, wait_until
from tests.conftest import CHROMIUM, import_playwright
from tests.test_verify import COPIED, CRAFTED, INVENTED, NUMBER_CHANGED, OF_PASSAGE_2, QUESTION

playwright_api = import_playwright()
expect = playwright_api.expect

pytestmark = pytest.mark.browser


@pytest.fixture
def app_url(tmp_path, embedder):
    store = tmp_path / "store"
    ingest([SAMPLE_DIR], Settings(store_dir=store), embedder, IngestOptions())
    with OllamaStandin(reply=CRAFTED) as standin, \
            streamlit_app(tmp_path, {"RAG_STORE_DIR": str(store), "OLLAMA_HOST": standin.host}) as url:
        yield url


def test_a_citation_opens_its_passage_at_the_matching_sentence_and_an_invented_sentence_is_marked(app_url):
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(90_000)
        page.goto(app_url)
        expect(page.get_by_test_id("stSidebar")).to_contain_text(" chunks · ", timeout=300_000)
        ask(page, QUESTION)
        answer = messages(page).nth(1)
        expect(answer).to_contain_text("1 of 4 sentences found in their sources", timeout=90_000)
        wait_until(lambda: idle(page), 60, "the turn to finish")

        for _ in range(2):  # as answered, then as saved with the conversation after a reload
            answer = messages(page).nth(1).locator(".rag-answer")
            marks = answer.locator(".rag-unfound")
            expect(marks).to_have_count(2)
            expect(marks.first).to_have_text("not found in the sources")
            assert marks.first.get_attribute("title").startswith("Checked against every passage sent to the model")
            assert answer.inner_text().index(INVENTED[:-1]) < answer.inner_text().index("not found in the sources")
            assert answer.locator(".rag-wrong").inner_text() == "cites [1]; found in [2]"  # the passage stays closed

            first = answer.locator(".rag-cite").first
            highlight = first.locator("mark")
            expect(highlight).to_be_hidden()
            first.locator(".rag-cite-number").click()
            expect(highlight).to_be_visible()
            expect(highlight).to_have_text(COPIED)

            found_in = answer.locator(".rag-wrong .rag-cite")
            found_in.locator(".rag-cite-number").click()
            expect(found_in.locator("mark")).to_have_text(OF_PASSAGE_2)
            assert NUMBER_CHANGED[:-1] in answer.inner_text()
            page.reload()
            expect(messages(page).nth(1)).to_contain_text("1 of 4 sentences found in their sources", timeout=90_000)
        browser.close()
