"""What a new user meets on the chat page (issue 33), in headless Chromium against `streamlit run app.py` and the
stand-in Ollama: the conversation list at sidebar and phone width, a slowly streaming answer, the filter, undo."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import SAMPLE_DIR, import_playwright

playwright_api = import_playwright()
expect = playwright_api.expect

from ingest.pipeline import IngestOptions, ingest
from rag.core.settings import Settings
from rag.ui.browser import COOKIE
from rag.ui.history import FILENAME, History
from tests.ollama_standin import OllamaStandin
from tests.test_answer_eval import ON_TOPIC
from tests.test_browser import (  # noqa: F401  (browser: the fixture, shared)
    ANSWER, answer_text, ask, browser, idle, messages, reply, streamlit_app, wait_for_messages, wait_until,
)

pytestmark = pytest.mark.browser

TOKEN = "p" * 40  # this test browser's secret id, set as its cookie so conversations made here are its own
LONG_TITLE = "How do I keep a very long conversation title from pushing its delete button out of the sidebar for good?"
VIEWPORTS = {
    "desktop": {"viewport": {"width": 1400, "height": 1000}},  # the sidebar is 300 px wide
    "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
}


@pytest.fixture
def standin():
    server = OllamaStandin(reply=reply)
    server.token_delay = 0.06
    with server:
        yield server


@pytest.fixture
def store(tmp_path, embedder) -> Path:
    store = tmp_path / "store"
    ingest([SAMPLE_DIR], Settings(store_dir=store), embedder, IngestOptions())
    return store


@pytest.fixture
def app_url(tmp_path, store, standin):
    with streamlit_app(tmp_path, {"RAG_STORE_DIR": str(store), "OLLAMA_HOST": standin.host}) as url:
        yield url


def open_page(browser, url: str, kind: str = "desktop", path: str = "", ready: str = "stChatInputTextArea"):
    """A page of a browser context whose cookie makes it the owner of TOKEN's conversations, once ready is shown."""
    context = browser.new_context(**VIEWPORTS[kind])
    context.add_cookies([{"name": COOKIE, "value": TOKEN, "url": url}])
    page = context.new_page()
    page.set_default_timeout(90_000)
    page.goto(url + path)
    page.get_by_test_id(ready).first.wait_for()
    return page


def history(store: Path) -> History:
    return History(store / FILENAME, TOKEN)


def make_conversations(store: Path, count: int) -> list[str]:
    """count conversations with long titles, each with a question and an answer; their ids, newest first."""
    ids = []
    for number in range(count):
        conversation = history(store).create(f"{number:02d} {LONG_TITLE}")
        history(store).add(conversation.id, "user", conversation.title)
        history(store).add(conversation.id, "assistant", "An answer [1].", {"kind": "answer", "state": "done"})
        ids.append(conversation.id)
    return ids[::-1]


def delete_button(page, conversation_id: str):
    return page.get_by_test_id("stSidebar").locator(f".st-key-delete_{conversation_id} button")


SCROLL_UP_OR_DOWN_TO = """b => {
  for (let box = b.parentElement; box; box = box.parentElement) {
    const outer = box.getBoundingClientRect(), inner = b.getBoundingClientRect();
    if (box.scrollHeight > box.clientHeight && (inner.top < outer.top || inner.bottom > outer.bottom)) {
      box.scrollTop += inner.top - outer.top - (outer.height - inner.height) / 2;
    }
  }
}"""  # what a wheel or a swipe can do: scroll each box up or down, never sideways


def centre(page, button) -> dict | None:
    """Where a pointer reaches the button once its list is scrolled (up or down only) to show it: its centre, if the
    button lies inside the sidebar, is at least 24 px square (a touch target) and is what a click there hits."""
    button.evaluate(SCROLL_UP_OR_DOWN_TO)
    box, sidebar = button.bounding_box(), page.get_by_test_id("stSidebar").bounding_box()
    if box is None or box["width"] < 24 or box["height"] < 24:
        return None
    inside = sidebar["x"] <= box["x"] and box["x"] + box["width"] <= sidebar["x"] + sidebar["width"]
    point = {"x": box["x"] + box["width"] / 2, "y": box["y"] + box["height"] / 2}
    hit = button.evaluate("(b, p) => b.contains(document.elementFromPoint(p.x, p.y))", point)
    return point if inside and hit else None


