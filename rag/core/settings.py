"""All configuration: environment variables prefixed RAG_, a .env file, and OLLAMA_HOST."""
from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rag.core.errors import SettingsError

DEFAULT_EMBED_MODEL = "all-MiniLM-L6-v2"
TOP_K_MAX = 50
DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"
CHANGELOG_SUFFIX = ".changelog"  # the side collection `<collection>.changelog` (rag/store/changelog.py) must be valid too
COLLECTION_CHARS = (3, 512 - len(CHANGELOG_SUFFIX))  # Chroma takes 3 to 512
COLLECTION_CHARACTER = re.compile(r"[^a-zA-Z0-9._-]")


class Settings(BaseSettings):
    """Settings shared by ingest, ask, eval and the app."""

    model_config = SettingsConfigDict(env_prefix="RAG_", env_file=".env", extra="ignore")

    store_dir: Path = Path("store")
    chroma_url: str | None = None
    index_dir: Path | None = None
    collection: str = "docs"
    embed_model: str = DEFAULT_EMBED_MODEL
    embed_device: Literal["auto", "cpu", "cuda", "mps"] = "auto"  # auto: a GPU when torch sees one, else the CPU
    embed_runtime: Literal["torch", "onnx", "onnx-int8"] = "torch"  # onnx*: ONNX Runtime on the CPU, without torch
    embed_cache: Path | None = None  # where the ONNX export of the embedder is kept; default ~/.cache/rag-onnx
    model: str = Field("qwen2.5:3b", min_length=1)
    top_k: int = Field(5, ge=1, le=TOP_K_MAX)
    ollama_host: str = Field(
        DEFAULT_OLLAMA_HOST, validation_alias=AliasChoices("OLLAMA_HOST", "RAG_OLLAMA_HOST")
    )
    openai_url: str | None = None  # an OpenAI-compatible server (vLLM, llama.cpp, LocalAI, LM Studio, transformers serve)
    openai_api_key: SecretStr | None = None  # sent as a bearer token; never printed, logged or saved
    num_ctx: int = Field(8192, ge=512)
    keep_alive: str = "30m"
    temperature: float = Field(0.1, ge=0.0, le=2.0)
    answer_tokens: int = Field(1024, ge=64)
    connect_timeout: float = Field(5.0, gt=0)
    read_timeout: float = Field(600.0, gt=0)
    store_timeout: float = Field(60.0, gt=0)  # the longest wait for one answer of a Chroma server
    retrieval_mode: Literal["dense", "keyword", "hybrid"] = "hybrid"
    dense_weight: float = Field(0.6, ge=0.0, le=1.0)
    relevance_floor: float = Field(0.07, ge=0.0, le=1.0)
    chunk_tokens: int = Field(200, ge=32, le=250)
    chunk_overlap: int = Field(40, ge=0, le=120)
    # Limits on what an input can make the machine do; what is over a limit is skipped or cut, with a message.
    max_file_mb: float = Field(200, gt=0)  # any input file, before it is read
    max_text_mb: float = Field(20, gt=0)  # text in one file: a bigger text file is skipped, PDF/DOCX text is cut
    max_unpacked_mb: float = Field(100, gt=0)  # what a ZIP container (DOCX, PPTX, XLSX, ODF, EPUB) would unpack to
    max_archive_entries: int = Field(1000, ge=1)  # files inside a ZIP container
    max_pdf_pages: int = Field(2000, ge=1)  # pages read from one PDF
    max_paragraphs: int = Field(50_000, ge=1)  # paragraphs and table rows read from one DOCX
    max_runs: int = Field(1_000_000, ge=1)  # text runs (pieces of a paragraph in one format) read from one DOCX
    max_sheet_rows: int = Field(100_000, ge=1)  # rows read from one sheet of a workbook, empty rows included
    max_messages: int = Field(10_000, ge=1)  # messages read from one mbox, which is read as a stream
    # chunks stored from one file, all its documents (a JSON file's records) together: about a 2,000-page book
    max_chunks_per_file: int = Field(10_000, ge=1)
    max_whole_tokens: int = Field(200_000, ge=1000)  # the most a whole-document question reads (estimated tokens)
    max_pixels: int = Field(50_000_000, ge=1)  # pixels in one image or rendered page, checked before it is decoded
    ocr: Literal["auto", "off"] = "auto"  # auto: scanned PDF pages and images are read by OCR; off: they are skipped
    max_models: int = Field(500, ge=1)  # models listed from the model server, on every page and CLI

    @field_validator("store_dir", mode="before")
    @classmethod
    def folder_given(cls, value):
        """An empty RAG_STORE_DIR would silently mean the current folder."""
        if isinstance(value, str) and not value.strip():
            raise ValueError("give a folder, e.g. ./store")
        return value

    @field_validator("collection")
    @classmethod
    def collection_name(cls, value: str) -> str:
        """A name Chroma takes for the collection and its change log, checked before Chroma says it in its own words."""
        problem = collection_name_problem(value)
        if problem:
            low, high = COLLECTION_CHARS
            raise ValueError(
                f"{problem}; a collection name has {low} to {high} characters from a-z, A-Z, 0-9, '.', '_' and '-', "
                "starts and ends with a letter or digit, has no '..' and is not an IP address"
            )
        return value

    @field_validator("ollama_host")
    @classmethod
    def ollama_address(cls, value: str) -> str:
        """HOST, HOST:PORT or http(s)://HOST:PORT, as Ollama's own tools read OLLAMA_HOST."""
        address = value.strip()
        if not address:
            return DEFAULT_OLLAMA_HOST  # as Ollama's tools read an empty OLLAMA_HOST
        http_address(address, "127.0.0.1:11434 or http://host:11434", bare_port=True)
        return address


    @field_validator("openai_url")
    @classmethod
    def openai_base(cls, value: str | None) -> str | None:
        """The server's API base ending in /v1: `host:8000`, `http://host:8000`, `.../v1` and `.../v1/` mean the same."""
        address = (value or "").strip()
        if not address:
            return None
        parts = http_address(address, "http://host:8000/v1")
        path = parts.path.rstrip("/")
        path = path if path.endswith("/v1") else f"{path}/v1"
        return f"{parts.scheme}://{parts.netloc}{path}"


