"""`python -m rag.ask "question"`: retrieve, stream a grounded answer from the model server, then list the sources.

Failures print one `error: ...` line on stderr, never a traceback, and exit with their code from
rag.core.errors.EXIT_CODES (listed by --help).
"""
from __future__ import annotations

import argparse
import difflib
import sys
import threading
import time
from typing import TYPE_CHECKING

from ingest.documents import INTERNAL_FIELDS
from rag.chat.ask_whole import print_sections, read_whole, sections_json
from rag.chat.mode import MODES, choose_mode
from rag.chat.scope import named_in, resolve_ids
from rag.chat.scoped_search import search_within
from rag.chat.turn import Turn, prepare_turn, stream_answer, warm_in_background
from rag.chat.verify import SentenceCheck, check_turn, summary_line
from rag.core.command_line import OneLineParser, document_count
from rag.core.errors import EXIT_CODES, INTERRUPTED, RagError, exit_codes_help
from rag.llm.backend import Backend
from rag.llm.boxes import open_backend
from rag.search.loader import open_retriever
from rag.search.retrieval import is_relevant, no_match_text
from rag.core.settings import TOP_K_MAX, Settings, load_settings
from rag.core.terminal import output_closed, print_error, safe_json, safe_line, safe_stream, safe_text, tolerant_output

if TYPE_CHECKING:  # the index brings numpy, scipy and bm25s: imported with the retriever, not with this module
    from rag.search.chunk_index import ChunkIndex

WAIT_NOTICE_AFTER = 1.0  # seconds without a first token before saying what we wait for
VALUES_SHOWN = 12  # a field with more values lists only this many, the closest to the value given
CLOSE_VALUE = 0.5  # how alike (difflib's ratio, ignoring case) a value must be to count as close


def question_text(text: str) -> str:
    """The question: anything but empty or blank."""
    if not text.strip():
        raise argparse.ArgumentTypeError("the question is empty; ask something, e.g. \"How do I add documents?\"")
    return text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = OneLineParser(
        prog="python -m rag.ask",
        description="Ask a question about your documents.",
        epilog=exit_codes_help(EXIT_CODES),
    )
    parser.add_argument("question", type=question_text, help="the question")
    parser.add_argument("--model", help="chat model (default: RAG_MODEL)")
    parser.add_argument("--k", type=document_count, help=f"documents to retrieve, 1 to {TOP_K_MAX} (default: RAG_TOP_K)")
    parser.add_argument("--where", metavar="FIELD=VALUE", action="append", default=[], help="metadata filter, repeatable")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of streaming text")
    parser.add_argument(
        "--doc", metavar="ID", action="append", default=[],
        help="ask about this document (its id, file name or title), repeatable; default: a document the question names",
    )
    parser.add_argument(
        "--mode", choices=MODES,
        help="search: retrieve passages; whole: read the scoped documents whole (in parts when they do not fit); "
        "parts: read them in parts (default: whole for summaries, outlines, comparisons, else search)",
    )
    parser.add_argument(
        "--anyway", action="store_true", help="ask the model even when no document reaches RAG_RELEVANCE_FLOOR"
    )
    return parser.parse_args(argv)


def parse_where(pairs: list[str]) -> list[tuple[str, str]]:
    """FIELD=VALUE pairs as (field, value) conditions, checked for their form."""
    conditions = []
    for pair in pairs:
        if "=" not in pair:
            raise RagError(f"--where {pair!r} must look like FIELD=VALUE.")
        key, value = pair.split("=", 1)
        if not key.strip() or key.startswith("$"):
            raise RagError(f"--where {pair!r} must look like FIELD=VALUE, FIELD a metadata field name (not empty, not a $ operator).")
        conditions.append((key, value))
    return conditions


def store_filter(conditions: list[tuple[str, str]], index: ChunkIndex) -> dict | None:
    """The conditions as a Chroma filter on values the store holds (`page=3` matches the number 3), or the error
    that names the field or value it lacks and those it has."""
    typed = [{key: stored_value(key, value, index)} for key, value in conditions]
    if not typed:
        return None
    return typed[0] if len(typed) == 1 else {"$and": typed}


def stored_value(key: str, value: str, index: ChunkIndex):
    """The value of the field as the store holds it, whose text is the value given."""
    fields = index.fields()
    if key not in fields:
        raise RagError(f"--where {key}={value}: the documents have no field {key!r}; {field_list(fields)}.")
    values = index.values_of(key)
    for stored in values:
        if str(stored) == value or (isinstance(stored, bool) and str(stored).lower() == value.lower()):
            return stored
    raise RagError(f"--where {key}={value}: no document has {key} = {value!r}; {value_list(key, value, values)}.")