@pytest.mark.parametrize("kind", ["desktop", "phone"])
def test_every_conversation_can_be_deleted_by_mouse_touch_and_keyboard_whatever_its_title(app_url, store, browser, kind):
    ids = make_conversations(store, 12)
    current = ids[4]
    page = open_page(browser, app_url, kind, f"?c={current}")
    wait_for_messages(page, 2)
    if kind == "phone":
        page.get_by_test_id("stExpandSidebarButton").click()
    wait_until(lambda: idle(page), 60, "the page to finish its run")

    unreachable = [i for i in ids if centre(page, delete_button(page, i)) is None]
    assert unreachable == []  # the current conversation's row (ids[4]) included

    # the pointer at the button's place: a click on a desktop, a tap on a phone
    point = centre(page, delete_button(page, ids[0]))
    page.mouse.click(point["x"], point["y"]) if kind == "desktop" else page.touchscreen.tap(point["x"], point["y"])
    wait_until(lambda: ids[0] not in [c.id for c in history(store).list()], 30, "the first conversation deleted")

    # the keyboard: Tab from a conversation's title reaches its delete button, Enter deletes it
    wait_until(lambda: idle(page) and delete_button(page, ids[0]).count() == 0, 30, "the list redrawn")
    page.get_by_test_id("stSidebar").locator(f".st-key-open_{ids[7]} button").focus()
    page.keyboard.press("Tab")
    assert delete_button(page, ids[7]).evaluate("b => b === document.activeElement")
    page.keyboard.press("Enter")
    wait_until(lambda: ids[7] not in [c.id for c in history(store).list()], 30, "the keyboard's conversation deleted")
    assert [c.id for c in history(store).list()] == [i for i in ids if i not in (ids[0], ids[7])]


def test_an_answer_streaming_at_two_tokens_a_second_never_shows_a_loading_notice(app_url, browser, standin):
    standin.token_delay = 0.5
    page = open_page(browser, app_url)
    ask(page, "How do I start Ollama?")
    wait_for_messages(page, 2)
    seen, notices = [], []
    def finished() -> bool:
        seen.append(answer_text(page, 1))
        notices.append(messages(page).nth(1).inner_text())
        return seen[-1] == ANSWER.replace("`", "")
    wait_until(finished, 90, "the whole answer, at 0.5 s a token")
    assert len({text for text in seen if text}) >= 5  # it was watched while it streamed
    assert [n for n in notices if "Loading model" in n or "started answering" in n] == []


def test_a_finished_evaluation_shows_its_results_at_once_and_a_reload_keeps_the_form(app_url, browser, tmp_path):
    truth = tmp_path / "truth.csv"
    truth.write_text("question,document,doc_id\n" + "".join(f"{q},{d},{d}\n" for q, d in ON_TOPIC[:3]))
    page = open_page(browser, app_url, path="/Models", ready="stForm")
    expect(page.get_by_text("No evaluation yet", exact=False)).to_be_visible()
    page.get_by_label("Questions file (CSV)").fill(str(truth))
    page.get_by_label("Filter column (optional)").fill("doc_id")
    page.get_by_label("Questions (a fixed random sample)").fill("2")
    page.get_by_role("button", name="Run the evaluation in the background").click()

    progress = []
    def finished() -> bool:
        bars = page.get_by_test_id("stProgress")
        progress.append(bars.first.inner_text() if bars.count() else "")
        return "Evaluation finished" in progress[-1]
    wait_until(finished, 180, "the evaluation to finish")
    assert progress[-1].strip() == "Evaluation finished: 4 of 4 answers"  # 2 questions, 2 models
    assert [line for line in progress if "0 of 0" in line] == []
    expect(page.get_by_text("No evaluation yet", exact=False)).to_have_count(0, timeout=10_000)  # no reload needed
    expect(page.get_by_test_id("stDataFrame")).to_have_count(2)

    page.reload()
    expect(page.get_by_label("Questions file (CSV)")).to_have_value(str(truth))
    expect(page.get_by_label("Filter column (optional)")).to_have_value("doc_id")
    expect(page.get_by_label("Questions (a fixed random sample)")).to_have_value("2")


