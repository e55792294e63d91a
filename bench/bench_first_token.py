"""Time to first token and to the last piece added by our code, retrieval excluded, against stand-in servers that
answer at once: Ollama (through the official `ollama` client) and an OpenAI-compatible server (over httpx).

Our path: prepare_turn (context lookup, token budget, prompt) + stream_answer, through the backend over HTTP. The
baseline for each box is a bare client sending the same messages (the `ollama` client; plain httpx reading the
server-sent events). Run from the repo root:

    python -m bench.bench_first_token [--runs 300]

Prints the figures, then one JSON line. Target: our path <= 20 ms at p50 to the first token, on either box.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import httpx
import ollama

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag.chat.turn import chat_options, prepare_turn, stream_answer  # noqa: E402
from rag.core.settings import Settings  # noqa: E402
from rag.llm import ollama as ollama_box, openai_compatible  # noqa: E402
from rag.llm.boxes import open_backend  # noqa: E402
from rag.search.retrieval import RetrievedChunk, RetrievedDoc  # noqa: E402
from tests.ollama_standin import OllamaStandin  # noqa: E402
from tests.openai_standin import OpenAIStandin  # noqa: E402
from tests.retrieval_fakes import make  # noqa: E402

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "ingest" / "sample"
TARGET_MS = 20.0
QUESTION = "How do I add my own documents?"


def guide_docs(copies: int = 1) -> list[RetrievedDoc]:
    """The sample guide's sections as retrieved documents, each with up to two chunks (paragraphs)."""
    docs = []
    for copy in range(copies):
        for path in sorted(SAMPLE_DIR.glob("*.md")):
            for n, section in enumerate(path.read_text().split("\n## ")[1:]):
                heading, _, body = section.partition("\n")
                paragraphs = [p for p in body.split("\n\n") if p.strip()][:2]
                doc_id = f"{copy}/{path.name}#{n}"
                meta = {"doc_id": doc_id, "title": path.stem, "headings": heading}
                chunks = [make(RetrievedChunk, id=f"{doc_id}:{i}", text=p, metadata=meta, score=0.5) for i, p in enumerate(paragraphs)]
                docs.append(make(RetrievedDoc, doc_id=doc_id, title=path.stem, score=0.5, chunks=chunks))
    return docs


class FixedRetriever:
    """Returns the same documents at once: retrieval is not what this measures."""

    def __init__(self, docs: list[RetrievedDoc]):
        self.docs = docs

    def search(self, query: str, k: int, where: dict | None = None) -> list[RetrievedDoc]:
        return self.docs[:k]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ours(settings: Settings, retriever: FixedRetriever, k: int, model: str, llm=None) -> tuple[float, float, int, int]:
    """ms from the start of prepare_turn to the first piece and to the last, less the retrieval; prompt size, chunks."""
    started = time.perf_counter()
    box = llm or open_backend(settings)
    turn = prepare_turn(QUESTION, settings, retriever, model=model, k=k, llm=box)
    stream = stream_answer(turn, box, settings)
    next(stream)
    first = (time.perf_counter() - started) * 1000 - turn.timings.retrieve_ms
    for _ in stream:
        pass
    last = (time.perf_counter() - started) * 1000 - turn.timings.retrieve_ms
    assert turn.error is None, turn.error
    return first, last, turn.prompt.estimated_tokens, len(turn.citations)


def bare_ollama(url: str):
    """A bare `ollama` client's request: ms to its first content chunk and to the end of the stream."""
    client = ollama.Client(host=url)

    def ask(messages: list[dict], options) -> tuple[float, float]:
        started, first = time.perf_counter(), None
        wire = {"num_ctx": options.context, "temperature": options.temperature, "num_predict": options.max_tokens}
        for chunk in client.chat("qwen2.5:3b", messages=messages, options=wire, keep_alive="30m", stream=True):
            if chunk.message.content and first is None:
                first = (time.perf_counter() - started) * 1000
        return first, (time.perf_counter() - started) * 1000

    return ask


def bare_openai(url: str):
    """A bare httpx request to /v1/chat/completions: ms to its first content event and to the end of the stream."""
    client = httpx.Client()

    def ask(messages: list[dict], options) -> tuple[float, float]:
        started, first = time.perf_counter(), None
        body = {"model": MODELS["openai"], "messages": messages, "stream": True, "temperature": options.temperature,
                "max_tokens": options.max_tokens, "stream_options": {"include_usage": True}}
        with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
            for line in response.iter_lines():
                if line.startswith("data:") and '"content"' in line and first is None:
                    first = (time.perf_counter() - started) * 1000
        return first, (time.perf_counter() - started) * 1000

    return ask