def http_address(address: str, example: str, bare_port: bool = False):
    """The parts of an http(s) address given as HOST, HOST:PORT or a URL; ValueError naming an example when it is not one
    (bare_port: ":11434" alone is accepted, as Ollama's tools accept it)."""
    try:
        parts = urlsplit(address if "://" in address else f"http://{address}")
        parts.port  # noqa: B018  (raises on a port that is not a number from 0 to 65535)
    except ValueError as exc:
        raise ValueError(f"not an address like {example} ({exc})") from None
    if parts.scheme not in ("http", "https") or (not parts.hostname and not (bare_port and address.startswith(":"))):
        raise ValueError(f"not an address like {example}")
    return parts


def collection_name_problem(name: str) -> str | None:
    """What is wrong with a collection name, in a few words, or None when Chroma takes it."""
    low, high = COLLECTION_CHARS
    if not low <= len(name) <= high:
        return f"{len(name):,} character{'' if len(name) == 1 else 's'}"
    if bad := COLLECTION_CHARACTER.search(name):
        return f"it holds {bad.group()!r}"
    if not (name[0].isalnum() and name[-1].isalnum()):
        return f"it {'starts' if not name[0].isalnum() else 'ends'} with {name[0] if not name[0].isalnum() else name[-1]!r}"
    if ".." in name:
        return "two periods in a row"
    if is_ip_address(name):
        return "an IP address"
    return None


def is_ip_address(text: str) -> bool:
    """True when text is an IP address (Chroma refuses such a collection name)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def index_folder(settings: Settings) -> Path:
    """Where this process keeps its saved chunk index: RAG_INDEX_DIR; else `index` in the store folder, or,
    with a Chroma server (whose folder is elsewhere), the user's cache folder."""
    if settings.index_dir:
        return settings.index_dir
    if settings.chroma_url:
        return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rag-chunk-index"
    return settings.store_dir / "index"


def load_settings(**overrides) -> Settings:
    """Read the settings, turning a bad value into one line that names the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        variable = "OLLAMA_HOST" if field in ("ollama_host", "OLLAMA_HOST") else f"RAG_{field.upper()}"
        value = first.get("input")
        message = first["msg"].removeprefix("Value error, ")
        raise SettingsError(f"{variable}={value!r} is not valid: {message}. Fix it in the environment or .env.") from None
