"""The model catalogue: which models can chat, the default, and what a user needs to pick one (size, quantisation,
trained context, whether it is loaded, whether it fits this machine), from any box through the LLM-box protocol."""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

from rag.core.errors import LLMError
from rag.llm.backend import Backend

GB = 1e9
RUNTIME_OVERHEAD = 1.2  # weights plus the runtime and an 8k context's cache, roughly, of a model's size on disk
GPU_QUERY_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class ModelFacts:
    """One installed chat model as its box describes it (the list, what is loaded now, the model's info)."""

    name: str
    parameter_size: str
    quantization: str
    size: int | None
    loaded: bool = False
    size_vram: int | None = None
    loaded_size: int | None = None
    context_length: int | None = None
    box: str = ""


@dataclass(frozen=True)
class Machine:
    """Memory this machine has: RAM total and free, and each visible GPU's total and free memory."""

    ram_total: int
    ram_available: int
    gpus: tuple[tuple[str, int, int], ...] = ()


def chat_models(llm: Backend) -> list[str]:
    """The installed models that can chat, sorted (at most RAG_MAX_MODELS listed)."""
    return [entry.name for entry in llm.list_models() if entry.can_chat]


def default_model(models: list[str], configured: str, llm: Backend) -> str:
    """The configured model when installed, else the first installed one, else the configured name."""
    wanted = llm.canonical(configured)
    if wanted in models or not models:
        return wanted
    return models[0]


def model_facts(llm: Backend) -> list[ModelFacts]:
    """The installed chat models, sorted by name, with what is loaded now and each one's trained context.

    The list must answer; what is loaded and each model's context are extras, left out when the box cannot say.
    """
    entries = [entry for entry in llm.list_models() if entry.can_chat]
    try:
        loaded = {model.name: model for model in llm.loaded()}
    except LLMError:
        loaded = {}
    facts = []
    for entry in entries:
        running = loaded.get(entry.name)
        try:
            context = llm.model_info(entry.name).context_length
        except LLMError:
            context = None
        facts.append(ModelFacts(
            entry.name, entry.parameters or "?", entry.quantization or "?", entry.size, running is not None,
            running.size_in_gpu if running else None, running.size if running else None, context, entry.box,
        ))
    return facts


def label(facts: ModelFacts) -> str:
    """The dropdown's text for a model: name, its box (when several), parameters, quantisation, size, loaded now."""
    parts = [facts.name] + ([facts.box] if facts.box else [])
    parts += [part for part in (facts.parameter_size, facts.quantization) if part != "?"]
    parts += [f"{facts.size / GB:.1f} GB"] if facts.size else []
    return " · ".join(parts + (["loaded"] if facts.loaded else []))


def context_text(facts: ModelFacts) -> str:
    """The trained context as words."""
    return f"trained context {facts.context_length:,} tokens" if facts.context_length else "trained context unknown"


def this_machine() -> Machine:
    """RAM from the operating system and GPU memory from nvidia-smi when it is installed."""
    page = os.sysconf("SC_PAGE_SIZE")
    total = os.sysconf("SC_PHYS_PAGES") * page
    available = total
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except OSError:
        pass
    return Machine(total, available, nvidia_gpus())


def nvidia_gpus() -> tuple[tuple[str, int, int], ...]:
    """(name, total bytes, free bytes) of each NVIDIA GPU, or nothing when none is visible."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return ()
    try:
        out = subprocess.run([tool, "--query-gpu=name,memory.total,memory.free", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=GPU_QUERY_TIMEOUT_S, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    gpus = []
    for line in out.strip().splitlines():
        name, total, free = (part.strip() for part in line.rsplit(",", 2))
        if total.isdigit() and free.isdigit():
            gpus.append((name, int(total) * 2**20, int(free) * 2**20))
    return tuple(gpus)


def fit(facts: ModelFacts, machine: Machine) -> tuple[str, str]:
    """Whether the model fits this machine ("GPU", "CPU", "tight" or "no") and why, in words."""
    if facts.loaded and facts.loaded_size:
        share = (facts.size_vram or 0) / facts.loaded_size
        where = "GPU" if share >= 0.99 else "CPU" if share <= 0.01 else "GPU"
        return where, f"loaded now: {facts.loaded_size / GB:.1f} GB, {share:.0%} of it in GPU memory"
    if not facts.size:
        return "?", "its box does not say how large it is"
    need = facts.size * RUNTIME_OVERHEAD
    needs = f"needs about {need / GB:.1f} GB"
    best_gpu = max(machine.gpus, key=lambda g: g[2], default=None)
    if best_gpu and best_gpu[2] >= need:
        return "GPU", f"{needs}; {best_gpu[0]} has {best_gpu[2] / GB:.1f} GB free"
    gpu_note = f" (the GPU has only {best_gpu[2] / GB:.1f} GB free)" if best_gpu else " (no GPU visible)"
    if machine.ram_available >= need:
        return "CPU", f"{needs}; {machine.ram_available / GB:.1f} GB of RAM free{gpu_note}"
    if machine.ram_total >= need:
        return "tight", (f"{needs}; only {machine.ram_available / GB:.1f} GB of {machine.ram_total / GB:.1f} GB RAM "
                         f"free now: close other programs")
    return "no", f"{needs}; this machine has {machine.ram_total / GB:.1f} GB of RAM{gpu_note}"


def dropdown_labels(facts: list[ModelFacts]) -> dict[str, tuple[str, str]]:
    """For each chat model, its dropdown text and its trained context in words."""
    return {f.name: (label(f), context_text(f)) for f in facts}
