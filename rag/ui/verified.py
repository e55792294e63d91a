"""Verified answers on the page: the check run once the answer is written, saved with it, and drawn into it (each
[n] opens its passage with the matching sentence highlighted, a sentence found nowhere or cited wrongly is marked)."""
from __future__ import annotations

import re
from concurrent.futures import Future, ThreadPoolExecutor

from markdown_it.common.utils import escapeHtml

from rag.chat.citations import CITATION
from rag.chat.prompt import Citation
from rag.chat.verify import WHAT_WAS_CHECKED, SourceSentences, check_answer, passage_sentences, prepare_sources, summary_line
from rag.search.embeddings import Embedder
from rag.ui.text import answer_html

SENTINEL = "\ue000"  # private-use characters mark where each checked sentence ends while the Markdown is rendered
FIRST_INDEX = 0xE100
MAX_MARKED = 0xFF
RESERVED = re.compile("[\ue000-\ue1ff]")
MARKER = re.compile(SENTINEL + "([\ue100-\ue1ff])")
PREPARING = ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify")


def prepare_in_background(citations: list[Citation], embedder: Embedder) -> Future:
    """Split and embed the passages while the answer is written (started at its first token, never before)."""
    return PREPARING.submit(prepare_sources, citations, embedder)


def check_meta(answer: str, citations: list[Citation], preparing: Future, embedder: Embedder) -> dict | None:
    """What the page saves of the check: the line, each sentence's result and the passages it opens; None when
    the answer states nothing to check (a refusal, an empty answer)."""
    sources: SourceSentences = preparing.result()
    checks = check_answer(answer, sources, embedder)
    if not checks:
        return None
    shown = {n for c in checks for n in (*c.cites, c.found_in) if n is not None}
    return {
        "summary": summary_line(checks),
        "sentences": [{**c.as_json(), "end": c.end, "quotes": [{"number": n, "quote": q} for n, q in c.quotes]}
                      for c in checks],
        "passages": [{"number": c.number, "text": " ".join(passage_sentences(c.text))}
                     for c in citations if c.number in shown],
    }


def passage_html(number: int, passages: dict[int, str], quote: str | None) -> str:
    """[n] as a toggle that opens passage n below the line, its matching sentence highlighted; a number the model was
    not given stays as it is."""
    passage = passages.get(number)
    if passage is None:
        return f"[{number}]"
    at = passage.find(quote) if quote else -1
    if at < 0:
        body = escapeHtml(passage)
    else:
        end = at + len(quote)
        body = f"{escapeHtml(passage[:at])}<mark>{escapeHtml(quote)}</mark>{escapeHtml(passage[end:])}"
    return (f'<label class="rag-cite"><input type="checkbox" aria-label="Show passage {number}">'
            f'<span class="rag-cite-number">[{number}]</span><span class="rag-passage">[{number}] {body}</span></label>')


def citations_html(segment: str, passages: dict[int, str], quotes: dict[int, str]) -> str:
    """A piece of rendered answer with each [n] (and [1, 2]) made a passage toggle."""
    def toggles(match: re.Match) -> str:
        return "".join(passage_html(int(n), passages, quotes.get(int(n))) for n in match.group(1).split(","))
    return CITATION.sub(toggles, segment)


def note_html(sentence: dict, passages: dict[int, str]) -> str:
    """The mark after a sentence: none when a passage it cites holds it, else where it was found, or that it was not."""
    if sentence["supported"]:
        return ""
    if sentence["found_in"] is None:
        return f'<span class="rag-unfound" title="{escapeHtml(WHAT_WAS_CHECKED)}">not found in the sources</span>'
    cited = "".join(f"[{n}]" for n in sentence["cites"])
    said = f"cites {cited}" if cited else "cites nothing"
    found = passage_html(sentence["found_in"], passages, sentence["quote"])
    return f'<span class="rag-wrong">{said}; found in {found}</span>'


def checked_answer_html(markdown: str, check: dict) -> str:
    """The answer as answer_html draws it, with each checked sentence's citations opening their passages and its mark."""
    sentences = check.get("sentences", [])[:MAX_MARKED]
    passages = {p["number"]: p["text"] for p in check.get("passages", [])}
    text = RESERVED.sub("\ufffd", markdown)  # the same length: the sentences' offsets still hold
    for index in reversed(range(len(sentences))):
        end = min(sentences[index]["end"], len(text))
        text = text[:end] + SENTINEL + chr(FIRST_INDEX + index) + text[end:]
    pieces = MARKER.split(answer_html(text))
    html = []
    for segment, marker in zip(pieces[::2], [*pieces[1::2], None]):
        sentence = sentences[ord(marker) - FIRST_INDEX] if marker else None
        quotes = {q["number"]: q["quote"] for q in sentence.get("quotes", [])} if sentence else {}
        html.append(citations_html(segment, passages, quotes))
        if sentence:
            html.append(note_html(sentence, passages))
    return "".join(html)