def field_list(fields: set[str]) -> str:
    """The fields to filter on, the documents' own first, then those every chunk has."""
    own = sorted(fields - INTERNAL_FIELDS)
    common = [name for name in ("doc_id", "title", "source", "headings", "page", "rows") if name in fields]
    if not own:
        return "they have only the fields every document has: " + ", ".join(common)
    return f"their fields are {', '.join(own)} (and {', '.join(common)})"


def value_list(key: str, value: str, values: set) -> str:
    """The values a field takes, all of them when few, else the count and those closest to the value given."""
    texts = sorted({str(v) for v in values})
    if len(texts) <= VALUES_SHOWN:
        return f"its values are {', '.join(texts)}"
    likeness = {text: difflib.SequenceMatcher(None, value.lower(), text.lower()).ratio() for text in texts}
    closest = sorted((t for t in texts if likeness[t] >= CLOSE_VALUE), key=lambda t: -likeness[t])[:VALUES_SHOWN]
    return f"it has {len(texts):,} values; {'the closest' if closest else 'the first'}: {', '.join(closest or texts[:VALUES_SHOWN])}"


def sources_json(turn: Turn) -> list[dict]:
    """The numbered sources as JSON-ready dicts."""
    return [
        {"number": c.number, "doc_id": c.doc_id, "title": c.title, "text": c.text, "score": round(c.score, 4), "metadata": c.metadata}
        for c in turn.citations
    ]


def print_sources(turn: Turn) -> None:
    """The sources as lines under the answer."""
    print("\nSources:")
    if not turn.citations:
        print("  (nothing relevant found in the store)")
    for c in turn.citations:
        where = f" ({safe_line(c.location)})" if c.location else ""
        print(f"  [{c.number}] {safe_line(c.doc_id)}: {safe_line(c.title)}{where}  score {c.score:.3f}")


def print_checks(checks: list[SentenceCheck]) -> None:
    """After the sources: how many sentences their sources hold, then each found nowhere or cited wrongly."""
    if not checks:
        return
    print(f"\nChecked: {summary_line(checks)}.")
    for check in checks:
        if check.wrong_citation:
            cites = "".join(f"[{n}]" for n in check.cites) or "nothing"
            print(f"  cites {cites}; found in [{check.found_in}]: {safe_line(check.text)}")
        elif not check.supported:
            print(f"  not found in the sources: {safe_line(check.text)}")


def warnings(turn: Turn) -> list[str]:
    """What the user should know about an answer that arrived: a cut prompt, an answer stopped at its limit."""
    notes = []
    if turn.truncated:
        notes.append(turn.truncation_note())
    if turn.cut_short:
        notes.append(f"The answer stopped at its length limit ({turn.answer_tokens:,} tokens); raise RAG_ANSWER_TOKENS.")
    return notes


def turn_json(turn: Turn, scope: list[str] | None = None, checks: list[SentenceCheck] = ()) -> dict:
    """The --json object."""
    ms = turn.timings
    reading = getattr(turn, "reading", None)
    return {
        "answer": turn.answer,
        "sources": sources_json(turn),
        "model": turn.model,
        "backend": turn.backend,
        "timings": {
            "retrieve_ms": round(ms.retrieve_ms, 2),
            "first_token_ms": None if ms.first_token_ms is None else round(ms.first_token_ms, 2),
            "total_ms": round(ms.total_ms, 2),
        },
        "error": str(turn.error) if turn.error else None,
        "exit_code": turn.error.exit_code if turn.error else 0,
        "context": {
            "num_ctx": turn.num_ctx,
            "estimated_prompt_tokens": turn.prompt.estimated_tokens,
            "prompt_eval_count": turn.usage.prompt_tokens,
            "truncated": turn.truncated,
            "dropped_chunks": turn.prompt.dropped_chunks,
            "done_reason": turn.usage.finish_reason,
        },
        "warnings": warnings(turn),
        "reasoning": turn.usage.reasoning or None,
        "sentences": [check.as_json() for check in checks],
        "relevant": True,
        "scope": list(scope or (reading.scope if reading else [])),
        "mode": reading.mode if reading else "search",
        "parts": reading.parts if reading else 0,
        "parts_covered": reading.covered if reading else 0,
    }


