"""The answer evaluation started from the Models page: a separate process whose state lives in files.

`python -m rag.eval ... --answers --progress FILE` runs apart from the app, so chatting never waits for it and a
page reload finds it again through <store>/evaluations/background.json (its pid, progress file, results, log).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rag.core.errors import RagError
from rag.core.settings import Settings

STATE_FILE = "background.json"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def evaluations_dir(settings: Settings) -> Path:
    """Where evaluation results live: under the store folder."""
    return settings.store_dir / "evaluations"


@dataclass(frozen=True)
class Job:
    """A background evaluation: its process, files, and the last progress it wrote."""

    pid: int
    out: Path
    progress_file: Path
    log: Path
    started_at: float
    progress: dict

    @property
    def state(self) -> str:
        """running, finished, interrupted, or failed (the process ended without saying it finished)."""
        state = self.progress.get("state", "starting")
        if state in ("running", "starting") and not alive(self.pid):
            return "failed"
        return "running" if state == "starting" else state

    @property
    def fraction(self) -> float:
        total = self.progress.get("total") or 0
        return min(1.0, self.progress.get("done", 0) / total) if total else 0.0

    def last_error(self) -> str:
        """The process's last `error:` line, if it wrote one."""
        try:
            lines = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        errors = [line for line in lines if line.startswith("error:")]
        return errors[-1] if errors else (lines[-1] if lines else "")


def alive(pid: int) -> bool:
    """True while the process runs (a finished child that was not yet reaped counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True


def command(truth: Path, models: list[str], sample: int, out: Path, progress: Path, columns: dict) -> list[str]:
    """The evaluation's command line."""
    argv = [sys.executable, "-m", "rag.eval", str(truth), "--answers", "--models", ",".join(models),
            "--sample", str(sample), "--out", str(out), "--progress", str(progress)]
    for option, value in columns.items():
        if value:
            argv += [f"--{option.replace('_', '-')}", value]
    return argv


def start(settings: Settings, truth: Path, models: list[str], sample: int, columns: dict) -> Job:
    """Start the evaluation in its own process, unless one is running; remember it for later page loads."""
    current = current_job(settings)
    if current is not None and current.state == "running":
        raise RagError("An evaluation is already running; wait for it to finish or stop it.")
    if not truth.is_file():
        raise RagError(f"There is no questions file at {truth}. Give the path of a CSV with labelled questions.")
    if not models:
        raise RagError("Choose at least one model to evaluate.")
    folder = evaluations_dir(settings).resolve()
    truth = truth.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    out, progress, log = folder / f"{truth.stem}-answers.jsonl", folder / "progress.json", folder / "background.log"
    progress.unlink(missing_ok=True)
    with log.open("w", encoding="utf-8") as handle:
        process = subprocess.Popen(command(truth, models, sample, out, progress, columns), stdout=handle,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, cwd=PROJECT_ROOT,
                                   env={**os.environ, "RAG_STORE_DIR": str(settings.store_dir.resolve())})
    threading.Thread(target=process.wait, name="reap-evaluation", daemon=True).start()
    state = {"pid": process.pid, "out": str(out), "progress": str(progress), "log": str(log), "started_at": time.time()}
    (folder / STATE_FILE).write_text(json.dumps(state))
    return job_from(state)


def job_from(state: dict) -> Job:
    """A Job from its saved state and its progress file."""
    progress_file = Path(state["progress"])
    try:
        progress = json.loads(progress_file.read_text())
    except (OSError, ValueError):
        progress = {}
    return Job(state["pid"], Path(state["out"]), progress_file, Path(state["log"]), state["started_at"], progress)


def current_job(settings: Settings) -> Job | None:
    """The last evaluation started from the page, or None."""
    try:
        state = json.loads((evaluations_dir(settings) / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return job_from(state)


def stop(job: Job) -> None:
    """Interrupt the evaluation as Ctrl-C would: what is done is kept and the same run can resume."""
    if job.state == "running":
        os.kill(job.pid, signal.SIGINT)
