"""Two browser sessions ask at once while `python -m ingest NEWFOLDER` writes to the same store.

The running app (test_browser's `app_url`: `streamlit run app.py` over the user guide and a markup page) is
shared by two Playwright browser contexts. The stand-in Ollama streams slowly, so both answers are on screen
half-written while the ingest subprocess holds the store's writer lock. Afterwards the store must hold
exactly what one clean ingest of the same inputs gives, and a question only the new folder can answer must
find it in the same, never restarted, app.
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ingest.lock import LOCK_NAME
from ingest.pipeline import IngestOptions, ingest
from rag.chat.condense import CONDENSE_RULES
from rag.core.settings import Settings
from tests.conftest import CHROMIUM, SAMPLE_DIR
from tests.ollama_standin import OllamaStandin
from tests.test_browser import (CHROMIUM_ARGS, ROOT, answer_text, ask, expect, messages, playwright_api,
                                wait_for_messages, wait_until)
from tests.test_browser import app_url  # noqa: F401  (the fixture: `streamlit run app.py` on a free port)

pytestmark = pytest.mark.browser

TOKEN_DELAY = 0.15  # ~55 streamed pieces per answer: each answer is on screen for about 8 s
QUESTION_A = "How do I start Ollama?"
QUESTION_B = "How do I pick another model?"
ANSWER_A = (
    "Start the Ollama server on this machine first, then open the chat page again and pick a model in the "
    "sidebar [1]. When the page still says it cannot reach Ollama, check the address it names and set the "
    "host variable to the machine where the server listens, then ask the same question once more and wait "
    "for the first words of the answer to appear on the page [1]."
)
ANSWER_B = (
    "Open the sidebar and choose another entry in the chat model dropdown, which lists every model installed "
    "in Ollama; the next question you ask uses it [1]. When the model you want is not in the list, pull it "
    "by name with the pull box under the dropdown, wait for the download to finish, and it is selected for "
    "your next question straight away, with no restart of the page [1]."
)
ANSWERS = {QUESTION_A: ANSWER_A, QUESTION_B: ANSWER_B}
CITED = {QUESTION_A: "Getting started", QUESTION_B: "Asking questions"}

NEW_WORD = "zorbleflux"  # made up: no document but the new one contains it
NEW_CODE = "QX-4471"
NEW_TITLE = "Zorbleflux calibration"
NEW_DOC_ID = "zorbleflux-calibration.md"
NEW_DOC = f"""# {NEW_TITLE}

The {NEW_WORD} calibration code is {NEW_CODE}. Type it into the {NEW_WORD} panel after every firmware update,
before the first measurement of the day.
"""
NEW_QUESTION = f"What is the {NEW_WORD} calibration code?"
NEW_ANSWER = f"The {NEW_WORD} calibration code is {NEW_CODE} [1]."
NOT_GIVEN = "The documents do not say."
NOTHING_RELEVANT = "Nothing in your documents looks relevant to this question"
FILLER_DOCS = 20
RECHECK_SECONDS = 2.0  # the app re-reads the store's chunk count and ingest stamp at most this often
FILLER_WORDS = (
    "river lantern copper meadow signal harbor quartz velvet orbit timber glacier falcon ember prism canyon "
    "willow basalt comet pebble thistle saffron marble beacon cedar drizzle tundra lagoon harvest compass"
).split()

def reply(body: dict) -> str:
    """Each question's own answer; the follow-up is rewritten to the new-document question; the code only
    when the new document reached the prompt's fenced documents."""
    messages_ = body["messages"]
    if messages_[0]["content"] == CONDENSE_RULES:
        return NEW_QUESTION if NEW_WORD in messages_[-1]["content"] else "unexpected follow-up"
    documents, _, question = messages_[-1]["content"].rpartition("Question: ")
    if NEW_WORD in question:  # the follow-up as asked; retrieval searched its standalone rewrite
        return NEW_ANSWER if NEW_CODE in documents.split("</documents>")[0] else NOT_GIVEN
    return ANSWERS.get(question, f"unexpected question {question!r}")


@pytest.fixture
def standin():
    """The stand-in Ollama that app_url's `streamlit run` talks to (overrides conftest's)."""
    server = OllamaStandin(reply=reply)
    server.token_delay = TOKEN_DELAY
    with server:
        yield server


@pytest.fixture
def browser():
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def write_new_docs(folder: Path) -> None:
    """The new folder: the document with the made-up word, and filler pages of two or three chunks each."""
    folder.mkdir()
    (folder / NEW_DOC_ID).write_text(NEW_DOC)
    rng = random.Random(7)
    for i in range(FILLER_DOCS):
        paragraphs = [" ".join(rng.choice(FILLER_WORDS) for _ in range(110)) + "." for _ in range(3)]
        (folder / f"field-note-{i:02d}.md").write_text(f"# Field note {i}\n\n" + "\n\n".join(paragraphs) + "\n")


def lock_holders(lock: Path) -> set[int]:
    """Pids holding an flock on the file, from /proc/locks (read-only: never touches the lock itself)."""
    st = os.stat(lock)
    device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    holders = set()
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[1] == "FLOCK" and fields[2] != "->" and fields[5] == device:
            holders.add(int(fields[4]))
    return holders


def read_store(store: Path):
    """The collection as a fresh Chroma client sees it, and chunk id -> metadata of every chunk in it."""
    import chromadb
    from chromadb.api.shared_system_client import SharedSystemClient
    from chromadb.config import Settings as ChromaSettings

    SharedSystemClient.clear_system_cache()  # this process opened the store before: read it afresh
    client = chromadb.PersistentClient(str(store), settings=ChromaSettings(anonymized_telemetry=False))
    collection = client.get_collection(Settings().collection)
    got = collection.get(include=["metadatas"])
    assert len(got["ids"]) == collection.count() == len(set(got["ids"]))
    return collection, dict(zip(got["ids"], got["metadatas"]))


