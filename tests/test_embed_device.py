"""Where the embedder runs: RAG_EMBED_DEVICE=auto picks a GPU that torch sees, else the CPU; asking for a GPU that
is not there is a bad setting in one line, not a crash."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rag.core.errors import SettingsError
from rag.search.embeddings import CPU_BATCH, pick_device

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("requested", "cuda", "mps", "chosen"), [
    ("auto", False, False, "cpu"), ("auto", True, False, "cuda"), ("auto", False, True, "mps"), ("auto", True, True, "cuda"),
    ("cpu", True, True, "cpu"), ("cuda", True, False, "cuda"), ("mps", False, True, "mps"),
])
def test_the_device_is_the_one_asked_for_or_a_gpu_torch_sees(requested, cuda, mps, chosen):
    assert pick_device(requested, cuda, mps) == chosen


@pytest.mark.parametrize("requested", ["cuda", "mps"])
def test_a_gpu_torch_does_not_see_is_a_setting_to_fix(requested):
    with pytest.raises(SettingsError, match=f"RAG_EMBED_DEVICE={requested} but torch sees no .* Set RAG_EMBED_DEVICE=auto"):
        pick_device(requested, False, False)


def test_on_this_cpu_machine_the_embedder_runs_on_the_cpu_in_float32(embedder):
    assert (embedder.device, embedder.batch_size) == ("cpu", CPU_BATCH)
    vector = embedder.embed(["Otters hold hands while they sleep."])[0]
    assert len(vector) == 384 and abs(sum(v * v for v in vector) - 1.0) < 1e-5


@pytest.mark.parametrize(("device", "message"), [
    ("cuda", "error: RAG_EMBED_DEVICE=cuda but torch sees no CUDA GPU on this machine."),
    ("gpu", "error: RAG_EMBED_DEVICE='gpu' is not valid: Input should be 'auto', 'cpu', 'cuda' or 'mps'."),
])
def test_ingest_with_a_device_that_is_not_there_is_exit_2_in_one_line(tmp_path, device, message):
    (tmp_path / "notes.md").write_text("# Notes\n\nOtters hold hands while they sleep.\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")} | {
        "PYTHONPATH": str(REPO), "RAG_STORE_DIR": str(tmp_path / "store"), "RAG_EMBED_DEVICE": device}

    done = subprocess.run([sys.executable, "-m", "ingest", str(tmp_path / "notes.md")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)

    assert done.returncode == 2
    assert done.stderr.startswith(message) and len(done.stderr.splitlines()) == 1