MODELS = {"ollama": "qwen2.5:3b", "openai": "Qwen/Qwen2.5-3B-Instruct"}


def forget_all() -> None:
    """Drop both backends' per-process model facts, as a new process would start."""
    ollama_box.forget_model_info()
    openai_compatible.forget_model_info()


@contextlib.contextmanager
def served(kind: str):
    """A stand-in server of that kind, the settings that reach it, and the bare client's request."""
    if kind == "ollama":
        with OllamaStandin() as standin:
            yield Settings(ollama_host=standin.host, store_dir=Path("unused")), bare_ollama(standin.url)
    else:
        with OpenAIStandin() as standin:
            settings = Settings(ollama_host=f"127.0.0.1:{standin.port}", openai_url=standin.url, store_dir=Path("unused"))
            yield settings, bare_openai(standin.url)


def measure(kind: str, runs: int, k: int, copies: int) -> dict:
    """p50/p95 of our path warm and cold, the bare client, and the per-run difference, to the first piece and the last."""
    with served(kind) as (settings, bare):
        model = MODELS[kind] if kind == "ollama" else f"openai:{MODELS[kind]}"
        retriever = FixedRetriever(guide_docs(copies))
        llm = open_backend(settings)
        firsts, lasts, base_first, base_last, added_first, added_last, cold = [], [], [], [], [], [], []
        tokens = chunks = 0
        turn = prepare_turn(QUESTION, settings, retriever, model=model, k=k, llm=llm)
        options = chat_options(turn, settings)
        for _ in range(10):  # connections set up, caches filled
            ours(settings, retriever, k, model, llm)
            bare(turn.prompt.messages, options)
        for _ in range(runs):
            first, last, tokens, chunks = ours(settings, retriever, k, model, llm)
            bare_first_ms, bare_last_ms = bare(turn.prompt.messages, options)
            firsts.append(first), lasts.append(last), base_first.append(bare_first_ms), base_last.append(bare_last_ms)
            added_first.append(first - bare_first_ms), added_last.append(last - bare_last_ms)
        for _ in range(max(20, runs // 5)):
            forget_all()
            cold.append(ours(settings, retriever, k, model)[0])
    p50 = statistics.median
    return {
        "box": kind, "k": k, "prompt_tokens_estimated": tokens, "chunks_sent": chunks, "runs": runs,
        "ours_first_p50_ms": round(p50(firsts), 2), "ours_first_p95_ms": round(percentile(firsts, 0.95), 2),
        "bare_first_p50_ms": round(p50(base_first), 2),
        "added_first_p50_ms": round(p50(added_first), 2), "added_first_p95_ms": round(percentile(added_first, 0.95), 2),
        "ours_total_p50_ms": round(p50(lasts), 2), "bare_total_p50_ms": round(p50(base_last), 2),
        "added_total_p50_ms": round(p50(added_last), 2),
        "ours_cold_p50_ms": round(p50(cold), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    cases = [measure(kind, runs, k, copies) for kind in ("ollama", "openai")
             for runs, k, copies in ((args.runs, 5, 1), (args.runs // 3, 50, 8))]
    print(f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs, Python {platform.python_version()}")
    for case in cases:
        print(
            f"{case['box']:>6} k={case['k']:>2} ({case['chunks_sent']} chunks, ~{case['prompt_tokens_estimated']} tokens): "
            f"first token: ours p50 {case['ours_first_p50_ms']:.2f} ms (p95 {case['ours_first_p95_ms']:.2f}), bare "
            f"{case['bare_first_p50_ms']:.2f} ms, added p50 {case['added_first_p50_ms']:.2f} ms "
            f"(p95 {case['added_first_p95_ms']:.2f}); whole answer: ours {case['ours_total_p50_ms']:.2f} ms, bare "
            f"{case['bare_total_p50_ms']:.2f} ms, added {case['added_total_p50_ms']:.2f} ms; new backend and model "
            f"lookup each time p50 {case['ours_cold_p50_ms']:.2f} ms"
        )
    typical = [case for case in cases if case["k"] == 5]
    meets = all(case["ours_first_p50_ms"] <= TARGET_MS for case in typical)
    for case in typical:
        print(f"{case['box']}: our path {case['ours_first_p50_ms']:.2f} ms to the first token "
              f"({'meets' if case['ours_first_p50_ms'] <= TARGET_MS else 'MISSES'} <= {TARGET_MS:.0f} ms at p50)")
    print(json.dumps({"target_ms": TARGET_MS, "meets_target": meets, "cases": cases}))


if __name__ == "__main__":
    main()
