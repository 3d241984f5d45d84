"""Where scoped tokens live: the `tokens` table of either backend (sqlite_schema's and pg_schema's migration
`add_tokens` / `_tokens`). Rows hold the token's SHA-256, never the token (see memory_spine/tokens.py).

- `SQLiteTokenStore(path)`: its own connection to the data dir's database file, so `memory-spine token` works
  while a `serve` holds the data dir (SQLite's own locking orders the two writers; this table is not part of the
  records or the derived index, which is what the data dir's lock protects).
- `PostgresTokenStore(conn)`: over the storage's connection pool; every replica reads the same table.

`token_store(storage)` picks the one for an open storage; `open_token_store(settings)` is the CLI's.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import StorageError
from .sqlite import DB_FILE
from .sqlite_schema import add_tokens

_COLS = "id, name, namespaces, rights, created_at, expires_at, revoked_at, last_used_at"


class SQLiteTokenStore:
    """The tokens table of one SQLite file, over one connection of its own (serialised by a lock)."""

    def __init__(self, path: Path, *, busy_seconds: float = 5.0) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=busy_seconds)
            self._conn.execute(f"PRAGMA busy_timeout={int(busy_seconds * 1000)}")
            if self._conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'tokens'").fetchone() is None:
                add_tokens(self._conn)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open the tokens table in {self.path}: {exc}") from exc

    @contextmanager
    def _run(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise StorageError(f"the tokens table could not be read or written: {exc}") from exc

    @staticmethod
    def _row(r: tuple) -> dict[str, Any]:
        return dict(zip(_COLS.split(", "), (*r[:2], json.loads(r[2]), json.loads(r[3]), *r[4:]), strict=True))

    def create(self, row: dict[str, Any], token_hash: str) -> None:
        with self._run() as conn:
            conn.execute(
                f"INSERT INTO tokens (token_hash, {_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    token_hash,
                    row["id"],
                    row["name"],
                    json.dumps(row["namespaces"]),
                    json.dumps(row["rights"]),
                    row["created_at"],
                    row["expires_at"],
                    row["revoked_at"],
                    row["last_used_at"],
                ),
            )

    def by_hash(self, token_hash: str) -> dict[str, Any] | None:
        with self._run() as conn:
            r = conn.execute(f"SELECT {_COLS} FROM tokens WHERE token_hash = ?", (token_hash,)).fetchone()
        return self._row(r) if r else None

    def list(self) -> list[dict[str, Any]]:
        with self._run() as conn:
            return [self._row(r) for r in conn.execute(f"SELECT {_COLS} FROM tokens ORDER BY created_at, id")]

    def revoke(self, token_id: str, now: float) -> dict[str, Any] | None:
        with self._run() as conn:
            conn.execute("UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (now, token_id))
            r = conn.execute(f"SELECT {_COLS} FROM tokens WHERE id = ?", (token_id,)).fetchone()
        return self._row(r) if r else None

    def touch(self, token_id: str, now: float) -> None:
        with self._run() as conn:
            conn.execute("UPDATE tokens SET last_used_at = ? WHERE id = ?", (now, token_id))

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _ts(dt: datetime | None) -> float | None:
    return None if dt is None else dt.timestamp()


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


class PostgresTokenStore:
    """The tokens table of a PostgreSQL database, over a connection factory (the storage's pool)."""

    def __init__(self, conn: Callable[[], AbstractContextManager[Any]]) -> None:
        self._conn = conn

    @staticmethod
    def _row(r: tuple) -> dict[str, Any]:
        return {
            "id": r[0],
            "name": r[1],
            "namespaces": list(r[2]),
            "rights": list(r[3]),
            "created_at": _ts(r[4]),
            "expires_at": _ts(r[5]),
            "revoked_at": _ts(r[6]),
            "last_used_at": _ts(r[7]),
        }

    def create(self, row: dict[str, Any], token_hash: str) -> None:
        with self._conn() as conn:
            conn.execute(
                f"INSERT INTO tokens (token_hash, {_COLS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    token_hash,
                    row["id"],
                    row["name"],
                    row["namespaces"],
                    row["rights"],
                    _dt(row["created_at"]),
                    _dt(row["expires_at"]),
                    _dt(row["revoked_at"]),
                    _dt(row["last_used_at"]),
                ),
            )

    def by_hash(self, token_hash: str) -> dict[str, Any] | None:
        with self._conn() as conn:
            r = conn.execute(f"SELECT {_COLS} FROM tokens WHERE token_hash = %s", (token_hash,)).fetchone()
        return self._row(r) if r else None

    def list(self) -> list[dict[str, Any]]:
        with self._conn() as conn:
            return [self._row(r) for r in conn.execute(f"SELECT {_COLS} FROM tokens ORDER BY created_at, id")]

    def revoke(self, token_id: str, now: float) -> dict[str, Any] | None:
        with self._conn() as conn:
            conn.execute("UPDATE tokens SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL", (_dt(now), token_id))
            r = conn.execute(f"SELECT {_COLS} FROM tokens WHERE id = %s", (token_id,)).fetchone()
        return self._row(r) if r else None

    def touch(self, token_id: str, now: float) -> None:
        with self._conn() as conn:
            conn.execute("UPDATE tokens SET last_used_at = %s WHERE id = %s", (_dt(now), token_id))

    def close(self) -> None:
        """The pool belongs to the storage (the CLI's own connection is closed by `database_token_store`'s)."""
        closer = getattr(self, "_close", None)
        if closer is not None:
            closer()


def token_store(storage: Any) -> SQLiteTokenStore | PostgresTokenStore:
    """The token store of an open storage (the server's): SQLite by its file, PostgreSQL by its pool."""
    if storage.backend == "sqlite":
        return SQLiteTokenStore(storage.path)
    return PostgresTokenStore(storage.conn)


def data_dir_token_store(data_dir: Path) -> SQLiteTokenStore:
    """The CLI's store of a data dir (which must exist: DataDirMissing otherwise), opened beside a running server."""
    from ..datadir import require_data_dir

    return SQLiteTokenStore(require_data_dir(data_dir) / DB_FILE)


def database_token_store(url: str) -> PostgresTokenStore:
    """The CLI's store of a PostgreSQL database a service has set up (DataDirMissing-like InvalidInput otherwise):
    one connection of its own; adds the tokens table (pg_schema's migration) if this database predates it."""
    import psycopg

    from ..errors import InvalidInput
    from . import pg_schema, redact

    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise StorageError(f"cannot connect to {redact(url)}: {exc}") from exc
    try:
        dim = conn.execute(
            "SELECT value FROM memory_spine_meta WHERE name = 'dim'"
            if conn.execute("SELECT to_regclass('memory_spine_meta')").fetchone()[0]
            else "SELECT NULL"
        ).fetchone()[0]
        if dim is None:
            raise InvalidInput(
                "--database", f"{redact(url)} holds no memory-spine database (start `memory-spine serve` on it once)"
            )
        pg_schema.migrate(conn, dim=int(dim), hnsw_m=16, hnsw_ef_construction=64)  # only adds what is missing
    except BaseException:
        conn.close()
        raise

    @contextmanager
    def one() -> Iterator[Any]:
        try:
            yield conn
        except psycopg.Error as exc:
            raise StorageError(f"the tokens table could not be read or written: {exc}") from exc

    store = PostgresTokenStore(one)
    store._close = conn.close  # type: ignore[attr-defined]
    return store
