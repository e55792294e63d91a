"""Shared fixtures: the packaged embedder, a real Chroma store under tmp_path, the stand-in Ollama."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from ingest.pipeline import IngestOptions, ingest
from rag.search.embeddings import load_embedder
from rag.llm.ollama import forget_model_info
from rag.core.settings import Settings
from tests.ollama_standin import OllamaStandin

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "ingest" / "sample"
CHROMIUM = "/usr/bin/chromium"
# Read once at import, before isolated_env clears every RAG_ variable for each test. CI (.ci/run) sets it, so that a
# browser test that cannot run fails instead of being skipped.
REQUIRE_BROWSER = os.environ.get("RAG_REQUIRE_BROWSER") == "1"


def browser_missing(what: str) -> None:
    """Skip the browser tests for lack of what; fail them instead under RAG_REQUIRE_BROWSER=1."""
    if REQUIRE_BROWSER:
        pytest.fail(f"{what}, and RAG_REQUIRE_BROWSER=1 requires the browser tests to run", pytrace=False)
    pytest.skip(what, allow_module_level=True)


def import_playwright():
    """playwright.sync_api, for a browser test module (its import skips or fails the module when it is missing)."""
    try:
        import playwright.sync_api
    except ImportError as exc:
        browser_missing(f"Playwright is not installed ({exc})")
    return playwright.sync_api


def pytest_runtest_setup(item):
    """A test marked browser needs Debian's chromium: without it, skipped (failed under RAG_REQUIRE_BROWSER=1)."""
    if item.get_closest_marker("browser") and not Path(CHROMIUM).exists():
        browser_missing("Debian's chromium is not installed: apt-get install -y chromium")


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    """No RAG_ or OLLAMA_ variable or .env from the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("RAG_") or name == "OLLAMA_HOST":
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # a Chroma server's saved chunk index goes here
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def fresh_model_info():
    """Each test learns models' context lengths from its own stand-in, not from an earlier test's."""
    forget_model_info()
    yield
    forget_model_info()


@pytest.fixture(scope="session")
def embedder():
    """The real packaged all-MiniLM-L6-v2, loaded once."""
    return load_embedder("all-MiniLM-L6-v2")


@pytest.fixture
def standin():
    """A running stand-in Ollama server."""
    with OllamaStandin() as server:
        yield server


@pytest.fixture
def settings(tmp_path, standin, monkeypatch) -> Settings:
    """Settings for a fresh store under tmp_path that talk to the stand-in; also exported to the environment."""
    store = tmp_path / "store"
    monkeypatch.setenv("RAG_STORE_DIR", str(store))
    monkeypatch.setenv("OLLAMA_HOST", standin.host)
    return Settings()


@pytest.fixture
def sample_store(settings, embedder) -> Settings:
    """The settings of a store holding the bundled user guide."""
    ingest([SAMPLE_DIR], settings, embedder, IngestOptions())
    return settings


@pytest.fixture(scope="session")
def guide_store(tmp_path_factory, embedder) -> Path:
    """The bundled guide ingested once for the whole run, for tests that only read it."""
    settings = Settings(store_dir=tmp_path_factory.mktemp("guide") / "store")
    ingest([SAMPLE_DIR], settings, embedder, IngestOptions())
    return settings.store_dir
