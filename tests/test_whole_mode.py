"""The mode rule: question words and scope decide, without a model call; an override wins."""
from __future__ import annotations

import pytest

from rag.chat.mode import choose_mode, is_comparison

WHOLE = [
    "summarise install.md",
    "Summarize this report",
    "Give me a summary",
    "What are the main points of chapter 3?",
    "key takeaways please",
    "outline the document",
    "an overview of the guide",
    "compare the 2023 and 2024 contracts",
    "How do a.pdf and b.pdf differ?",
    "what are the differences between them",
    "plan A vs. plan B",
    "list every deadline",
    "List all the people",
    "what is the Starlette routing page about?",
    "What's this file about",
    "tl;dr",
    "résumé du document",
    "Zusammenfassung bitte",
]
SEARCH = [
    "what does this file say about pricing?",
    "How do I install Ollama?",
    "which port does the server use",
    "what is the default model",
    "Is there a limit on file size?",
    "who wrote the summit chapter",
    "how different is the fee",  # "different" is not "differ"
    "what about the deadline?",
]


@pytest.mark.parametrize("question", WHOLE)
def test_whole_document_questions_over_a_scope_read_it_whole(question):
    assert choose_mode(question, ["doc.md"]) == "whole"


@pytest.mark.parametrize("question", SEARCH)
def test_questions_about_one_thing_search_within_the_scope(question):
    assert choose_mode(question, ["doc.md"]) == "search"


@pytest.mark.parametrize("question", WHOLE + SEARCH)
def test_without_a_scope_every_question_is_a_search(question):
    assert choose_mode(question, []) == "search"


@pytest.mark.parametrize("override", ["search", "whole", "parts"])
def test_the_mode_asked_for_wins(override):
    assert choose_mode("summarise it", ["doc.md"], override) == override
    assert choose_mode("which port?", ["doc.md"], override) == override


def test_a_comparison_needs_two_documents_and_a_comparing_word():
    assert is_comparison("compare them", ["a.md", "b.md"])
    assert is_comparison("a.md versus b.md", ["a.md", "b.md"])
    assert not is_comparison("compare the sections", ["a.md"])
    assert not is_comparison("summarise both", ["a.md", "b.md"])
