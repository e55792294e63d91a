"""What the page shows under an answer, as plain data saved with the message: sources, figures, warnings."""
from __future__ import annotations

from ingest.documents import INTERNAL_FIELDS
from rag.chat.citations import cited_numbers
from rag.chat.turn import Turn
from rag.search.retrieval import best_scores, no_match_text
from rag.ui.text import readable

SNIPPET_CHARS = 600
ALSO_SNIPPET_CHARS = 160
DETAIL_FIELDS = 4  # metadata fields shown per source, e.g. course and section
DETAIL_CHARS = 60
FIGURES_HEAD = "Nothing in your documents looks relevant to this question: "


def shorten(text: str, limit: int) -> str:
    """Text cut to at most limit characters, marked with an ellipsis when cut."""
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def snippet(text: str) -> str:
    """The chunk's words as a reader sees them (no Markdown syntax), on one line, shortened for display."""
    return shorten(readable(text), SNIPPET_CHARS)


def details_of(metadata: dict) -> dict:
    """The metadata that tells sources apart (e.g. course, section): scalar fields that are not internal."""
    fields = {
        str(key): shorten(str(value), DETAIL_CHARS)
        for key, value in sorted(metadata.items())
        if key not in INTERNAL_FIELDS and isinstance(value, (str, int, float, bool)) and str(value).strip()
    }
    return dict(list(fields.items())[:DETAIL_FIELDS])


def location_of(metadata: dict) -> str:
    """The heading path, page, CSV rows or symbol path and source lines a chunk comes from."""
    if metadata.get("page"):
        return f"page {metadata['page']}"
    if metadata.get("rows"):
        return f"rows {metadata['rows']}"
    if metadata.get("lines"):
        return ", ".join(part for part in (metadata.get("headings", ""), f"lines {metadata['lines']}") if part)
    return metadata.get("headings", "") or ""


def source_entries(turn: Turn, answer: str) -> list[dict]:
    """Every source of a turn, best score first: the numbered chunks sent (cited or not), then documents not sent."""
    cited = cited_numbers(answer)
    entries = [
        {
            "number": c.number,
            "doc_id": c.doc_id,
            "title": c.title,
            "location": location_of(c.metadata),
            "snippet": snippet(c.text),
            "score": round(float(c.score), 4),
            "cited": c.number in cited,
            "details": details_of(c.metadata),
        }
        for c in turn.citations
    ]
    sent = {c.doc_id for c in turn.citations}
    for doc in turn.docs:
        if doc.doc_id not in sent and doc.chunks:
            entries.append(
                {
                    "number": None,
                    "doc_id": doc.doc_id,
                    "title": doc.title,
                    "location": location_of(doc.chunks[0].metadata),
                    "snippet": snippet(doc.chunks[0].text),
                    "score": round(float(doc.score), 4),
                    "cited": False,
                    "details": details_of(doc.chunks[0].metadata),
                }
            )
    return sorted(entries, key=lambda entry: entry["score"], reverse=True)


def sources_label(sources: list[dict]) -> str:
    """'Sources: 5 documents, 10 passages', with how many the answer cites."""
    documents = len({source["doc_id"] for source in sources})
    cited = sum(1 for source in sources if source["cited"])
    label = f"Sources: {documents} document{'s' if documents != 1 else ''}, {len(sources)} passage{'s' if len(sources) != 1 else ''}"
    return label + (f", {cited} cited" if cited else "")


def unknown_citations(answer: str, turn: Turn) -> list[int]:
    """Numbers the answer cites that were never given to the model."""
    known = {c.number for c in turn.citations}
    return sorted(n for n in cited_numbers(answer) if n not in known)


def figures_line(turn: Turn) -> str:
    """One compact line: retrieval ms, first token, tokens/s, prompt tokens of num_ctx, chunks used, model."""
    parts = [f"retrieval {turn.timings.retrieve_ms:.0f} ms"]
    if turn.timings.first_token_ms is not None:
        parts.append(f"first token {turn.timings.first_token_ms:.0f} ms")
    if turn.usage.tokens_per_second:
        parts.append(f"{turn.usage.tokens_per_second:.1f} tokens/s")
    if turn.usage.prompt_tokens:
        parts.append(f"prompt {turn.usage.prompt_tokens:,} / {turn.num_ctx:,} tokens")
    else:
        parts.append(f"prompt ~{turn.prompt.estimated_tokens:,} / {turn.num_ctx:,} tokens (estimated)")
    chunks = f"{len(turn.citations)} chunks used"
    if turn.prompt.dropped_chunks:
        chunks += f" ({turn.prompt.dropped_chunks} left out to fit)"
    parts.append(chunks)
    parts.append(turn.model)
    return " · ".join(parts)


def answer_meta(turn: Turn, answer: str, *, floor: float) -> dict:
    """Everything needed to redraw an answer later (also while it streams; the caller adds state and error)."""
    return {
        "kind": "answer",
        "question": turn.question,
        "query": turn.query,
        "model": turn.model,
        "sources": source_entries(turn, answer),
        "unknown_citations": unknown_citations(answer, turn),
        "figures": figures_line(turn),
        "truncation": turn.truncation_note(),
        "cut_short": turn.cut_short,
        "reasoning": turn.usage.reasoning,
        "floor": floor,
    }


def refusal(turn: Turn, floor: float) -> tuple[str, str | None]:
    """The page's words when nothing passes the relevance floor: one plain sentence, and the figures compared (the
    terminal's full explanation) for a collapsed detail, when there are any."""
    if not turn.docs:
        return "Nothing in your documents matches this question, so the model was not asked.", None
    explained = no_match_text(turn.docs, floor)
    figures = explained.removeprefix(FIGURES_HEAD) if explained.startswith(FIGURES_HEAD) else None
    sentence = "Nothing in your documents looks relevant to this question, so the model was not asked."
    return sentence, figures[:1].upper() + figures[1:] if figures else None


def no_match_meta(turn: Turn, floor: float) -> dict:
    """What a 'nothing relevant' notice needs: the question, query, best scores, for the ask-anyway button."""
    return {
        "kind": "no_match",
        "question": turn.question,
        "query": turn.query,
        "model": turn.model,
        "best_scores": best_scores(turn.docs, floor),
        "floor": floor,
    }
