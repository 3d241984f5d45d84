"""Reading a data dir that a running `memory-spine serve` may be serving: `export` and `backup` without its lock.

The embedded database is SQLite in WAL mode, so a second connection opened read-only reads one consistent
snapshot while the server goes on writing; no lock is taken and nothing is written. `backup` copies the database
with SQLite's online backup API (page by page, restarting over pages the server changes meanwhile, so the copy is
one consistent state) and the derived index files beside it. The index is copied first: a copy of the index
older than the database is caught up when the backup is served; one that does not match is rebuilt from the
stored vectors (the index is derived, never the truth).
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from .errors import InvalidInput, StorageError
from .index import INDEX_FILE, MARKER_FILE
from .storage.sqlite import DB_FILE, dump_rows


class DataDirMissing(InvalidInput):
    """The data dir named on the command line does not exist (only `serve` and `import` create one)."""


def require_data_dir(data_dir: Path) -> Path:
    """`data_dir`, expanded, if it holds a database; else raise DataDirMissing naming it."""
    path = Path(data_dir).expanduser().absolute()
    if not path.is_dir():
        raise DataDirMissing("--data-dir", f"{path} does not exist (only `serve` and `import` create a data dir)")
    if not (path / DB_FILE).is_file():
        raise DataDirMissing("--data-dir", f"{path} holds no memory-spine database ({DB_FILE} is missing)")
    return path


def connect_read_only(data_dir: Path) -> sqlite3.Connection:
    """A read-only connection to the data dir's database (no lock: the server may be running)."""
    db = require_data_dir(data_dir) / DB_FILE
    try:
        conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, isolation_level=None, timeout=30)
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("SELECT 1 FROM memories LIMIT 1")
    except sqlite3.Error as exc:
        raise StorageError(f"cannot read {db}: {exc}") from exc
    return conn


class LiveDataDir:
    """What `export_jsonl` needs of a service (`embedder.model`, `embedder.dim`, `dump`), read from a data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.conn = connect_read_only(data_dir)
        meta = dict(self.conn.execute("SELECT name, value FROM meta").fetchall())
        from .embedders import MODEL_DIM, MODEL_NAME

        self.embedder = SimpleNamespace(
            model=meta.get("embedder_model", MODEL_NAME), dim=int(meta.get("dim", MODEL_DIM))
        )

    def dump(self, *, vectors: bool = False, namespace: str | None = None) -> Iterator[dict[str, Any]]:
        """Every live record, oldest first, from one snapshot; `vector` holds float32 bytes if asked."""
        for row in dump_rows(self.conn, time.time(), vectors):
            if namespace is not None and row["namespace"] != namespace:
                continue
            row.pop("seq", None)
            yield row

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> LiveDataDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def backup(data_dir: Path, target: Path) -> dict[str, Any]:
    """Copy the data dir's database (online backup API) and index into the new directory `target`.

    Raises:
        InvalidInput: `target` exists and is not an empty directory. StorageError: reading or writing failed.
    """
    source_dir = require_data_dir(data_dir)
    target = Path(target).expanduser()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise InvalidInput("--output", f"{target} already exists; name a new directory")
    started = time.perf_counter()
    target.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in (MARKER_FILE, INDEX_FILE):  # the index before the database: see the module docstring
        src = source_dir / name
        if src.is_file():
            shutil.copyfile(src, target / name)
            copied.append(name)
    src_conn = connect_read_only(source_dir)
    tmp = target / (DB_FILE + ".tmp")
    try:
        dst = sqlite3.connect(tmp)
        try:
            src_conn.backup(dst, pages=4096)
            rows = dst.execute("SELECT count(*) FROM memories").fetchone()[0]
            dst.execute("PRAGMA journal_mode=WAL")
        finally:
            dst.close()
        tmp.replace(target / DB_FILE)
    except sqlite3.Error as exc:
        tmp.unlink(missing_ok=True)
        raise StorageError(f"backup of {source_dir / DB_FILE} failed: {exc}") from exc
    finally:
        src_conn.close()
    if INDEX_FILE not in copied:  # the server has not saved one yet: build it, so the backup is complete
        _build_index(target)
        copied += [INDEX_FILE, MARKER_FILE]
    return {
        "data_dir": str(target),
        "rows": rows,
        "files": sorted({DB_FILE, *copied}),
        "bytes": sum(p.stat().st_size for p in target.iterdir()),
        "seconds": round(time.perf_counter() - started, 3),
    }


def _build_index(data_dir: Path) -> None:
    """Build and save the vector index of the database in `data_dir` (with the service's index settings)."""
    from .config import Settings
    from .index import VectorIndex
    from .storage.sqlite import SQLiteStorage

    storage = SQLiteStorage(data_dir / DB_FILE, int(_meta(data_dir, "dim") or 384))
    try:
        index = VectorIndex.for_settings(Settings(data_dir=data_dir), storage.dim)
        index.rebuild(storage)
        index.save(storage)
    finally:
        storage.close()


def _meta(data_dir: Path, name: str) -> str | None:
    with sqlite3.connect(data_dir / DB_FILE) as conn:
        row = conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
    return row[0] if row else None
