"""Verified answers: every sentence checked against the passage it cites (rag/chat/verify.py), in `rag.ask` with the
stand-in Ollama replying with a crafted answer over the bundled guide, and drawn into the answer on the page."""
from __future__ import annotations

import json

import pytest

from rag.chat.ask import main
from rag.chat.prompt import Citation
from rag.chat.verify import check_turn, summary_line
from rag.ui.verified import checked_answer_html

QUESTION = "What do I need to install before I start?"
COPIED = "You need Python 3.11 or newer."  # passage [1], the guide's "Install" section
OF_PASSAGE_2 = ("Run `python -m ingest` with no arguments to load this user guide into the store, then start the chat "
                "page with `streamlit run app.py` and ask \"How do I add my own documents?\".")  # passage [2], "First run"
INVENTED = "Penguins migrate across the Sahara desert every winter."
NUMBER_CHANGED = "You need Python 3.9 or newer."
CRAFTED = f"{COPIED[:-1]} [1]. {OF_PASSAGE_2[:-1]} [1]. {INVENTED[:-1]} [2]. {NUMBER_CHANGED[:-1]} [1]."
GUIDE_PASSAGE = ("Run `python -m ingest docs/` to add a folder of documents. Hidden files are ignored. "
                 "A re-run only touches files that changed, and the store keeps 30 days of history.")
OTHER_PASSAGE = "Set RAG_NUM_CTX to change the context window sent to Ollama with every request."


@pytest.fixture
def guide(settings, guide_store, monkeypatch):
    """rag.ask over the guide store read by the whole run, talking to the stand-in."""
    monkeypatch.setenv("RAG_STORE_DIR", str(guide_store))


def ask_json(capsys) -> dict:
    code = main([QUESTION, "--json"])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    return json.loads(out)


def test_each_sentence_of_a_crafted_answer_is_checked_against_the_passage_it_cites(guide, standin, capsys):
    standin.reply = CRAFTED

    result = ask_json(capsys)

    first, second = result["sources"][:2]
    assert (first["doc_id"], first["metadata"]["headings"].split(" > ")[-1]) == ("getting-started.md", "Install")
    assert (second["doc_id"], second["metadata"]["headings"].split(" > ")[-1]) == ("getting-started.md", "First run")
    assert result["sentences"] == [
        {"text": COPIED, "cites": [1], "supported": True, "found_in": 1, "quote": COPIED},
        {"text": OF_PASSAGE_2, "cites": [1], "supported": False, "found_in": 2, "quote": OF_PASSAGE_2},
        {"text": INVENTED, "cites": [2], "supported": False, "found_in": None, "quote": None},
        {"text": NUMBER_CHANGED, "cites": [1], "supported": False, "found_in": None, "quote": None},
    ]


def test_the_terminal_lists_sentences_found_nowhere_and_wrong_citations_after_the_sources(guide, standin, capsys):
    standin.reply = CRAFTED.replace("Penguins", "Penguins\x1b[2J")

    code = main([QUESTION])
    out, err = capsys.readouterr()

    assert (code, err) == (0, "")
    sources, checked = out.split("\nSources:\n")[1].split("\n\nChecked: ")
    assert sources.startswith("  [1] getting-started.md")
    assert checked.splitlines() == [
        "1 of 4 sentences found in their sources.",
        f"  cites [1]; found in [2]: {OF_PASSAGE_2}",
        "  not found in the sources: Penguins\\x1b[2J migrate across the Sahara desert every winter.",
        f"  not found in the sources: {NUMBER_CHANGED}",
    ]


def test_a_refusal_is_not_checked(guide, standin, capsys):
    standin.reply = "The documents do not answer the question."

    result = ask_json(capsys)

    assert result["sentences"] == []


def citations() -> list[Citation]:
    return [Citation(1, "adding.md", "Adding documents", GUIDE_PASSAGE, 0.9, {}),
            Citation(2, "config.md", "Configuration", OTHER_PASSAGE, 0.5, {})]


