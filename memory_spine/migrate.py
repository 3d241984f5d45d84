"""`memory-spine migrate`: copy an embedded data dir (SQLite) into PostgreSQL, vectors included.

Nothing is embedded again: the stored float32 vectors are copied as they are, with ids, tags, metadata, keys,
timestamps and live claims. The copy goes in batches by `seq`, each one COPY into a staging table and an
`INSERT ... ON CONFLICT (id) DO NOTHING`, then a marker in `memory_spine_meta` records the last `seq` done:
an interrupted run, run again, resumes after it (and a batch copied twice is skipped id by id). For a large
copy the HNSW index is dropped first and built once at the end, which is far faster than inserting into it.
Expired records are left behind. The data dir is locked meanwhile, so no `serve` can write to it.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .errors import StorageError
from .storage.base import RestoredRecord
from .storage.postgres import BULK_ROWS, PostgresStorage, to_dt
from .storage.sqlite import DB_FILE, lock_data_dir


def migrate_data_dir(
    data_dir: Path,
    url: str,
    *,
    batch_size: int = 2000,
    progress: bool = True,
    hnsw_m: int = 16,
    ef_search: int = 128,
    hnsw_ef_construction: int = 200,
) -> dict[str, Any]:
    """Copy `data_dir`'s live records into the PostgreSQL database at `url`. Returns a report.

    Raises:
        DataDirLocked: a server holds the data dir. StorageError: either side cannot be used, or the two
            hold vectors of different models or dimensions.
    """
    data_dir = Path(data_dir).expanduser()
    db = data_dir / DB_FILE
    if not db.exists():
        raise StorageError(f"{data_dir} holds no memory-spine database ({DB_FILE})")
    lock = lock_data_dir(data_dir)
    try:
        src = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return _copy(src, data_dir, url, batch_size, progress, hnsw_m, ef_search, hnsw_ef_construction)
        finally:
            src.close()
    finally:
        lock.release()


def _copy(
    src: sqlite3.Connection,
    data_dir: Path,
    url: str,
    batch_size: int,
    progress: bool,
    hnsw_m: int,
    ef_search: int,
    hnsw_ef_construction: int,
) -> dict[str, Any]:
    meta = dict(src.execute("SELECT name, value FROM meta").fetchall())
    dim, model = int(meta["dim"]), meta.get("embedder_model")
    dest = PostgresStorage(url, dim, hnsw_m=hnsw_m, hnsw_ef_construction=hnsw_ef_construction, ef_search=ef_search)
    try:
        stored = dest.meta("embedder_model")
        if stored is not None and model is not None and stored != model:
            raise StorageError(f"the database holds vectors of {stored!r}; {data_dir} holds {model!r}")
        if stored is None and model is not None:
            dest.set_meta("embedder_model", model)
        marker = f"migrated_from:{data_dir.resolve()}"
        last = int(dest.meta(marker) or 0)
        now = time.time()
        todo = src.execute(
            "SELECT count(*) FROM memories WHERE seq > ? AND (expires_at IS NULL OR expires_at > ?)", (last, now)
        ).fetchone()[0]
        report: dict[str, Any] = {"resumed_after_seq": last, "to_copy": todo, "copied": 0, "skipped": 0}
        # A data dir from before namespaces (read as it is: read-only) holds only `default`.
        namespace = (
            "namespace" if "namespace" in {r[1] for r in src.execute("PRAGMA table_info(memories)")} else "'default'"
        )
        bulk = todo >= BULK_ROWS
        if bulk:
            dest.drop_vector_index()
        started = time.perf_counter()
        with _bar(todo, progress) as bar:
            while True:
                rows = src.execute(
                    "SELECT seq, id, content, tags, metadata, importance, key, key_parent, created_at, updated_at,"
                    f" expires_at, vector, {namespace} FROM memories"
                    " WHERE seq > ? AND (expires_at IS NULL OR expires_at > ?)"
                    " ORDER BY seq LIMIT ?",
                    (last, now, batch_size),
                ).fetchall()
                if not rows:
                    break
                records = [_record(r, dim) for r in rows]
                copied = len(dest.copy_in(records))
                last = int(rows[-1][0])
                dest.set_meta(marker, str(last))
                report["copied"] += copied
                report["skipped"] += len(records) - copied
                bar.update(len(records))
        report["copy_seconds"] = round(time.perf_counter() - started, 3)
        report["claims"] = _claims(src, dest, now)
        if bulk or not dest.has_vector_index():
            if progress:
                print("building the HNSW index ...", file=sys.stderr, flush=True)
            report["index_seconds"] = round(dest.build_vector_index(), 3)
        return report
    finally:
        dest.close()


def _record(r: tuple, dim: int) -> RestoredRecord:
    _seq, id_, content, tags, metadata, importance, key, parent, created, updated, expires, blob, namespace = r
    return RestoredRecord(
        id=id_,
        content=content,
        tags=json.loads(tags),
        metadata=json.loads(metadata),
        importance=importance,
        key=key,
        key_parent=parent,
        expires_at=expires,
        vector=np.frombuffer(blob, dtype=np.float32).reshape(dim),
        created_at=created,
        updated_at=updated,
        namespace=namespace,
    )


def _claims(src: sqlite3.Connection, dest: PostgresStorage, now: float) -> int:
    """Copy the live claims with their fences and lease-token hashes; the fence sequence moves past them."""
    fenced = "fence" in {r[1] for r in src.execute("PRAGMA table_info(claims)")}
    columns = {r[1] for r in src.execute("PRAGMA table_info(claims)")}
    cols = "key, holder, acquired_at, expires_at" + (", fence, token_hash" if fenced else ", NULL, NULL")
    cols += ", namespace" if "namespace" in columns else ", 'default'"
    live = src.execute(f"SELECT {cols} FROM claims WHERE expires_at > ?", (now,)).fetchall()
    floor = src.execute("SELECT value FROM meta WHERE name = 'claim_fence'").fetchone() if fenced else None
    with dest.conn() as conn, conn.cursor() as cur:
        if floor is not None:  # fences taken in PostgreSQL must outgrow every one handed out before
            cur.execute(
                "SELECT setval('claim_fences', greatest(%s, (SELECT last_value FROM claim_fences)))", (int(floor[0]),)
            )
        if live:
            cur.executemany(
                "INSERT INTO claims (key, holder, acquired_at, expires_at, fence, token_hash, namespace)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (namespace, key) DO NOTHING",
                [(k, h, to_dt(a), to_dt(e), f, t, ns) for k, h, a, e, f, t, ns in live],
            )
    return len(live)


def _bar(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, unit="rec", desc="migrate", file=sys.stderr, smoothing=0.1)
