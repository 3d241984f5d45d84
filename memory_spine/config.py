"""Settings: every option of `memory-spine serve`, also readable from `MEMORY_SPINE_*` environment variables.

The CLI builds a `Settings` from its flags; the environment fills what the flags leave out. Nothing here opens
files or sockets.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

EmbedderKind = Literal["onnx", "sentence-transformers", "fake"]


def default_data_dir() -> Path:
    """Per-user data dir: `$XDG_DATA_HOME/memory-spine`, else `~/.local/share/memory-spine`."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "memory-spine"


class Settings(BaseSettings):
    """Configuration of one service instance."""

    model_config = SettingsConfigDict(env_prefix="MEMORY_SPINE_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8788
    data_dir: Path = Field(default_factory=default_data_dir)
    # None: the embedded default (SQLite + hnswlib in data_dir). `postgresql://...`: PostgreSQL + pgvector, shared
    # by any number of replicas (see storage/postgres.py); data_dir then holds nothing.
    database: str | None = None
    database_pool_size: int = 8
    embedder: EmbedderKind = "onnx"
    embed_threads: int | None = None
    model_cache: Path | None = None
    token: SecretStr | None = None
    # A file holding the token (its first line), so the token is not on the command line for `ps` to show.
    token_file: Path | None = None
    insecure: bool = False
    # Scoped tokens (tokens.py) are looked up by hash in the database and cached this many seconds: a revocation
    # made elsewhere (the CLI, another replica) is refused within it; one made through /tokens here at once.
    token_cache_seconds: float = Field(default=5.0, ge=0)
    token_cache_size: int = Field(default=1024, ge=1)
    cors_origins: list[str] = []
    # Host names (beyond loopback names and IP literals) the service answers for; see api/hosts.py. Comma-separated
    # in MEMORY_SPINE_ALLOWED_HOSTS; "*" turns the DNS-rebinding check off.
    allowed_hosts: Annotated[list[str], NoDecode] = []
    # Slow clients: a request's headers must arrive within header_timeout seconds of its first byte (or of the
    # connection opening), its body within body_timeout seconds of the headers; else 408 and the connection
    # is closed. 0 turns a timeout off.
    header_timeout: float = Field(default=10.0, ge=0)
    body_timeout: float = Field(default=30.0, ge=0)
    log_level: str = "info"
    default_mode: Literal["semantic", "keyword", "hybrid"] = "hybrid"

    # Limits: every violation is a 4xx naming the field.
    max_body_bytes: int = 16 * 1024 * 1024
    max_content_chars: int = 100_000
    max_tags: int = 64
    max_tag_chars: int = 128
    max_metadata_bytes: int = 64 * 1024
    max_metadata_depth: int = 16
    max_batch: int = 1000
    max_limit: int = 100
    max_key_chars: int = 512
    max_id_chars: int = 256
    # Filters (search, list, DELETE /memories): $and/$or nesting, conditions in one `where`, and values over all
    # tag lists and $in/$nin lists of one filter. They keep a filter's SQL small (see storage/filters.py).
    max_filter_depth: int = 8
    max_filter_terms: int = 256
    max_filter_values: int = 1024
    # A filtered read or delete still running after this many seconds is stopped: 503 `query_timeout` (SQLite:
    # a progress handler; PostgreSQL: statement_timeout). 0: no budget.
    max_query_seconds: float = 10.0

    # Vector index (hnswlib). M=16/ef_construction=200/ef=128: recall@10 0.98 for hnswlib alone at 100k passages
    # of real text, 0.46 ms a query on 2 cores (M=24 or 32, or ef_construction 400, were no faster at that recall).
    hnsw_m: int = 16
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 128
    index_save_seconds: float = 60.0
    index_save_changes: int = 10_000

    # Planner: filters matching at most this many records are scored exactly (numpy).
    exact_max_candidates: int = 4096
    # Stores of at most this many vectors are scored exactly, without the graph (the measured crossover, index.py).
    exact_below: int = 2048

    # Caches are bounded by entries and by bytes (whichever is reached first; the bytes are an estimate of
    # what the entries hold, see cache.py): a few searches returning 100 large records must not pin GBs.
    query_cache_size: int = 4096  # query text -> vector, LRU
    query_cache_bytes: int = 16 * 1024 * 1024
    result_cache_size: int = 256  # identical searches between writes are answered from memory; 0: off
    result_cache_bytes: int = 64 * 1024 * 1024
    purge_seconds: float = 30.0
    # Record history (storage/history.py): each record keeps its last `history_versions` prior versions (PATCH,
    # upsert, revert, delete), for `history_days` days; pruned with the expiry purge. 0 in either: no history.
    history_versions: int = Field(default=10, ge=0)
    history_days: float = Field(default=30.0, ge=0)
    synchronous: Literal["normal", "full"] = "normal"
    default_lease_seconds: float = 60.0

    @field_validator("token", mode="before")
    @classmethod
    def _blank_token_is_none(cls, value: object) -> object:
        # An empty MEMORY_SPINE_TOKEN (say, an unset variable in a compose file) means no token: it must not pass
        # the non-loopback check as if one were set while the middleware (rightly) asks for none.
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        # From the environment or the flag: "a.example,b.example" (a JSON list is read as well).
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [h.strip() for h in text.split(",") if h.strip()]
        return value

    @model_validator(mode="after")
    def _read_token_file(self) -> Settings:
        if self.token_file is None:
            return self
        if self.token is not None:
            raise ValueError("give the token or a token file, not both")
        self.token = SecretStr(read_token_file(self.token_file))
        return self


def read_token_file(path: Path) -> str:
    """The token on a file's first line (kept out of `ps`, unlike a flag).

    Raises:
        ValueError: the file cannot be read or its first line is empty; the message names the file.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the token file {path}: {exc}") from exc
    token = lines[0].strip() if lines else ""
    if not token:
        raise ValueError(f"the token file {path} is empty")
    return token
