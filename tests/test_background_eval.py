"""The Models page's background evaluation: only the process that was started is ever signalled."""
from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from rag.core.settings import Settings
from rag.evaluation import background


@pytest.fixture
def sleeper():
    """A process that sleeps for a minute, ended after the test."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


def write_state(settings: Settings, pid: int, identity: str | None) -> None:
    """A state file and a progress file as start() and a running evaluation leave them (identity None: an old file)."""
    folder = background.evaluations_dir(settings)
    folder.mkdir(parents=True)
    progress = folder / "progress.json"
    progress.write_text(json.dumps({"state": "running", "done": 1, "total": 3}))
    state = {"pid": pid, "out": str(folder / "truth-answers.jsonl"), "progress": str(progress),
             "log": str(folder / "background.log"), "started_at": 0.0}
    (folder / background.STATE_FILE).write_text(json.dumps(state | ({"identity": identity} if identity else {})))


@pytest.mark.parametrize("identity", ["another-boot:12345", None], ids=["recorded-before-a-reboot", "not-recorded"])
def test_a_state_file_whose_pid_is_now_another_process_is_stale_and_that_process_is_not_signalled(
    tmp_path, sleeper, identity
):
    settings = Settings(store_dir=tmp_path / "store")
    write_state(settings, sleeper.pid, identity)

    job = background.current_job(settings)
    background.stop(job)

    assert job.state == "failed"
    with pytest.raises(subprocess.TimeoutExpired):
        sleeper.wait(timeout=1)


def test_stop_interrupts_the_process_that_was_started_as_ctrl_c_would(tmp_path, sleeper):
    settings = Settings(store_dir=tmp_path / "store")
    write_state(settings, sleeper.pid, background.process_identity(sleeper.pid))

    job = background.current_job(settings)
    background.stop(job)

    assert job.state == "running"
    assert sleeper.wait(timeout=10) == -signal.SIGINT
