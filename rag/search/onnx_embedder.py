"""The embedder run by ONNX Runtime and the `tokenizers` package on the CPU (float32, or int8 weights), without
importing torch or sentence-transformers once the export is cached; mean pooling and normalisation as
sentence-transformers does them."""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import numpy as np

from rag.core.errors import SettingsError
from rag.search.onnx_export import INPUTS, exported_model

BATCH = 32


def read_json(path: Path) -> dict:
    """A JSON file of the model's folder, or {} when it has none."""
    return json.loads(path.read_text()) if path.is_file() else {}


def check_mean_pooling(model_dir: Path) -> None:
    """SettingsError unless the model pools by the mean of its tokens (the only pooling this runtime does)."""
    pooling = read_json(model_dir / "1_Pooling" / "config.json")
    if not pooling.get("pooling_mode_mean_tokens"):
        raise SettingsError(
            f"RAG_EMBED_RUNTIME=onnx runs models that pool by the mean of their tokens, and {str(model_dir)!r} does not "
            "say it does (1_Pooling/config.json). Set RAG_EMBED_RUNTIME=torch for this model."
        )


def session_options(threads: int):
    """One session's options: a fixed number of threads that sleep rather than spin when idle, ops run in order."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


class OnnxEmbedder:
    """Turns texts into unit-length vectors with ONNX Runtime, batching texts of similar length together."""

    device = "cpu"
    batch_size = BATCH

    def __init__(self, name: str, model_dir: Path, int8: bool, cache: Path | None = None):
        from tokenizers import Tokenizer

        check_mean_pooling(model_dir)
        model_file = exported_model(model_dir, int8, cache)
        self.name, self.runtime, self.variant = name, "onnx int8" if int8 else "onnx float32", "int8" if int8 else "float32"
        self.max_tokens = int(read_json(model_dir / "sentence_bert_config.json").get("max_seq_length", 512))
        self.dimension = int(read_json(model_dir / "config.json")["hidden_size"])
        self.word_pieces = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.word_pieces.no_truncation()
        self.word_pieces.no_padding()
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(self.max_tokens)
        self.tokenizer.no_padding()
        self.model_file = model_file
        self.query_session = self.new_session(1)  # one question at a time: more threads only contend for the cores

    @functools.cached_property
    def session(self):
        """The session for batches: one thread per core (made on first use: a process that only asks never makes it)."""
        cores = os.cpu_count() or 1
        return self.query_session if cores == 1 else self.new_session(cores)

    def new_session(self, threads: int):
        """An ONNX Runtime session of the model on the CPU."""
        import onnxruntime

        return onnxruntime.InferenceSession(str(self.model_file), session_options(threads), providers=["CPUExecutionProvider"])

    def describe(self) -> str:
        """The device, runtime and batch size, for the ingest summary."""
        return f"{self.device} ({self.runtime}), batch {self.batch_size}"

    def embed(self, texts: list[str], batch_size: int | None = None) -> list[list[float]]:
        """Embed texts as normalised float32 vectors, in batches of texts of similar length."""
        return self.vectors(texts, self.session, batch_size or self.batch_size).tolist()

    def embed_on_one_thread(self, texts: list[str]) -> list[list[float]]:
        """Embed short texts (an answer's sentences) on the one-thread session, as questions are."""
        return self.vectors(texts, self.query_session, self.batch_size).tolist() if texts else []

    def embed_query(self, text: str) -> list[float]:
        """Embed one question on one thread: for a single short text, more threads only contend for the cores."""
        return self.vectors([text], self.query_session, 1)[0].tolist()

    def vectors(self, texts: list[str], session, batch_size: int) -> np.ndarray:
        """The texts' vectors as an array, in the order of the texts."""
        encodings = self.tokenizer.encode_batch(texts)
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        result = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            width = max(len(encodings[i].ids) for i in rows)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros_like(ids)
            for row, index in enumerate(rows):
                ids[row, :len(encodings[index].ids)] = encodings[index].ids
                mask[row, :len(encodings[index].ids)] = 1
            hidden = session.run(None, dict(zip(INPUTS, (ids, mask, np.zeros_like(ids)))))[0]
            summed = np.einsum("btd,bt->bd", hidden, mask.astype(np.float32))
            pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
            result[rows] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return result

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character spans of the word pieces in text, without the special tokens."""
        return self.word_pieces.encode(text, add_special_tokens=False).offsets