class WaitNotice:
    """Says on stderr what we are waiting for when the first token is slow (a model loading), with the time waited."""

    def __init__(self, turn: Turn, llm: Backend, after: float = WAIT_NOTICE_AFTER):
        self.text = safe_line(
            f"Waiting for {turn.model} at {llm.url} (loading a model can take a minute; "
            f"giving up after {llm.read_timeout:g} s, RAG_READ_TIMEOUT)"
        )
        self.after = after
        self.done = threading.Event()
        self.shown = False
        self.live = sys.stderr.isatty()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def __enter__(self) -> WaitNotice:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def run(self) -> None:
        started = time.monotonic()
        if self.done.wait(self.after):
            return
        self.shown = True
        if not self.live:
            print(self.text + "...", file=sys.stderr, flush=True)
            return
        while True:
            print(f"\r{self.text}... {time.monotonic() - started:.0f} s", end="", file=sys.stderr, flush=True)
            if self.done.wait(1.0):
                return

    def stop(self) -> None:
        """Stop ticking; clear the live line."""
        if self.done.is_set():
            return
        self.done.set()
        self.thread.join()
        if self.shown and self.live:
            print("\r\033[K", end="", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Answer one question; the exit code says how it went."""
    conditions = parse_where(args.where)
    settings = load_settings()
    llm = open_backend(settings)
    model = args.model or settings.model
    warm_in_background(llm, model, settings)
    retriever = open_retriever(settings)
    index = retriever.index.get()
    where = store_filter(conditions, index)
    scope = resolve_ids(args.doc, index) if args.doc else named_in(args.question, index)
    mode = choose_mode(args.question, scope, args.mode)
    if mode != "search":
        return answer_whole(args, settings, llm, model, index, scope, mode)
    docs = search_within(retriever, args.question, scope, args.k or settings.top_k, where) if scope else None
    turn = prepare_turn(args.question, settings, retriever, model=model, where=where, k=args.k, llm=llm, docs=docs)
    if not args.anyway and not is_relevant(turn.docs, settings.relevance_floor):
        return refuse(turn, settings, args.json, scope)
    with WaitNotice(turn, llm) as notice:
        for piece in safe_stream(stream_answer(turn, llm, settings)):
            notice.stop()
            if not args.json:
                print(piece, end="", flush=True)
    checks = check_turn(turn.answer, turn.citations, retriever.embedder)
    if args.json:
        print(safe_json(turn_json(turn, scope, checks)))
    else:
        if turn.answer:
            print()
        print_sources(turn)
        print_checks(checks)
        for note in warnings(turn):
            print(f"warning: {safe_line(note)}", file=sys.stderr)
    if turn.error:
        print_error(turn.error)
        return turn.error.exit_code
    return 0


def refuse(turn: Turn, settings: Settings, as_json: bool, scope: list[str]) -> int:
    """Say the documents do not answer, with the best scores, instead of letting the model improvise."""
    turn.answer = no_match_text(turn.docs, settings.relevance_floor)
    if as_json:
        print(safe_json({**turn_json(turn, scope), "relevant": False}))
    else:
        print(safe_text(turn.answer))
        print("(Run again with --anyway to ask the model regardless.)")
        print_sources(turn)
    return 0


def answer_whole(args: argparse.Namespace, settings: Settings, llm: Backend, model: str, index, scope: list[str], mode: str) -> int:
    """Answer a whole-document question over the scope, then say how it was read and which sections it cites."""
    if not scope:
        raise RagError(f"--mode {mode} reads whole documents: name one with --doc ID (or in the question, as install.md).")
    turn = read_whole(args.question, settings, llm, model, index, scope, mode, args.json)
    if turn.reading.stopped:
        print("interrupted: the notes so far are kept; ask again to read only the rest", file=sys.stderr)
    if args.json:
        print(safe_json({**turn_json(turn), "sources": sections_json(turn)}))
    else:
        print_sections(turn)
        for note in warnings(turn):
            print(f"warning: {safe_line(note)}", file=sys.stderr)
    if turn.error:
        print_error(turn.error)
        return turn.error.exit_code
    return INTERRUPTED if turn.reading.stopped else 0


def main(argv: list[str] | None = None) -> int:
    """The CLI: domain errors become one line on stderr and an exit code."""
    tolerant_output()
    args = parse_args(argv)
    try:
        return run(args)
    except RagError as exc:
        print_error(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:
        return output_closed()

