"""Cost of checking an answer's sentences (rag/chat/verify.py): a 10-sentence answer over 10 passages of the guide.

    python bench/bench_verify.py [--runs 30]

Prints the median milliseconds of the two steps: embedding the passages' sentences (on the page this runs while the
model writes, from its first token) and the check once the answer has ended (embedding its sentences, the facts,
the decision), with the embedding's part measured alone, then one JSON line.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from calibrate_verify import CORPORA, chunk_texts  # noqa: E402
from rag.chat.prompt import Citation  # noqa: E402
from rag.chat.verify import check_answer, passage_sentences, prepare_sources  # noqa: E402
from rag.search.embeddings import load_embedder  # noqa: E402

PASSAGES = 10
SENTENCES = 10
TARGET_MS = 50.0


def answer_over(citations: list[Citation]) -> str:
    """Ten sentences as a model writes them: copied or trimmed from the passages, cited, one invented."""
    sentences = []
    for citation in citations:
        for sentence in passage_sentences(citation.text):
            if len(sentence.split()) >= 6 and len(sentences) < SENTENCES - 1:
                words = sentence.rstrip(".").split()
                sentences.append(f"{' '.join(words[: max(6, len(words) * 4 // 5)])} [{citation.number}].")
                break
    sentences.append("Penguins migrate across the Sahara desert every winter [1].")
    return " ".join(sentences)


def median_ms(step, runs: int) -> float:
    """The median wall time of step() in milliseconds."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        step()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args(argv)
    embedder = load_embedder("all-MiniLM-L6-v2")
    chunks = chunk_texts(CORPORA["guide"], embedder)[:PASSAGES]
    citations = [Citation(i + 1, doc, "", text, 0.0, {}) for i, (doc, text) in enumerate(chunks)]
    answer = answer_over(citations)
    sources = prepare_sources(citations, embedder)
    checks = check_answer(answer, sources, embedder)
    prepare = median_ms(lambda: prepare_sources(citations, embedder), args.runs)
    check = median_ms(lambda: check_answer(answer, sources, embedder), args.runs)
    texts = [c.text for c in checks]
    embedding = median_ms(lambda: embedder.embed_on_one_thread(texts), args.runs)
    result = {"passages": len(citations), "passage_sentences": len(sources.sentences), "answer_sentences": len(checks),
              "prepare_ms_p50": round(prepare, 1), "check_ms_p50": round(check, 1),
              "of_which_embedding_ms_p50": round(embedding, 1),
              "check_share_of_target": round(check / TARGET_MS, 2), "supported": sum(c.supported for c in checks)}
    print(f"{len(citations)} passages ({len(sources.sentences)} sentences), {len(checks)} answer sentences: "
          f"passages embedded in {prepare:.1f} ms (while the model writes), check after the answer {check:.1f} ms "
          f"({check / TARGET_MS:.2f} of the {TARGET_MS:.0f} ms target), of which embedding the answer's sentences "
          f"{embedding:.1f} ms")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
