"""All configuration: environment variables prefixed RAG_, a .env file, and OLLAMA_HOST."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from rag.errors import SettingsError

DEFAULT_EMBED_MODEL = "all-MiniLM-L6-v2"


class Settings(BaseSettings):
    """Settings shared by ingest, ask, eval and the app."""

    model_config = SettingsConfigDict(env_prefix="RAG_", env_file=".env", extra="ignore")

    store_dir: Path = Path("store")
    chroma_url: str | None = None
    collection: str = Field("docs", min_length=1)
    embed_model: str = DEFAULT_EMBED_MODEL
    model: str = Field("qwen2.5:3b", min_length=1)
    top_k: int = Field(5, ge=1, le=50)
    ollama_host: str = Field(
        "http://127.0.0.1:11434", validation_alias=AliasChoices("OLLAMA_HOST", "RAG_OLLAMA_HOST")
    )
    num_ctx: int = Field(8192, ge=512)
    keep_alive: str = "30m"
    temperature: float = Field(0.1, ge=0.0, le=2.0)
    answer_tokens: int = Field(1024, ge=64)
    connect_timeout: float = Field(5.0, gt=0)
    read_timeout: float = Field(600.0, gt=0)
    retrieval_mode: Literal["dense", "keyword", "hybrid"] = "hybrid"
    dense_weight: float = Field(0.6, ge=0.0, le=1.0)
    relevance_floor: float = Field(0.25, ge=0.0, le=1.0)
    chunk_tokens: int = Field(200, ge=32, le=250)
    chunk_overlap: int = Field(40, ge=0, le=120)


def load_settings(**overrides) -> Settings:
    """Read the settings, turning a bad value into one line that names the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        variable = "OLLAMA_HOST" if field in ("ollama_host", "OLLAMA_HOST") else f"RAG_{field.upper()}"
        value = first.get("input")
        raise SettingsError(f"{variable}={value!r} is not valid: {first['msg']}. Fix it in the environment or .env.") from None