def cited_sources(page, index: int):
    return messages(page).nth(index).get_by_test_id("stExpander")


def test_two_sessions_ask_while_an_ingest_adds_a_folder(app_url, browser, standin, tmp_path, embedder):  # noqa: F811
    store = tmp_path / "store"  # where app_url builds the store (the sidebar caption below confirms it)
    inputs = [SAMPLE_DIR, tmp_path / "markup"]  # what app_url ingested
    new = tmp_path / "new-docs"
    write_new_docs(new)
    reference = Settings(store_dir=tmp_path / "reference")
    ingest([*inputs, new], reference, embedder, IngestOptions())
    _, expected = read_store(reference.store_dir)

    contexts = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(2)]
    pages = [context.new_page() for context in contexts]
    for page in pages:
        page.set_default_timeout(90_000)
        page.goto(app_url)
        page.get_by_test_id("stChatInputTextArea").wait_for()
        expect(page.get_by_test_id("stSidebar")).to_contain_text(str(store))
        expect(page.get_by_test_id("stSidebar")).to_contain_text(" chunks · ", timeout=180_000)  # embedder and index loaded

    # the ingest starts; once it holds the writer lock (embedder loaded, writing), both sessions ask
    log = tmp_path / "ingest.log"
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "ingest", str(new)], cwd=ROOT, stdout=out,
                                   stderr=subprocess.STDOUT, env={**os.environ, "RAG_STORE_DIR": str(store)})
    try:
        lock = store / LOCK_NAME
        wait_until(lambda: process.pid in lock_holders(lock) or process.poll() is not None, 60, "the ingest to lock the store")
        assert process.poll() is None, log.read_text()
        for page, question in zip(pages, (QUESTION_A, QUESTION_B)):
            ask(page, question)

        fulls = [ANSWER_A, ANSWER_B]
        seen: list[list[str]] = [[], []]
        overlapped = False  # both answers half-written on screen while the ingest holds the lock

        def both_done() -> bool:
            nonlocal overlapped
            texts = [answer_text(page, 1) if messages(page).count() >= 2 else "" for page in pages]
            writing = process.pid in lock_holders(lock)
            for texts_seen, text in zip(seen, texts):
                if text and (not texts_seen or texts_seen[-1] != text):
                    texts_seen.append(text)
            if writing and all(text and text != full for text, full in zip(texts, fulls)):
                overlapped = True
            return texts == fulls

        try:
            wait_until(both_done, 60, "both whole answers")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last seen: {[texts_seen[-1:] for texts_seen in seen]}") from None
        for texts_seen, full in zip(seen, fulls):
            partial = texts_seen[:-1]
            assert partial and all(full.startswith(text.rstrip("…").strip()) for text in partial), texts_seen
        assert overlapped, "the two answers did not stream at the same time while the ingest was writing"
        assert process.poll() is None or process.returncode == 0, log.read_text()

        for page, question in zip(pages, (QUESTION_A, QUESTION_B)):
            sources = cited_sources(page, 1)
            sources.get_by_text("Cited in the answer").wait_for()
            expect(sources).to_contain_text(f"[1] {CITED[question]}")
            assert NEW_WORD not in sources.inner_text()
            assert messages(page).count() == 2
            assert page.get_by_test_id("stException").count() == 0
            assert page.get_by_test_id("stAlert").count() == 0

        assert process.wait(90) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    ingest_done = time.monotonic()
    assert f"added {FILLER_DOCS + 1}, updated 0, unchanged 0, removed 0, skipped 0" in log.read_text()

    # the store: one complete version per document, exactly the chunks of a clean single ingest
    collection, stored = read_store(store)
    versions: dict[str, set[str]] = {}
    for meta in stored.values():
        versions.setdefault(meta["doc_id"], set()).add(meta["doc_hash"])
    for doc_id, hashes in versions.items():
        assert len(hashes) == 1, (doc_id, hashes)
        chunks = [meta for meta in stored.values() if meta["doc_id"] == doc_id]
        assert {meta["n_chunks"] for meta in chunks} == {len(chunks)}, doc_id
    assert len(stored) == len(expected)
    assert sorted(stored) == sorted(expected)
    assert {meta["root"] for meta in stored.values()} == {str(path.resolve()) for path in [*inputs, new]}
    assert NEW_DOC_ID in versions
    nearest = collection.query(query_embeddings=embedder.embed([NEW_QUESTION]), n_results=1)["ids"][0]
    assert nearest[0].startswith(NEW_DOC_ID + ":")  # its vector is on disk, searchable by a fresh reader

    # the same app, never restarted, finds the new document once its chunk index rechecks the store
    time.sleep(max(0.0, ingest_done + RECHECK_SECONDS + 0.5 - time.monotonic()))
    page = pages[0]
    ask(page, f"And the {NEW_WORD} calibration code?")
    wait_for_messages(page, 4)
    shown = messages(page).nth(3)
    try:
        wait_until(lambda: answer_text(page, 3) in (NEW_ANSWER, NOT_GIVEN) or NOTHING_RELEVANT in answer_text(page, 3),
                   30, "the answer from the new document")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the page shows: {shown.inner_text()!r}") from None
    assert answer_text(page, 3) == NEW_ANSWER, shown.inner_text()
    shown.get_by_text("Searched for: " + NEW_QUESTION).wait_for()
    sources = cited_sources(page, 3)
    sources.get_by_text("Cited in the answer").wait_for()
    expect(sources).to_contain_text(f"[1] {NEW_TITLE}")
    expect(sources).to_contain_text(NEW_DOC_ID)
    assert page.get_by_test_id("stException").count() == 0
