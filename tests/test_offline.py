"""Nothing leaves the machine: ingest, ask and the app's first page run with every non-loopback connection refused."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GUARD = Path(__file__).resolve().parent / "netguard"
HUB_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


@pytest.fixture
def guarded_env(tmp_path, standin):
    """An environment whose Python processes may only connect to loopback, logging every other attempt."""
    env = {k: v for k, v in os.environ.items() if k not in HUB_VARIABLES and not k.startswith("RAG_")}
    env.update(
        PYTHONPATH=f"{GUARD}{os.pathsep}{ROOT}",
        NETGUARD_LOG=str(tmp_path / "blocked.log"),
        RAG_STORE_DIR=str(tmp_path / "store"),
        OLLAMA_HOST=standin.host,
    )
    return env


def run(args, env, cwd):
    return subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_guard_really_blocks_outbound_connections(guarded_env, tmp_path):
    done = run(["-c", "import socket; socket.socket().connect(('93.184.216.34', 80))"], guarded_env, tmp_path)
    assert done.returncode != 0
    assert "network blocked by test" in done.stderr
    assert (tmp_path / "blocked.log").read_text() == "connect 93.184.216.34\n"


def test_ingest_and_ask_work_with_no_network(guarded_env, tmp_path):
    ingested = run(["-m", "ingest"], guarded_env, tmp_path)
    assert ingested.returncode == 0, ingested.stderr
    asked = run(["-m", "rag.ask", "--json", "How do I add my own documents?"], guarded_env, tmp_path)
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    assert answer["error"] is None and answer["answer"] and answer["sources"]
    assert not (tmp_path / "blocked.log").exists()


def test_app_first_page_renders_with_no_network(guarded_env, tmp_path):
    assert run(["-m", "ingest"], guarded_env, tmp_path).returncode == 0
    script = (
        "from streamlit.testing.v1 import AppTest\n"
        f"at = AppTest.from_file({str(ROOT / 'app.py')!r}, default_timeout=120).run()\n"
        "assert not at.exception, at.exception\n"
        "print('rendered', len(at.main.children))\n"
    )
    done = run(["-c", script], guarded_env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("rendered")
    assert not (tmp_path / "blocked.log").exists()
