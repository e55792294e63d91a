"""What can be checked of the container files without a Docker daemon: they parse, name files that exist, install
the same requirements, and publish nothing beyond the host's loopback."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def compose(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def test_the_image_installs_the_requirements_with_the_cpu_torch_and_serves_the_page_on_port_8501():
    dockerfile = (ROOT / "Dockerfile").read_text()
    pinned = re.search(r"^torch==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M).group(1)

    assert f"--index-url https://download.pytorch.org/whl/cpu torch=={pinned}" in dockerfile
    assert "COPY requirements.txt ." in dockerfile and "pip install -r requirements.txt" in dockerfile
    assert 'streamlit run app.py --server.address 0.0.0.0 --server.port 8501' in dockerfile
    assert "USER reader" in dockerfile


def test_compose_runs_the_app_with_ollama_and_chroma_as_profiles_every_address_from_the_environment():
    services = compose("compose.yaml")["services"]

    assert set(services) == {"app", "ollama", "chroma"}
    assert "profiles" not in services["app"] and services["ollama"]["profiles"] == ["ollama"]
    assert services["chroma"]["profiles"] == ["chroma"]
    environment = services["app"]["environment"]
    for variable in ("OLLAMA_HOST", "RAG_OPENAI_URL", "RAG_OPENAI_API_KEY", "RAG_CHROMA_URL"):
        assert environment[variable].startswith(f"${{{variable}:-"), variable
    assert (ROOT / services["app"]["build"] / "Dockerfile").is_file()
    assert services["chroma"]["command"][:2] == ["chroma", "run"]


def test_every_published_port_is_on_the_hosts_loopback_only():
    for name, service in compose("compose.yaml")["services"].items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)


def test_the_gpu_override_reserves_nvidia_gpus_for_ollama():
    [device] = compose("compose.gpu.yaml")["services"]["ollama"]["deploy"]["resources"]["reservations"]["devices"]

    assert (device["driver"], device["count"], device["capabilities"]) == ("nvidia", "all", ["gpu"])


def test_the_image_leaves_out_the_local_state():
    ignored = (ROOT / ".dockerignore").read_text().split()

    assert {".git", ".venv", "store", ".env"} <= set(ignored)
