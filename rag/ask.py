"""`python -m rag.ask "question"`: retrieve, stream a grounded answer from Ollama, then list the sources."""
from __future__ import annotations

import argparse
import json
import sys

from rag.chat import Turn, prepare_turn, stream_answer
from rag.errors import RagError
from rag.llm import Ollama
from rag.pipeline import open_retriever
from rag.settings import load_settings


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m rag.ask", description="Ask a question about your documents.")
    parser.add_argument("question", help="the question")
    parser.add_argument("--model", help="Ollama chat model (default: RAG_MODEL)")
    parser.add_argument("--k", type=int, help="documents to retrieve (default: RAG_TOP_K)")
    parser.add_argument("--where", metavar="FIELD=VALUE", action="append", default=[], help="metadata filter, repeatable")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of streaming text")
    return parser.parse_args(argv)


def parse_where(pairs: list[str]) -> dict | None:
    """FIELD=VALUE pairs as a Chroma filter."""
    conditions = []
    for pair in pairs:
        if "=" not in pair:
            raise RagError(f"--where {pair!r} must look like FIELD=VALUE.")
        key, value = pair.split("=", 1)
        conditions.append({key: value})
    if not conditions:
        return None
    return conditions[0] if len(conditions) == 1 else {"$and": conditions}


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
        where = f" ({c.location})" if c.location else ""
        print(f"  [{c.number}] {c.doc_id}: {c.title}{where}  score {c.score:.3f}")


def main(argv: list[str] | None = None) -> int:
    """Answer one question; exit non-zero with a one-line message when Ollama fails."""
    args = parse_args(argv)
    try:
        settings = load_settings()
        retriever = open_retriever(settings)
        turn = prepare_turn(args.question, settings, retriever, model=args.model, where=parse_where(args.where), k=args.k)
    except RagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    llm = Ollama(settings)
    if args.json:
        for _ in stream_answer(turn, llm, settings):
            pass
        print(json.dumps({
            "answer": turn.answer,
            "sources": sources_json(turn),
            "model": turn.model,
            "timings": {
                "retrieve_ms": round(turn.timings.retrieve_ms, 2),
                "first_token_ms": None if turn.timings.first_token_ms is None else round(turn.timings.first_token_ms, 2),
                "total_ms": round(turn.timings.total_ms, 2),
            },
            "error": str(turn.error) if turn.error else None,
        }))
        if turn.error:
            print(f"error: {turn.error}", file=sys.stderr)
    else:
        for piece in stream_answer(turn, llm, settings):
            print(piece, end="", flush=True)
        if turn.answer:
            print()
        print_sources(turn)
        if turn.error:
            print(f"error: {turn.error}", file=sys.stderr)
    return turn.error.exit_code if turn.error else 0


if __name__ == "__main__":
    sys.exit(main())