@pytest.mark.parametrize("sentence", [
    "Hidden files are not ignored [1].",  # negation added
    "The store keeps 90 days of history [1].",  # number changed
    "A re-run only touches files that changed, and Chroma keeps 30 days of history [1].",  # a name the passage lacks
    "Set RAG_TOP_K to change the context window sent to Ollama [2].",  # a setting's name changed
])
def test_a_changed_fact_is_not_supported_by_the_passage_it_cites(embedder, sentence):
    [check] = check_turn(sentence, citations(), embedder)

    assert (check.supported, check.found_in) == (False, None)


@pytest.mark.parametrize("sentence", [
    "Hidden files are skipped [1].",
    "Re-running only touches the files that changed [1].",
    "To add a folder of documents, run `python -m ingest docs/` [1].",
    "The context window sent to Ollama is set with RAG_NUM_CTX [2].",
])
def test_a_paraphrase_is_supported_by_the_passage_it_cites(embedder, sentence):
    [check] = check_turn(sentence, citations(), embedder)

    assert check.supported and check.quote is not None


def test_the_line_counts_the_sentences_found_in_their_sources(embedder):
    checks = check_turn("Hidden files are ignored [1]. Hidden files are ignored [2]. Cats purr loudly at night [1].",
                        citations(), embedder)

    assert [(c.supported, c.found_in, c.wrong_citation) for c in checks] == [(True, 1, False), (False, 1, True),
                                                                            (False, None, False)]
    assert summary_line(checks) == "1 of 3 sentences found in their sources"
    assert summary_line(checks[:1]) == "1 of 1 sentence found in their sources"


CHECK = {
    "summary": "1 of 3 sentences found in their sources",
    "sentences": [
        {"text": "Hidden files are ignored.", "cites": [1], "supported": True, "found_in": 1,
         "quote": "Hidden files are ignored.", "end": 29, "quotes": [{"number": 1, "quote": "Hidden files are ignored."}]},
        {"text": "Set RAG_NUM_CTX.", "cites": [1], "supported": False, "found_in": 2, "quote": "Set <b>RAG_NUM_CTX</b>.",
         "end": 50, "quotes": [{"number": 2, "quote": "Set <b>RAG_NUM_CTX</b>."}]},
        {"text": "Cats purr.", "cites": [], "supported": False, "found_in": None, "quote": None, "end": 61, "quotes": []},
    ],
    "passages": [{"number": 1, "text": "Run it. Hidden files are ignored. Re-runs are quick."},
                 {"number": 2, "text": "Set <b>RAG_NUM_CTX</b>. <img src=x onerror=alert(1)>"}],
}
CHECKED_ANSWER = "Hidden files are ignored [1]. Set RAG_NUM_CTX [1]. Cats purr."


def test_the_page_draws_citations_as_passage_toggles_and_marks_the_sentences_found_nowhere_or_elsewhere():
    html = checked_answer_html(CHECKED_ANSWER, CHECK)

    toggle = ('<label class="rag-cite"><input type="checkbox" aria-label="Show passage {n}"><span class="rag-cite-number">'
              '[{n}]</span><span class="rag-passage">[{n}] {body}</span></label>')
    first = toggle.format(n=1, body="Run it. <mark>Hidden files are ignored.</mark> Re-runs are quick.")
    first_plain = toggle.format(n=1, body="Run it. Hidden files are ignored. Re-runs are quick.")
    second = toggle.format(n=2, body="<mark>Set &lt;b&gt;RAG_NUM_CTX&lt;/b&gt;.</mark> &lt;img src=x onerror=alert(1)&gt;")
    assert html == (
        f'<div class="rag-answer"><p>Hidden files are ignored {first}. Set RAG_NUM_CTX {first_plain}.'
        f'<span class="rag-wrong">cites [1]; found in {second}</span> Cats purr.'
        '<span class="rag-unfound" title="Checked against every passage sent to the model: wording (embedding '
        'similarity to each passage sentence), shared content words, and the numbers, dates, names and negations it '
        'states.">not found in the sources</span></p></div>'
    )


def test_private_use_characters_in_an_answer_cannot_pose_as_marks():
    html = checked_answer_html("Hidden files are ignored [1].\ue000\ue101 Set RAG_NUM_CTX [1]. Cats purr.", CHECK)

    assert "\ue000" not in html and "\ue101" not in html and html.count("\ufffd") == 2
