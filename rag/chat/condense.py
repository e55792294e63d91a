"""Rewrite a follow-up question that refers back to the conversation into a standalone search query with the chat
model; a question that stands on its own (rag/core/question_words.py) is searched as asked, without a model call."""
from __future__ import annotations

from dataclasses import dataclass

from rag.chat.citations import CITATION
from rag.core.errors import LLMError
from rag.core.question_words import refers_back
from rag.llm.backend import Backend, ChatOptions, ChatUsage

CONDENSE_RULES = (
    "You rewrite the user's last question into one standalone search query for a document search. "
    "Use the conversation only to resolve what the question refers to. Keep the question's language. "
    "Reply with the query only: no answer, no explanation, no quotes."
)
TURN_CHARS = 400
TURNS_KEPT = 6
MAX_QUERY_CHARS = 300
QUERY_TOKENS = 64
LONGER_THAN_QUESTION = 4  # a rewrite this many times longer than the question (plus a clause) is an answer, not a query
SLACK_CHARS = 60
STANDS_ALONE = "it does not refer to the earlier messages"  # so no model is asked to reword it


@dataclass(frozen=True)
class Condensed:
    """The query to search for, and why the question itself was used when the rewrite was not."""

    query: str
    fallback: str | None = None


def condense_messages(question: str, history: list[dict]) -> list[dict]:
    """The short prompt that asks for a standalone query."""
    lines = []
    for turn in history[-TURNS_KEPT:]:
        speaker = "User" if turn["role"] == "user" else "Assistant"
        text = " ".join(turn["content"].split())
        lines.append(f"{speaker}: {text[:TURN_CHARS]}")
    conversation = "\n".join(lines)
    return [
        {"role": "system", "content": CONDENSE_RULES},
        {"role": "user", "content": f"Conversation:\n{conversation}\n\nLast question: {question}\n\nStandalone query:"},
    ]


def clean_query(text: str) -> str:
    """The first non-empty line of the model's reply, without a label or quotes."""
    for line in text.strip().splitlines():
        line = line.strip()
        if line:
            break
    else:
        return ""
    for label in ("standalone query:", "query:", "search query:"):
        if line.lower().startswith(label):
            line = line[len(label):].strip()
    return line.strip("\"'“”` ").strip()


def rewrite_problem(question: str, query: str) -> str | None:
    """Why a model's rewording of the question cannot be searched for, in plain words, or None when it can."""
    if not query:
        return "the model gave no reworded question"
    if CITATION.search(query):
        return "the model answered it instead of rewording it"
    if len(query) > min(MAX_QUERY_CHARS, LONGER_THAN_QUESTION * len(question) + SLACK_CHARS):
        return "the model's rewording was much longer than the question"
    return None


def condense_question(question: str, history: list[dict], llm: Backend, model: str, num_ctx: int) -> Condensed:
    """A standalone query for a follow-up that refers back to the conversation; the question itself, with the reason,
    when it stands on its own, there is no history or the model's rewording is unusable."""
    if not history:
        return Condensed(question)
    if not refers_back(question):
        return Condensed(question, STANDS_ALONE)
    options = ChatOptions(num_ctx, 0.0, QUERY_TOKENS)
    try:
        reply = "".join(llm.stream_chat(model, condense_messages(question, history), options, ChatUsage()))
    except LLMError:
        return Condensed(question, "the model could not be asked to reword it")
    query = clean_query(reply)
    problem = rewrite_problem(question, query)
    return Condensed(question, problem) if problem else Condensed(query)
