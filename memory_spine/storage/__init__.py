"""Storage backends, picked by URL: `open_storage(settings, dim)` and `open_search(settings, storage)`.

- no `database` (the default): SQLite in `settings.data_dir`, searched through the planner over a derived
  hnswlib index in the same dir; one process owns the dir.
- `postgresql://...` (or `postgres://`): PostgreSQL + pgvector (`storage/postgres.py`), searched in SQL; any
  number of service replicas may share the database.

Backends are imported only when opened, so the embedded default never imports psycopg. Adding one is a module
and an entry in `_BACKENDS`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import InvalidInput

if TYPE_CHECKING:
    from ..config import Settings
    from .base import Storage, VectorSearch

__all__ = ["backend_of", "open_search", "open_storage", "redact"]

# backend -> (storage opener, search opener), as "module:function"
_BACKENDS: dict[str, tuple[str, str]] = {
    "sqlite": ("memory_spine.storage.sqlite:open_sqlite", "memory_spine.planner:open_planner"),
    "postgresql": ("memory_spine.storage.postgres:open_postgres", "memory_spine.storage.pg_search:open_search"),
}
_SCHEMES = {"postgresql": "postgresql", "postgres": "postgresql"}


def backend_of(url: str | None) -> str:
    """The backend a `database` URL names: "sqlite" for None or empty, "postgresql" for postgresql://...

    Raises:
        InvalidInput: a URL of another scheme.
    """
    if not url:
        return "sqlite"
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme not in _SCHEMES:
        raise InvalidInput(
            "database", f"{scheme!r} is not a supported database; give postgresql://... or leave it unset (SQLite)"
        )
    return _SCHEMES[scheme]


def redact(url: str | None) -> str | None:
    """The URL without its password, for logs, /stats and /health."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    host = netloc[-1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _load(target: str) -> Any:
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def open_storage(settings: Settings, dim: int) -> Storage:
    """Open the backend `settings.database` names (SQLite in `settings.data_dir` when unset).

    Raises:
        InvalidInput: an unsupported URL. DataDirLocked / StorageError / ReadOnlyStorage: it cannot be opened.
    """
    return _load(_BACKENDS[backend_of(settings.database)][0])(settings, dim)


def open_search(settings: Settings, storage: Storage) -> VectorSearch:
    """The semantic/keyword/hybrid search over `storage`: the planner and hnswlib for SQLite, SQL for PostgreSQL."""
    return _load(_BACKENDS[storage.backend][1])(settings, storage)
