"""Rewrite a follow-up question into a standalone search query with the chat model."""
from __future__ import annotations

from rag.llm import ChatStats, Ollama

CONDENSE_RULES = (
    "You rewrite the user's last question into one standalone search query for a document search. "
    "Use the conversation only to resolve what the question refers to. Keep the question's language. "
    "Reply with the query only: no answer, no explanation, no quotes."
)
TURN_CHARS = 400
TURNS_KEPT = 6
MAX_QUERY_CHARS = 300
QUERY_TOKENS = 64


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


def condense_question(question: str, history: list[dict], llm: Ollama, model: str, num_ctx: int) -> str:
    """A standalone query for a follow-up; the question itself when there is no history.

    Raises the OllamaError the model produced; callers fall back to the question itself.
    """
    if not history:
        return question
    options = {"num_ctx": num_ctx, "temperature": 0.0, "num_predict": QUERY_TOKENS}
    reply = "".join(llm.stream_chat(model, condense_messages(question, history), options, ChatStats()))
    query = clean_query(reply)
    if not query or len(query) > MAX_QUERY_CHARS:
        return question
    return query
