"""The answer evaluation started from the Models page: a separate process whose state lives in files.

`python -m rag.eval ... --answers --progress FILE` runs apart from the app, so chatting never waits for it and a
page reload finds it again through <store>/evaluations/background.json (its pid and who that process is, progress
file, results, log).
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
from rag.evaluation.results import default_results_file, evaluations_dir

STATE_FILE = "background.json"
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Job:
    """A background evaluation: its process, files, and the last progress it wrote."""

    pid: int
    identity: str | None
    out: Path
    progress_file: Path
    log: Path
    started_at: float
    progress: dict

    @property
    def state(self) -> str:
        """running, finished, interrupted, or failed (the process ended without saying it finished)."""
        state = self.progress.get("state", "starting")
        if state in ("running", "starting") and not self.running():
            return "failed"
        return "running" if state == "starting" else state

    @property
    def fraction(self) -> float:
        total = self.progress.get("total") or 0
        return min(1.0, self.progress.get("done", 0) / total) if total else 0.0

    def running(self) -> bool:
        """True while the process that was started runs: its pid is alive and still that process, not one that got
        the pid later (after a reboot, say); a state file without an identity is stale."""
        return self.identity is not None and process_identity(self.pid) == self.identity

    def last_error(self) -> str:
        """The process's last `error:` line, if it wrote one."""
        try:
            lines = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        errors = [line for line in lines if line.startswith("error:")]
        return errors[-1] if errors else (lines[-1] if lines else "")


def process_identity(pid: int) -> str | None:
    """The running process with this pid as its boot and start time (from /proc), which no other process shares;
    None when none runs (a finished child that was not yet reaped counts as ended) or there is no /proc to ask."""
    try:
        boot = BOOT_ID.read_text(encoding="ascii").strip()
        fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    if fields[0] in (b"Z", b"X"):
        return None
    return f"{boot}:{int(fields[19])}"  # field 22 of stat: the start time, in clock ticks since boot


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
    out, progress, log = default_results_file(settings, truth).resolve(), folder / "progress.json", folder / "background.log"
    progress.unlink(missing_ok=True)
    with log.open("w", encoding="utf-8") as handle:
        process = subprocess.Popen(command(truth, models, sample, out, progress, columns), stdout=handle,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, cwd=PROJECT_ROOT,
                                   env={**os.environ, "RAG_STORE_DIR": str(settings.store_dir.resolve())})
    identity = process_identity(process.pid)  # before it can be reaped
    threading.Thread(target=process.wait, name="reap-evaluation", daemon=True).start()
    state = {"pid": process.pid, "identity": identity, "out": str(out), "progress": str(progress), "log": str(log),
             "started_at": time.time()}
    (folder / STATE_FILE).write_text(json.dumps(state))
    return job_from(state)


def job_from(state: dict) -> Job:
    """A Job from its saved state and its progress file."""
    progress_file = Path(state["progress"])
    try:
        progress = json.loads(progress_file.read_text())
    except (OSError, ValueError):
        progress = {}
    return Job(state["pid"], state.get("identity"), Path(state["out"]), progress_file, Path(state["log"]),
               state["started_at"], progress)


def current_job(settings: Settings) -> Job | None:
    """The last evaluation started from the page, or None."""
    try:
        state = json.loads((evaluations_dir(settings) / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return job_from(state)


def stop(job: Job) -> None:
    """Interrupt the evaluation as Ctrl-C would: what is done is kept and the same run can resume. Only the process
    that was started is signalled: its identity is checked through a pidfd, which no later process can take over."""
    if job.state != "running":
        return
    try:
        handle = os.pidfd_open(job.pid)
    except OSError:  # it ended meanwhile
        return
    try:
        if process_identity(job.pid) == job.identity:
            signal.pidfd_send_signal(handle, signal.SIGINT)
    except ProcessLookupError:  # it ended after the check
        pass
    finally:
        os.close(handle)