@pytest.fixture
def filtered_app_url(tmp_path, embedder, standin):
    """The page over the guide and a few cooking records whose `course` field the sidebar can filter by."""
    store, docs = tmp_path / "filtered-store", tmp_path / "records"
    docs.mkdir()
    records = [{"id": f"k{i}", "course": "baking" if i else "kitchen", "text": f"Simmer the {food} for {i + 5} minutes."}
               for i, food in enumerate(["lentils", "onions", "carrots"])]  # a field needs two values to be offered
    (docs / "kitchen.json").write_text(json.dumps(records))
    ingest([SAMPLE_DIR, docs], Settings(store_dir=store), embedder, IngestOptions())
    with streamlit_app(tmp_path, {"RAG_STORE_DIR": str(store), "OLLAMA_HOST": standin.host}) as url:
        yield url


def test_an_active_filter_is_shown_above_the_chat_box_and_in_the_refusal_and_clears_in_one_click(filtered_app_url, browser):
    page = open_page(browser, filtered_app_url)
    sidebar = page.get_by_test_id("stSidebar")
    indicator = page.locator(".st-key-active_filter")
    expect(indicator).to_have_count(0)
    sidebar.locator(".st-key-filter_field").click(timeout=180_000)  # drawn once the store is loaded
    page.get_by_role("option", name="course").click()
    expect(indicator.get_by_text("Searching only course = baking", exact=True)).to_be_visible(timeout=30_000)
    expect(indicator.get_by_role("button", name="Clear filter")).to_be_visible()

    ask(page, "stuff")  # names nothing to look for: refused whatever the filter
    wait_for_messages(page, 2)
    refusal = messages(page).nth(1)
    expect(refusal.get_by_text("Searched for: stuff (searched only course = baking)")).to_be_visible()
    refusal.get_by_role("button", name="Clear filter").click()
    expect(indicator).to_have_count(0, timeout=30_000)
    expect(sidebar.get_by_role("combobox", name="Filter by")).to_have_value("(no filter)")

    page.reload()  # the cleared filter is what the browser remembers
    page.get_by_test_id("stChatInputTextArea").wait_for()
    wait_until(lambda: idle(page), 60, "the page to finish its run")
    expect(indicator).to_have_count(0)
    ask(page, "How do I start Ollama?")  # the guide answers it, now that the filter is cleared
    wait_for_messages(page, 4)
    wait_until(lambda: answer_text(page, 3) == ANSWER.replace("`", ""), 90, "the answer from the guide")
    sources = messages(page).nth(3).get_by_test_id("stExpander")
    expect(sources.get_by_text("Searched for: How do I start Ollama?", exact=True)).to_be_visible()


def test_the_example_questions_leave_the_page_as_soon_as_one_is_asked(app_url, browser, standin):
    standin.token_delay = 0.3
    page = open_page(browser, app_url)
    welcome = page.locator(".st-key-welcome")
    expect(welcome.get_by_role("button")).to_have_count(3, timeout=180_000)  # drawn once the store is loaded
    welcome.get_by_role("button").first.click()
    wait_for_messages(page, 2)
    seen = []
    def finished() -> bool:
        seen.append((answer_text(page, 1), welcome.count()))
        return seen[-1][0] == ANSWER.replace("`", "")
    wait_until(finished, 90, "the answer to the example")
    assert [count for text, count in seen] == [0] * len(seen)  # not even faded under the streaming answer
    assert len({text for text, _ in seen if text}) >= 3  # it was watched while it streamed


def test_undoing_the_delete_of_another_conversation_stays_on_the_one_being_read(app_url, store, browser):
    reading, other = make_conversations(store, 2)[::-1]  # ids[0] is the newest
    page = open_page(browser, app_url, path=f"?c={reading}")
    wait_for_messages(page, 2)
    wait_until(lambda: idle(page), 60, "the page to finish its run")
    sidebar = page.get_by_test_id("stSidebar")
    delete_button(page, other).click()
    sidebar.get_by_role("button", name="Undo").click()
    sidebar.locator(f".st-key-delete_{other} button").wait_for()  # listed again once the undo's run is over
    wait_until(lambda: idle(page), 60, "the undo's run to finish")
    assert sorted(c.id for c in history(store).list()) == sorted([reading, other])
    assert page.url.endswith(f"?c={reading}")
    expect(sidebar.locator(f".st-key-open_current_{reading}")).to_have_count(1)
    expect(messages(page).first).to_contain_text("00 " + LONG_TITLE[:40])
