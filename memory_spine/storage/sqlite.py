"""SQLite storage, the embedded default and the one source of truth: records, tags, keys, vectors, claims.

Schema (versioned migrations in `sqlite_schema.py`; WAL mode):

- `memories`: one row per record; `seq` (INTEGER PRIMARY KEY AUTOINCREMENT, never reused) is the label of
  the record's vector in the derived hnswlib index; `version` grows with every write, `vector_version` only
  when the vector changes, so the index can catch up on what it lacks.
- `memory_tags(tag, seq)`: tags in their own indexed table, so tag filters are index lookups.
- `memories_fts`: an FTS5 index over `content`, kept in step by triggers in the same transaction.
- `tombstones(seq, version)`: deleted vectors the index may still hold.
- `claims(key, holder, acquired_at, expires_at, fence, token_hash)`: leases for exactly-once actions; `fence`
  comes from the meta row `claim_fence`, a counter that only grows (fencing tokens).
- `tokens(id, token_hash, name, namespaces, rights, created_at, expires_at, revoked_at, last_used_at)`: scoped
  bearer tokens, by the SHA-256 of the token (never the token itself); storage/tokens.py reads and writes them.

One writer connection behind a lock (SQLite has one writer anyway; queuing in Python avoids "database is
locked"); readers use one connection per thread, which WAL lets run beside the writer.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import sqlite_utils
from filelock import FileLock, Timeout

from ..errors import DataDirLocked, InvalidInput, NotFound, ReadOnlyStorage, StorageError, StorageFull
from ..models import Filter
from ..namespaces import DEFAULT
from .base import Changes, ContentChanged, NewRecord, PutResult, RestoredRecord, StaleFence, VersionChanged, claim_dict
from .budget import PROGRESS_STEPS, over_budget
from .filters import Conditions, Group, Node, filter_is_empty, parse_filter, prefix_upper, to_epoch  # noqa: F401
from .history import column_names, deleted_version, keep_versions, prior_version
from .search import drop_stopwords, rarest
from .sqlite_schema import migrate

log = logging.getLogger("memory_spine.storage")

CLAIM_GRACE_SECONDS = 86_400  # how long a lapsed claim (and its fence) is kept before purge_expired drops it
OnCommit = Callable[[Any], None]
READER_CACHE_KIB = 2048  # each reader connection's page cache
_IN_CHUNK = 900  # values per IN list, under SQLite's default limit of 999 bound variables
# memory_history holds these columns too (it is read with this list): a new one is also a line in history.COLUMNS.
_ROW_COLUMNS = (
    "m.seq, m.id, m.content, m.tags, m.metadata, m.importance, m.key, m.created_at, m.updated_at, m.expires_at,"
    " m.namespace, m.occurred_at"
)
ROW_WIDTH = 12  # columns in _ROW_COLUMNS: what a query selects after them starts at this index
# History rows copy history.COLUMNS (which include the namespace); a record is addressed by (namespace, id).
_HISTORY_INSERT = (
    f"INSERT INTO memory_history ({column_names()}, vector, superseded_at, superseded_by, op)"
    f" SELECT {column_names('m.')}, m.vector, ?, ?, ? FROM memories m WHERE m.seq = ?"
)
_OPS = {"$eq": "=", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


def iso(ts: float | None) -> str | None:
    """Epoch seconds -> ISO 8601 UTC with microseconds and a trailing Z."""
    if ts is None:
        return None
    # isoformat, not strftime: the same text in a third of the time (three per returned record).
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def _loads(text: str) -> Any:
    # orjson reads what json.dumps stored (no NaN, ints of 64 bits: refused at write) several times faster.
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _translate(exc: sqlite3.Error) -> StorageError:
    text = str(exc).lower()
    if "full" in text:
        return StorageFull(f"the disk holding the database is full: {exc}")
    if "readonly" in text or "read-only" in text or "unable to open" in text:
        return ReadOnlyStorage(f"the database cannot be written: {exc}")
    return StorageError(f"database error: {exc}")


def _row(r: sqlite3.Row | tuple) -> dict[str, Any]:
    seq, id_, content, tags, metadata, importance, key, created, updated, expires, namespace, occurred = r
    return {
        "seq": seq,
        "id": id_,
        "namespace": namespace,
        "content": content,
        "tags": _loads(tags),
        "metadata": _loads(metadata),
        "importance": importance,
        "key": key,
        "created_at": iso(created),
        "updated_at": iso(updated),
        "expires_at": iso(expires),
        "occurred_at": iso(occurred if occurred is not None else created),
    }


def dump_rows(conn: sqlite3.Connection, now: float, vectors: bool, batch: int = 1000) -> Iterator[dict[str, Any]]:
    """Every live record of the database `conn` reads, oldest first, in one read transaction (`export`).

    Raises:
        StorageError: a row cannot be read as a memory (its tags or metadata are not JSON); names the row.
    """
    conn.execute("BEGIN")
    try:
        last = 0
        columns = _ROW_COLUMNS + (", m.vector" if vectors else "")
        if "namespace" not in {r[1] for r in conn.execute("PRAGMA table_info(memories)")}:
            columns = columns.replace("m.namespace", "'default'")  # a data dir not yet migrated (read-only export)
        while True:
            rows = conn.execute(
                f"SELECT {columns} FROM memories m WHERE m.seq > ? AND (m.expires_at IS NULL OR m.expires_at > ?)"
                " ORDER BY m.seq LIMIT ?",
                (last, now, batch),
            ).fetchall()
            if not rows:
                return
            for r in rows:
                try:
                    out = _row(r[:ROW_WIDTH])
                except ValueError as exc:  # orjson's and json's decode errors are ValueErrors
                    raise StorageError(
                        f"row {r[1]}: its tags or metadata are not JSON ({exc}); `memory-spine check --repair`"
                        ' keeps such metadata as {"unparsed_metadata": ...}'
                    ) from exc
                if vectors:
                    out["vector"] = r[ROW_WIDTH]
                yield out
            last = int(rows[-1][0])
    finally:
        conn.execute("ROLLBACK")


def _json_path(parts: tuple[str, ...]) -> str:
    return "$" + "".join('."' + part.replace('"', '""') + '"' for part in parts)


def _sql_value(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value  # json_extract returns 1/0 for true/false


def _emit_where(node: Node, params: list[Any]) -> str:
    """A parsed `where` tree (storage/filters.py) -> SQL over `m.metadata` (JSON text)."""
    if isinstance(node, Group):
        parts = [_emit_where(item, params) for item in node.items]
        return "(" + (" AND " if node.op == "$and" else " OR ").join(parts) + ")"
    jpath = _json_path(node.parts).replace(chr(39), chr(39) * 2)
    expr = f"json_extract(m.metadata, '{jpath}')"
    op, value = node.op, node.value
    if op in ("$in", "$nin"):
        params.extend(_sql_value(v) for v in value)
        marks = ",".join("?" * len(value))
        return f"{expr} IN ({marks})" if op == "$in" else f"({expr} IS NULL OR {expr} NOT IN ({marks}))"
    if value is None and op in ("$eq", "$ne"):
        return f"{expr} IS {'NOT ' if op == '$ne' else ''}NULL"
    params.append(_sql_value(value))
    if op == "$ne":
        return f"({expr} IS NULL OR {expr} != ?)"
    if op == "$eq":
        return f"{expr} = ?"
    # SQLite sorts every number before every string, so without this guard {"$gt": 3} would match "abc": a range
    # compares numbers with numbers and strings with strings only.
    kinds = "'text'" if isinstance(value, str) else "'integer', 'real'"
    return f"(json_type(m.metadata, '{jpath}') IN ({kinds}) AND {expr} {_OPS[op]} ?)"


def compile_filter(
    flt: Filter | Conditions | None, now: float, *, probe: bool = False, omit_tags: bool = False
) -> tuple[str, list[Any]]:
    """A filter -> an SQL condition on `memories m` (expired records always excluded) and its params.

    Tag conditions come in two forms. By default a set form (`m.seq IN (SELECT ... WHERE tag IN ...)`), which
    SQLite materialises once: right when the query scans many rows. With `probe=True` a correlated form
    (`EXISTS (... t.seq = m.seq ...)`), one primary-key probe per row: right when a few rows are already
    chosen (hydrating HNSW candidates), where materialising a tag holding half the table would cost more than
    the whole search. `omit_tags=True` leaves `tags` out, for queries that drive from the tag table themselves.
    """
    # In the probe form `+t.tag` keeps SQLite on the (seq) index, reading the record's few tags: left to itself
    # it probed (tag, seq) once per listed tag and row, 10 s for 1,024 `tags_none` over 20k records (now 70 ms).
    c = parse_filter(flt)
    clauses = ["(m.expires_at IS NULL OR m.expires_at > ?)"]
    params: list[Any] = [now]
    ns_sql, ns_params = c.namespace_sql("?")
    if ns_sql is not None:
        clauses.append(ns_sql)
        params.extend(ns_params)
    if c.tags and not omit_tags:
        marks = ",".join("?" * len(c.tags))
        if probe:
            clauses.append(f"EXISTS (SELECT 1 FROM memory_tags t WHERE t.seq = m.seq AND +t.tag IN ({marks}))")
        else:
            clauses.append(f"m.seq IN (SELECT seq FROM memory_tags WHERE tag IN ({marks}))")
        params.extend(c.tags)
    if c.tags_all:
        marks = ",".join("?" * len(c.tags_all))
        if probe:
            clauses.append(f"(SELECT count(*) FROM memory_tags t WHERE t.seq = m.seq AND +t.tag IN ({marks})) = ?")
        else:
            clauses.append(
                f"m.seq IN (SELECT seq FROM memory_tags WHERE tag IN ({marks}) GROUP BY seq HAVING count(*) = ?)"
            )
        params.extend(c.tags_all)
        params.append(len(c.tags_all))
    if c.tags_none:
        marks = ",".join("?" * len(c.tags_none))
        if probe:
            clauses.append(f"NOT EXISTS (SELECT 1 FROM memory_tags t WHERE t.seq = m.seq AND +t.tag IN ({marks}))")
        else:
            clauses.append(f"m.seq NOT IN (SELECT seq FROM memory_tags WHERE tag IN ({marks}))")
        params.extend(c.tags_none)
    if c.where is not None:
        clauses.append(_emit_where(c.where, params))
    if c.importance:
        clauses.append(f"m.importance IN ({','.join('?' * len(c.importance))})")
        params.extend(c.importance)
    for column, op, value in c.comparisons():
        clauses.append(f"{column} {op} ?")
        params.append(value)
    return " AND ".join(clauses), params


_WORD = re.compile(r"\w+")


def keyword_terms(text: str) -> list[str]:
    """Free text -> the terms FTS5's unicode61 tokenizer (tokenchars '_') would make: lowercase, no diacritics."""
    folded = "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))
    return list(dict.fromkeys(_WORD.findall(folded)))


def fts_query(text: str) -> str | None:
    """Free text -> an FTS5 query: each whitespace-separated chunk a quoted phrase, any of which may match."""
    phrases = [" ".join(t) for t in (keyword_terms(c) for c in text.split()) if t]
    if not phrases:
        return None
    return " OR ".join(f'"{p}"' for p in dict.fromkeys(phrases[:64]))


def _encoded(rec: NewRecord) -> tuple[str, str]:
    """A record's tags and metadata as stored: JSON text (metadata compact), non-ASCII kept."""
    return json.dumps(rec.tags, ensure_ascii=False), json.dumps(rec.metadata, ensure_ascii=False, separators=(",", ":"))


def _insert(
    conn: sqlite3.Connection, rec: NewRecord, encoded: tuple[str, str], created: float, updated: float, version: int
) -> int:
    """INSERT a new record's row (put and restore: only the timestamps differ) with its vector. Returns its seq."""
    assert rec.vector is not None  # callers raise ContentChanged / ValueError first
    cur = conn.execute(
        "INSERT INTO memories (namespace, id, content, tags, metadata, importance, key, key_parent,"
        " created_at, updated_at, expires_at, version, vector_version, vector, occurred_at)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            rec.namespace,
            rec.id,
            rec.content,
            *encoded,
            rec.importance,
            rec.key,
            rec.key_parent,
            created,
            updated,
            rec.expires_at,
            version,
            version,
            rec.vector.astype(np.float32).tobytes(),
            rec.occurred_at if rec.occurred_at is not None else created,
        ),
    )
    return int(cur.lastrowid or 0)


def _add_tags(conn: sqlite3.Connection, seq: int, tags: Sequence[str]) -> None:
    if tags:
        conn.executemany("INSERT OR IGNORE INTO memory_tags (tag, seq) VALUES (?, ?)", [(t, seq) for t in tags])


def _history_of(id: str, namespace: str) -> tuple[str, list[Any]]:
    """The condition (on alias `m`) and params selecting one record's rows, in memories or memory_history."""
    return "m.namespace = ? AND m.id = ?", [namespace, id]


class SQLiteStorage:
    """The `Storage` contract over one SQLite file."""

    backend = "sqlite"
    reads_are_local = True  # a point read is a lookup in a local file

    def __init__(self, path: Path, dim: int, *, synchronous: str = "normal", history_versions: int = 10) -> None:
        self.path = Path(path)
        self.dim = dim
        # Prior versions each record keeps in memory_history (0: none); see storage/history.py.
        self.history_versions = history_versions
        self.lock: FileLock | None = None  # the data dir's, when opened by open_sqlite(); released by close()
        self._synchronous = synchronous.upper()
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._readers: dict[int, sqlite3.Connection] = {}  # thread ident -> that thread's reader
        self._readers_lock = threading.Lock()
        # Committed write transactions since open; this process is the only writer (the data dir is locked), so
        # an unchanged count means unchanged data: what the search result cache keys on.
        self.commits = 0
        self._present: frozenset[str] | None = None  # present_namespaces(), read once
        try:
            self._writer = self._connect()
            self.db = sqlite_utils.Database(self._writer)
            self._create_schema()
            self._version = self._read_version()
        except sqlite3.Error as exc:
            raise _translate(exc) from exc

    # -- connections -----------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA foreign_keys=OFF")
        conn.execute("PRAGMA busy_timeout=30000")
        # Page cache per connection: 8 MiB for the writer. No mmap: each connection maps the file anew, so the
        # same pages counted once per reader made RSS read 2.7 GiB at 100k records.
        conn.execute("PRAGMA cache_size=-8192")
        conn.execute("PRAGMA mmap_size=0")
        # Interrupts a statement once the calling request's query budget is spent (storage/budget.py).
        conn.set_progress_handler(over_budget, PROGRESS_STEPS)
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only=ON")
            # Readers are one per worker thread (eight busy clients: a dozen), and each fills its cache with the
            # random pages searches hydrate: 8 MiB each was ~100 MiB of RSS after 8-client searches at 100k.
            # The OS page cache serves a miss in microseconds.
            conn.execute(f"PRAGMA cache_size=-{READER_CACHE_KIB}")
            self._local.conn = conn
            with self._readers_lock:
                # Worker threads come and go (anyio retires a thread idle for 10 s): close the readers of threads
                # that are gone, or each retired thread would leave an open connection and its cache behind.
                alive = {t.ident for t in threading.enumerate()}
                for ident in [i for i in self._readers if i not in alive or i == threading.get_ident()]:
                    self._readers.pop(ident).close()
                self._readers[threading.get_ident()] = conn
        return conn

    def _create_schema(self) -> None:
        with self._write_lock:
            migrate(self._writer, self.dim)
        # A read-only data dir with migrations pending may lack the stemmed index: exact matching alone then.
        self._stemmed = bool(
            self._reader().execute("SELECT 1 FROM sqlite_master WHERE name = 'memories_fts_stem'").fetchone()
        )
        stored_dim = self.meta("dim")
        if stored_dim is not None and int(stored_dim) != self.dim:
            raise StorageError(f"this data dir holds {stored_dim}-dimensional vectors; the embedder makes {self.dim}")

    def meta(self, name: str) -> str | None:
        row = self._reader().execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def set_meta(self, name: str, value: str) -> None:
        with self._tx() as conn:
            conn.execute("INSERT OR REPLACE INTO meta(name, value) VALUES (?, ?)", (name, value))

    def _read_version(self) -> int:
        row = self._writer.execute(
            "SELECT max(coalesce((SELECT max(version) FROM memories), 0),"
            " coalesce((SELECT max(version) FROM tombstones), 0),"
            " coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE name = 'version_floor'), 0))"
        ).fetchone()
        return int(row[0] or 0)

    class _Tx:
        def __init__(self, storage: SQLiteStorage) -> None:
            self.s = storage
            self.after: list[Any] = []

        def __enter__(self) -> sqlite3.Connection:
            self.s._write_lock.acquire()
            try:
                self.s._writer.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                self.s._write_lock.release()
                raise _translate(exc) from exc
            return self.s._writer

        def __exit__(self, exc_type, exc, tb) -> None:
            try:
                if exc_type is None:
                    try:
                        self.s._writer.execute("COMMIT")
                    except sqlite3.Error as err:
                        # A failed COMMIT (disk full, I/O error) may have rolled back already; then ROLLBACK
                        # fails too, and that error must not replace the one that says what happened.
                        try:
                            self.s._writer.execute("ROLLBACK")
                        except sqlite3.Error:
                            pass
                        raise _translate(err) from err
                    # Counted after the commit: a reader that saw `commits` unchanged saw no newer write.
                    self.s.commits += 1
                    # Still under the write lock: the derived index sees writes in commit order, so a
                    # snapshot taken under this lock (see exclusive()) is exactly the committed state.
                    for fn in self.after:
                        fn()
                else:
                    # rollback() may fail if the error already ended the transaction; that is fine.
                    try:
                        self.s._writer.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                    if isinstance(exc, sqlite3.Error):
                        raise _translate(exc) from exc
            finally:
                self.s._write_lock.release()

    def _tx(self) -> SQLiteStorage._Tx:
        return SQLiteStorage._Tx(self)

    def exclusive(self) -> threading.Lock:
        """Hold off all writes (and their on_commit hooks): for snapshotting the derived index."""
        return self._write_lock

    @contextmanager
    def bulk(self, rows: int) -> Iterator[None]:
        """Around a load of `rows` records: nothing to prepare (the derived index follows each commit)."""
        yield

    def _next_version(self) -> int:
        # Called only under the write lock.
        self._version += 1
        return self._version

    # -- records and keys ------------------------------------------------------------------------------
    def put(self, records: Sequence[NewRecord], on_commit: OnCommit | None = None) -> list[PutResult]:
        results: list[PutResult] = []
        tx = self._tx()
        if on_commit is not None:
            tx.after.append(lambda: on_commit(results))
        with tx as conn:
            version = self._next_version()
            self._saw_namespaces(records)
            for rec in records:
                if rec.fence is not None:
                    self._check_fence(conn, *rec.fence, rec.namespace)
                existing = conn.execute(
                    "SELECT seq, content, created_at, expires_at, version FROM memories WHERE namespace = ? AND id = ?",
                    (rec.namespace, rec.id),
                ).fetchone()
                if rec.if_version is not None and (existing is None or existing[4] != rec.if_version):
                    raise VersionChanged(rec.id)
                if rec.absent and existing is not None and (existing[3] is None or existing[3] > rec.now):
                    raise VersionChanged(rec.id)
                # Whole microseconds, as iso() shows them: filtering on a returned created_at is then exact.
                now = round(rec.now, 6)
                tags_json, meta_json = _encoded(rec)
                if existing is None:
                    if rec.vector is None:
                        raise ContentChanged(rec.id)
                    born = now if rec.first_created_at is None else rec.first_created_at
                    seq = _insert(conn, rec, (tags_json, meta_json), born, now, version)
                    created, vector_changed = True, True
                else:
                    seq, old_content, old_created, old_expires, old_version = existing
                    # The UPDATE below writes only the version the caller read (if_version), else the one read here.
                    expected = rec.if_version if rec.if_version is not None else old_version
                    # An expired row not purged yet is gone for clients: writing its id again creates it anew.
                    revived = old_expires is not None and old_expires <= rec.now
                    if rec.vector is None and old_content != rec.content:
                        raise ContentChanged(rec.id)
                    vector_changed = rec.vector is not None
                    if self.history_versions:
                        # The version replaced, kept in this same transaction (storage/history.py).
                        conn.execute(_HISTORY_INSERT, (now, version, rec.op, seq))
                    cur = conn.execute(
                        "UPDATE memories SET content=?, tags=?, metadata=?, importance=?, key=?, key_parent=?,"
                        " created_at=?, updated_at=?, expires_at=?, version=?, occurred_at=COALESCE(?, occurred_at)"
                        + (", vector_version=?, vector=?" if vector_changed else "")
                        + " WHERE seq=? AND version=?",
                        (
                            rec.content,
                            tags_json,
                            meta_json,
                            rec.importance,
                            rec.key,
                            rec.key_parent,
                            now if revived else old_created,
                            now,
                            rec.expires_at,
                            version,
                            rec.occurred_at if rec.occurred_at is not None else (now if revived else None),
                            *((version, rec.vector.astype(np.float32).tobytes()) if vector_changed else ()),
                            seq,
                            expected,
                        ),
                    )
                    if cur.rowcount != 1:  # the conditional write: the row is no longer the version read
                        raise VersionChanged(rec.id)
                    conn.execute("DELETE FROM memory_tags WHERE seq = ?", (seq,))
                    created = revived
                _add_tags(conn, seq, rec.tags)
                results.append(PutResult(seq=seq, id=rec.id, created=created, vector_changed=vector_changed))
            self._prune_versions(conn, [r.id for r in results])
        return results

    def restore(self, records: Sequence[RestoredRecord], on_commit: OnCommit | None = None) -> list[PutResult]:
        """Insert records as exported (their own timestamps and vectors) in one transaction (import).

        Ids already present are skipped, never updated, so an interrupted import can run again. Returns the
        inserted records only.
        """
        results: list[PutResult] = []
        tx = self._tx()
        if on_commit is not None:
            tx.after.append(lambda: on_commit(results))
        with tx as conn:
            version: int | None = None
            self._saw_namespaces(records)
            for rec in records:
                if rec.vector is None:
                    raise ValueError(f"restore() needs a vector for {rec.id!r}")
                found = conn.execute(
                    "SELECT 1 FROM memories WHERE namespace = ? AND id = ?", (rec.namespace, rec.id)
                ).fetchone()
                if found is not None:
                    continue
                if version is None:  # only a write that inserts something takes a version
                    version = self._next_version()
                seq = _insert(conn, rec, _encoded(rec), rec.created_at, rec.updated_at, version)
                _add_tags(conn, seq, rec.tags)
                results.append(PutResult(seq=seq, id=rec.id, created=True, vector_changed=True))
        return results

    def dump(self, now: float, vectors: bool, batch: int = 1000) -> Iterator[dict[str, Any]]:
        """Every live record, oldest first, from one snapshot (export); with its raw vector bytes if asked."""
        conn = self._connect()  # a private connection: one read transaction for the whole scan
        try:
            yield from dump_rows(conn, now, vectors, batch)
        finally:
            conn.close()

    def _select_in(self, sql: str, values: Sequence[Any], params: Sequence[Any] = ()) -> Iterator[tuple]:
        """Rows of `sql` (whose `{in}` is an IN list) for `values`, chunked under SQLite's variable limit."""
        conn = self._reader()
        values = list(values)
        for start in range(0, len(values), _IN_CHUNK):
            chunk = values[start : start + _IN_CHUNK]
            yield from conn.execute(sql.format(marks=",".join("?" * len(chunk))), [*chunk, *params])

    def contents(self, ids: Sequence[str], namespace: str = DEFAULT) -> dict[str, str]:
        return dict(
            self._select_in(
                "SELECT id, content FROM memories WHERE id IN ({marks}) AND namespace = ?", ids, (namespace,)
            )
        )

    def get(self, id: str, now: float, namespace: str = DEFAULT) -> dict[str, Any] | None:
        """The live record (namespace, id), with its `version` (what `if_version` / an ETag names), or None."""
        row = (
            self._reader()
            .execute(
                f"SELECT {_ROW_COLUMNS}, m.version FROM memories m"
                " WHERE m.namespace = ? AND m.id = ? AND (m.expires_at IS NULL OR m.expires_at > ?)",
                (namespace, id, now),
            )
            .fetchone()
        )
        return {**_row(row[:ROW_WIDTH]), "version": int(row[ROW_WIDTH])} if row else None

    def rows(self, seqs: Sequence[int], flt: Filter | None, now: float) -> dict[int, dict[str, Any]]:
        if not len(seqs):
            return {}
        cond, params = compile_filter(flt, now, probe=True)
        sql = f"SELECT {_ROW_COLUMNS} FROM memories m WHERE m.seq IN ({{marks}}) AND {cond}"
        return {r[0]: _row(r) for r in self._select_in(sql, [int(s) for s in seqs], params)}

    def _delete_seqs(self, conn: sqlite3.Connection, seqs: list[int], op: str | None, now: float) -> None:
        version = self._next_version()
        ids: list[str] = []
        for start in range(0, len(seqs), 900):
            chunk = seqs[start : start + 900]
            marks = ",".join("?" * len(chunk))
            if op is not None and self.history_versions:
                # The deleted versions, kept in the delete's own transaction (never for the expiry purge: op None).
                conn.execute(
                    _HISTORY_INSERT.replace("m.seq = ?", f"m.seq IN ({marks})"), [round(now, 6), None, op, *chunk]
                )
                ids += [r[0] for r in conn.execute(f"SELECT id FROM memories WHERE seq IN ({marks})", chunk)]
            conn.execute(f"DELETE FROM memories WHERE seq IN ({marks})", chunk)
            conn.execute(f"DELETE FROM memory_tags WHERE seq IN ({marks})", chunk)
        conn.executemany("INSERT OR REPLACE INTO tombstones (seq, version) VALUES (?, ?)", [(s, version) for s in seqs])
        self._prune_versions(conn, ids)

    def _prune_versions(self, conn: sqlite3.Connection, ids: Sequence[str]) -> None:
        """Keep at most `history_versions` history rows of each record with one of these ids, in any namespace
        (in the writing transaction)."""
        if not self.history_versions:
            return
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = list(ids[start : start + _IN_CHUNK])
            conn.execute(
                "DELETE FROM memory_history WHERE hid IN (SELECT hid FROM (SELECT hid, row_number() OVER"
                " (PARTITION BY namespace, id ORDER BY version DESC) AS n FROM memory_history"
                f" WHERE id IN ({','.join('?' * len(chunk))})) WHERE n > ?)",
                [*chunk, self.history_versions],
            )

    def _delete_selected(
        self,
        sql: str,
        params: Sequence[Any],
        on_commit: OnCommit | None,
        *also: tuple[str, Sequence[Any]],
        op: str | None = None,
        now: float = 0.0,
    ) -> list[int]:
        """In one transaction: delete the records whose seqs `sql` selects (plus the `also` statements), then
        hand the seqs to `on_commit` after the commit, still under the write lock. With `op`, the deleted
        versions go to the history as ended by it."""
        seqs: list[int] = []
        tx = self._tx()
        if on_commit is not None:
            tx.after.append(lambda: on_commit(seqs))
        with tx as conn:
            seqs[:] = [r[0] for r in conn.execute(sql, list(params)).fetchall()]
            if seqs:
                self._delete_seqs(conn, seqs, op, now)
            for stmt, args in also:
                conn.execute(stmt, args)
        return seqs

    def delete(
        self,
        ids: Sequence[str],
        on_commit: OnCommit | None = None,
        if_version: int | None = None,
        namespace: str = DEFAULT,
        now: float | None = None,
    ) -> list[int]:
        # With `if_version`, only rows still at that version are selected, in the same write transaction.
        cond, args = (
            ("", [namespace, *ids]) if if_version is None else (" AND version = ?", [namespace, *ids, if_version])
        )
        return self._delete_selected(
            f"SELECT seq FROM memories WHERE namespace = ? AND id IN ({','.join('?' * len(ids))}){cond}",
            args,
            on_commit,
            op="delete",
            now=time.time() if now is None else now,
        )

    def delete_where(
        self, flt: Filter, now: float, dry_run: bool, on_commit: OnCommit | None = None
    ) -> tuple[int, list[int]]:
        cond, params = compile_filter(flt, now)
        if dry_run:
            return self.count(flt, now), []
        seqs = self._delete_selected(
            f"SELECT m.seq FROM memories m WHERE {cond}", params, on_commit, op="delete_where", now=now
        )
        return len(seqs), seqs

    def list(
        self, flt: Filter | None, now: float, limit: int, cursor: int | None, newest_first: bool
    ) -> tuple[list[dict[str, Any]], int | None]:
        cond, params = compile_filter(flt, now)
        if cursor is not None:
            cond += " AND m.seq " + ("<" if newest_first else ">") + " ?"
            params.append(cursor)
        rows = (
            self._reader()
            .execute(
                f"SELECT {_ROW_COLUMNS} FROM memories m WHERE {cond} ORDER BY m.seq {'DESC' if newest_first else 'ASC'}"
                " LIMIT ?",
                [*params, limit + 1],
            )
            .fetchall()
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return [_row(r) for r in rows], (rows[-1][0] if more and rows else None)

    def find_key(
        self, key: str, include_children: bool, flt: Filter | None, now: float, limit: int
    ) -> list[dict[str, Any]]:
        cond, params = compile_filter(flt, now)
        conn = self._reader()
        # Two index range scans (key, version) and (key_parent, version), merged newest-first.
        sql = (
            f"SELECT {_ROW_COLUMNS}, m.version FROM memories m WHERE m.key = ? AND {cond}"
            " ORDER BY m.version DESC LIMIT ?"
        )
        rows = conn.execute(sql, [key, *params, limit]).fetchall()
        if include_children:
            sql = sql.replace("m.key = ?", "m.key_parent = ?")
            rows += conn.execute(sql, [key, *params, limit]).fetchall()
            rows.sort(key=lambda r: r[-1], reverse=True)
        return [_row(r[:-1]) for r in rows[:limit]]

    def newest_per_parent(
        self, prefix: str, now: float, limit: int, offset: int, namespace: str = DEFAULT
    ) -> tuple[list[dict[str, Any]], int]:
        """The newest live record of each key parent starting with `prefix`, newest first, and how many parents.

        One pass over the (namespace, key_parent, version) index range: `checkpoint:` lists each workflow once, by
        its latest checkpoint, without reading every checkpoint record.
        """
        upper = prefix_upper(prefix)
        groups = (
            "SELECT key_parent AS p, max(version) AS v FROM memories WHERE namespace = ? AND key_parent >= ?"
            + (" AND key_parent < ?" if upper is not None else "")
            + " AND (expires_at IS NULL OR expires_at > ?) GROUP BY key_parent"
        )
        args = (namespace, prefix, upper, now) if upper is not None else (namespace, prefix, now)
        conn = self._reader()
        total = conn.execute(f"SELECT count(*) FROM ({groups})", args).fetchone()[0]
        rows = conn.execute(
            f"SELECT {_ROW_COLUMNS} FROM ({groups} ORDER BY v DESC LIMIT ? OFFSET ?) g"
            " JOIN memories m ON m.namespace = ? AND m.key_parent = g.p AND m.version = g.v ORDER BY g.v DESC",
            (*args, limit, offset, namespace),
        ).fetchall()
        return [_row(r) for r in rows], int(total)

    # -- history (storage/history.py) --------------------------------------------------------------------
    def history(
        self, id: str, now: float, limit: int, namespace: str = DEFAULT
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The live record (with its version) or None, and up to `limit` prior versions newest first, each with
        `version`, `superseded_at`, `superseded_by` and `op`; both from one snapshot."""
        where, args = _history_of(id, namespace)
        conn = self._reader()
        conn.execute("BEGIN")
        try:
            live = conn.execute(
                f"SELECT {_ROW_COLUMNS}, m.version FROM memories m WHERE {where}"
                " AND (m.expires_at IS NULL OR m.expires_at > ?)",
                [*args, now],
            ).fetchone()
            rows = conn.execute(
                f"SELECT {_ROW_COLUMNS}, m.version, m.superseded_at, m.superseded_by, m.op FROM memory_history m"
                f" WHERE {where} ORDER BY m.version DESC LIMIT ?",
                [*args, limit],
            ).fetchall()
        finally:
            conn.execute("COMMIT")
        current = {**_row(live[:ROW_WIDTH]), "version": int(live[ROW_WIDTH])} if live else None
        prior = [prior_version(_row(r[:ROW_WIDTH]), r[ROW_WIDTH:], iso) for r in rows]
        return current, prior

    def get_version(self, id: str, version: int, namespace: str = DEFAULT) -> dict[str, Any] | None:
        """Version `version` of the record (live or kept in the history), with its `vector`; None if not kept."""
        where, args = _history_of(id, namespace)
        one = f"SELECT {_ROW_COLUMNS}, m.version, m.vector FROM {{table}} m WHERE {where} AND m.version = ?"
        row = (
            self._reader()
            .execute(
                f"{one.format(table='memories')} UNION ALL {one.format(table='memory_history')} LIMIT 1",
                [*args, version, *args, version],
            )
            .fetchone()
        )
        if row is None:
            return None
        return {
            **_row(row[:ROW_WIDTH]),
            "version": int(row[ROW_WIDTH]),
            "vector": np.frombuffer(row[ROW_WIDTH + 1], dtype=np.float32),
        }

    def as_of(self, id: str, at: float, namespace: str = DEFAULT) -> dict[str, Any] | None:
        """The version of the record that was live at `at` (written at or before it, not yet replaced, deleted
        or expired), with its `version`; None if none was, or that version is past the history's retention."""
        where, args = _history_of(id, namespace)
        live = "(m.expires_at IS NULL OR m.expires_at > ?)"
        row = (
            self._reader()
            .execute(
                f"SELECT {_ROW_COLUMNS}, m.version FROM memories m WHERE {where} AND m.updated_at <= ? AND {live}"
                f" UNION ALL SELECT {_ROW_COLUMNS}, m.version FROM memory_history m WHERE {where}"
                f" AND m.updated_at <= ? AND m.superseded_at > ? AND {live} ORDER BY version DESC LIMIT 1",
                [*args, at, at, *args, at, at, at],
            )
            .fetchone()
        )
        return {**_row(row[:ROW_WIDTH]), "version": int(row[ROW_WIDTH])} if row else None

    def deleted(
        self, now: float, limit: int, cursor: int | None, namespace: str = DEFAULT
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Records deleted (by id or filter) and not written again, newest deletion first: each one's version
        as deleted, with `version`, `deleted_at` and `deleted_by`; and the cursor of the next page."""
        rows = (
            self._reader()
            .execute(
                f"SELECT {_ROW_COLUMNS}, m.version, m.superseded_at, m.op, m.hid FROM memory_history m"
                " WHERE m.namespace = ? AND m.superseded_by IS NULL AND m.hid < ?"
                " AND m.hid = (SELECT max(h.hid) FROM memory_history h WHERE h.namespace = m.namespace AND h.id = m.id)"
                " AND NOT EXISTS (SELECT 1 FROM memories l WHERE l.namespace = m.namespace AND l.id = m.id"
                " AND (l.expires_at IS NULL OR l.expires_at > ?)) ORDER BY m.hid DESC LIMIT ?",
                (namespace, 2**63 - 1 if cursor is None else cursor, now, limit + 1),
            )
            .fetchall()
        )
        more = len(rows) > limit
        rows = rows[:limit]
        out = [deleted_version(_row(r[:ROW_WIDTH]), r[ROW_WIDTH:], iso) for r in rows]
        return out, (int(rows[-1][ROW_WIDTH + 3]) if more and rows else None)

    def prune_history(self, before: float) -> int:
        """Drop the history rows of versions replaced or deleted before `before`. Returns how many."""
        # Looked for first: an empty write would still count as a commit and empty the result cache.
        if self._reader().execute("SELECT 1 FROM memory_history WHERE superseded_at < ? LIMIT 1", (before,)).fetchone():
            with self._tx() as conn:
                return conn.execute("DELETE FROM memory_history WHERE superseded_at < ?", (before,)).rowcount
        return 0

    # -- tags and filters ------------------------------------------------------------------------------
    def count(self, flt: Filter | None, now: float) -> int:
        cond, params = compile_filter(flt, now)
        return int(self._reader().execute(f"SELECT count(*) FROM memories m WHERE {cond}", params).fetchone()[0])

    def candidate_seqs(self, flt: Filter, now: float, cap: int) -> np.ndarray | None:
        """The seqs of the live records matching `flt`, or None when more than `cap` match.

        Never counts a broad filter to the end: it stops at cap + 1. A `tags` filter drives the query from the
        tag table's (tag, seq) index, so a rare tag costs as many probes as it has records, and a common one
        stops after cap + 1 of them.
        """
        c = parse_filter(flt)
        if c.tags:
            cond, params = compile_filter(c, now, probe=True, omit_tags=True)
            sql = (
                "SELECT DISTINCT m.seq FROM memory_tags t CROSS JOIN memories m ON m.seq = t.seq"
                f" WHERE t.tag IN ({','.join('?' * len(c.tags))}) AND {cond} LIMIT ?"
            )
            params = [*c.tags, *params, cap + 1]
        else:
            cond, params = compile_filter(c, now)
            sql = f"SELECT m.seq FROM memories m WHERE {cond} LIMIT ?"
            params = [*params, cap + 1]
        rows = self._reader().execute(sql, params).fetchall()
        if len(rows) > cap:
            return None
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def tag_count_upto(self, tags: Sequence[str], cap: int) -> int:
        """How many (tag, record) entries the tags have, counting no further than cap + 1.

        An upper bound on a `tags` filter's matches (expired and other conditions not applied), read from the
        (tag, seq) index alone: cheap enough to ask before every filtered search.
        """
        marks = ",".join("?" * len(tags))
        row = (
            self._reader()
            .execute(
                f"SELECT count(*) FROM (SELECT 1 FROM memory_tags WHERE tag IN ({marks}) LIMIT ?)", [*tags, cap + 1]
            )
            .fetchone()
        )
        return int(row[0])

    def matching(self, seqs: Sequence[int], flt: Filter | None, now: float) -> set[int]:
        """Which of these seqs are live records passing `flt` (one probe per seq; no hydration)."""
        if not len(seqs):
            return set()
        cond, params = compile_filter(flt, now, probe=True)
        sql = f"SELECT m.seq FROM memories m WHERE m.seq IN ({{marks}}) AND {cond}"
        return {r[0] for r in self._select_in(sql, [int(s) for s in seqs], params)}

    def namespace_count_upto(self, flt: Filter | Conditions, cap: int) -> int:
        """How many records the filter's namespaces hold, counting no further than cap + 1 (expired ones too):
        from the namespace index alone, cheap enough to ask before every namespace-scoped search."""
        ns_sql, params = parse_filter(flt).namespace_sql("?")
        if ns_sql is None:
            return cap + 1
        row = (
            self._reader()
            .execute(f"SELECT count(*) FROM (SELECT 1 FROM memories m WHERE {ns_sql} LIMIT ?)", [*params, cap + 1])
            .fetchone()
        )
        return int(row[0])

    def candidate_vectors(self, flt: Filter | Conditions, now: float, cap: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(seqs, vectors) of the live records matching `flt` in one pass, or None when more than `cap` match.

        What `candidate_seqs` then `vectors` give, reading each row once: half the time for a namespace of 1,000
        records (1.8 against 3.5 ms). For filters known to be narrow: a broad one reads cap + 1 vectors first.
        """
        cond, params = compile_filter(parse_filter(flt), now)
        rows = self._reader().execute(
            f"SELECT m.seq, m.vector FROM memories m WHERE {cond} LIMIT ?", [*params, cap + 1]
        )
        found = rows.fetchall()
        if len(found) > cap:
            return None
        if not found:
            return np.empty(0, dtype=np.int64), np.empty((0, self.dim), dtype=np.float32)
        seqs = np.fromiter((r[0] for r in found), dtype=np.int64, count=len(found))
        return seqs, np.frombuffer(b"".join(r[1] for r in found), dtype=np.float32).reshape(len(found), self.dim)

    def vectors(self, seqs: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """The stored vectors of these seqs (those still present), as (seqs, matrix)."""
        out_seqs: list[int] = []
        blobs: list[bytes] = []
        for seq, blob in self._select_in(
            "SELECT seq, vector FROM memories WHERE seq IN ({marks})", [int(s) for s in seqs]
        ):
            out_seqs.append(seq)
            blobs.append(blob)
        if not out_seqs:
            return np.empty(0, dtype=np.int64), np.empty((0, self.dim), dtype=np.float32)
        matrix = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(out_seqs), self.dim)
        return np.array(out_seqs, dtype=np.int64), matrix

    # -- full text -------------------------------------------------------------------------------------
    def keyword_match(self, query: str, total: int) -> str | None:
        """The FTS5 query for a free-text query: its rarest informative phrases, any of which may match.

        Each whitespace-separated chunk is a phrase of its tokens (`os.path.join` must match `os path join` in
        that order). Stop words go (unless nothing else is left), then phrases whose rarest token is held by
        more than a fifth of the records (unless that would leave none: then the rarest stays), then all but
        the MAX_KEYWORD_TERMS rarest. Common terms add almost nothing to a BM25 ranking but make FTS5 score
        most of the table.
        """
        phrases = list(dict.fromkeys(tuple(t) for t in (keyword_terms(c) for c in query.split()) if t))
        if not phrases:
            return None
        phrases = drop_stopwords(phrases, lambda p: p)
        tokens = sorted({t for p in phrases for t in p})
        df = dict(
            self._reader().execute(
                f"SELECT term, doc FROM memories_fts_vocab WHERE term IN ({','.join('?' * len(tokens))})", tokens
            )
        )
        rarity = {p: min(df.get(t, 0) for t in p) for p in phrases}
        kept = rarest(phrases, rarity, common=max(50, total // 5))
        return " OR ".join('"' + " ".join(p) + '"' for p in kept)

    def keyword(
        self, query: str, flt: Filter | None, now: float, limit: int, total: int | None = None
    ) -> list[tuple[int, float]]:
        match = fts_query(query) if total is None else self.keyword_match(query, total)
        if match is None:
            return []
        cond, params = compile_filter(flt, now, probe=True)
        if self._stemmed:
            # Stemmed matches, ranked by both BM25 scores: an exact spelling adds its own to the stem's.
            sql = (
                "WITH e AS (SELECT rowid, bm25(memories_fts) AS r FROM memories_fts WHERE memories_fts MATCH ?)"
                " SELECT f.rowid, bm25(memories_fts_stem) + coalesce(e.r, 0.0) AS rank FROM memories_fts_stem f"
                " JOIN memories m ON m.seq = f.rowid LEFT JOIN e ON e.rowid = f.rowid"
                f" WHERE memories_fts_stem MATCH ? AND {cond} ORDER BY rank LIMIT ?"
            )
            args = [match, match, *params, limit]
        else:
            sql = (
                "SELECT f.rowid, bm25(memories_fts) AS rank FROM memories_fts f JOIN memories m ON m.seq = f.rowid"
                f" WHERE memories_fts MATCH ? AND {cond} ORDER BY rank LIMIT ?"
            )
            args = [match, *params, limit]
        try:
            rows = self._reader().execute(sql, args).fetchall()
        except sqlite3.OperationalError as exc:
            raise InvalidInput("query", f"cannot be used as a keyword query: {exc}") from exc
        return [(int(seq), -float(rank)) for seq, rank in rows]

    # -- vectors, for the derived index ------------------------------------------------------------------
    def max_vector_version(self) -> int:
        return self._version

    def changes_since(self, version: int) -> Changes:
        conn = self._reader()
        # Read both under one snapshot so a concurrent write cannot fall between them.
        conn.execute("BEGIN")
        try:
            top = self._read_version_with(conn)
            rows = conn.execute(
                "SELECT seq, vector FROM memories WHERE vector_version > ? AND vector_version <= ?", (version, top)
            ).fetchall()
            dels = conn.execute(
                "SELECT seq FROM tombstones WHERE version > ? AND version <= ?", (version, top)
            ).fetchall()
        finally:
            conn.execute("COMMIT")
        return Changes(
            version=top,
            upserts=[(int(s), np.frombuffer(v, dtype=np.float32)) for s, v in rows],
            deletes=[int(r[0]) for r in dels],
        )

    @staticmethod
    def _read_version_with(conn: sqlite3.Connection) -> int:
        row = conn.execute(
            "SELECT max(coalesce((SELECT max(version) FROM memories), 0),"
            " coalesce((SELECT max(version) FROM tombstones), 0),"
            " coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE name = 'version_floor'), 0))"
        ).fetchone()
        return int(row[0] or 0)

    def iter_vectors(self, batch: int = 10_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        conn = self._connect()  # a private snapshot for a long scan
        try:
            last = 0
            while True:
                rows = conn.execute(
                    "SELECT seq, vector FROM memories WHERE seq > ? ORDER BY seq LIMIT ?", (last, batch)
                ).fetchall()
                if not rows:
                    return
                seqs = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
                vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), self.dim)
                yield seqs, vecs
                last = int(seqs[-1])
        finally:
            conn.close()

    def live_seqs(self) -> np.ndarray:
        # From the table itself (the truth), never from whichever small index SQLite would rather scan: `check`
        # asks this of databases whose indexes may be the damaged part.
        rows = self._reader().execute("SELECT seq FROM memories NOT INDEXED").fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def purge_expired(self, now: float, on_commit: OnCommit | None = None) -> list[int]:
        return self._delete_selected(
            "SELECT seq FROM memories WHERE expires_at IS NOT NULL AND expires_at <= ?",
            (now,),
            on_commit,
            # Lapsed claims stay a day: their fence still admits writes a journal delivers late, until taken over.
            ("DELETE FROM claims WHERE expires_at <= ?", (now - CLAIM_GRACE_SECONDS,)),
        )

    def forget_tombstones(self, upto_version: int) -> None:
        """Tombstones the persisted index already reflects are no longer needed."""
        with self._tx() as conn:
            conn.execute("DELETE FROM tombstones WHERE version <= ?", (upto_version,))
            # The forgotten tombstones may have held the highest version. Keep it, or after a restart versions
            # would start lower again, and an index saved at the higher version would skip the writes reusing them.
            conn.execute("INSERT OR REPLACE INTO meta(name, value) VALUES ('version_floor', ?)", (str(self._version),))

    # -- repair (`memory-spine check`, checkup.py) ------------------------------------------------------------
    def malformed_rows(self) -> tuple[list[tuple[int, str, int]], list[tuple[int, str, str]]]:
        """Rows whose vector has the wrong byte length (seq, id, bytes), and rows whose metadata is not a JSON
        object (seq, id, metadata), read from the table itself, never from an index that may be the damage."""
        conn = self._reader()
        vectors = conn.execute(
            "SELECT seq, id, length(vector) FROM memories NOT INDEXED WHERE length(vector) != ? ORDER BY seq",
            (self.dim * 4,),
        ).fetchall()
        metadata = conn.execute(
            "SELECT seq, id, metadata FROM memories NOT INDEXED"
            " WHERE NOT json_valid(metadata) OR json_type(metadata) != 'object' ORDER BY seq"
        ).fetchall()
        return vectors, metadata

    def contents_by_seq(self, seqs: Sequence[int]) -> dict[int, str]:
        """The content of each of these seqs still present."""
        return dict(self._select_in("SELECT seq, content FROM memories WHERE seq IN ({marks})", list(seqs)))

    def replace_vectors(self, vectors: Sequence[tuple[int, bytes]]) -> None:
        """Store new vectors for these seqs in one transaction, each with a new version, so an index that loads
        (and catches up) sees them."""
        self._repair(
            "UPDATE memories SET vector = ?, vector_version = ?, version = ? WHERE seq = ?",
            [(blob, seq) for seq, blob in vectors],
            versioned=True,  # (blob, seq) -> (blob, version, version, seq), versions taken under the lock
        )

    def wrap_metadata(self, seqs: Sequence[int]) -> None:
        """Keep unparseable metadata as `{"unparsed_metadata": <the text>}`, in one transaction."""
        self._repair(
            "UPDATE memories SET metadata = json_object('unparsed_metadata', metadata) WHERE seq = ?",
            [(s,) for s in seqs],
            versioned=False,
        )

    def _repair(self, sql: str, rows: Sequence[tuple], *, versioned: bool) -> None:
        # Under the write lock but outside _Tx: a repair is not a commit the derived index follows (it is
        # rebuilt or caught up after), and the result cache is not open during `check`.
        with self.exclusive():
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                for row in rows:
                    if versioned:
                        v = self._next_version()
                        row = (row[0], v, v, *row[1:])
                    conn.execute(sql, row)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # -- claims ----------------------------------------------------------------------------------------
    _CLAIM_COLS = "key, holder, acquired_at, expires_at, fence, namespace"

    @staticmethod
    def _claim(row: Sequence[Any]) -> dict[str, Any]:
        return claim_dict(row, iso)

    @staticmethod
    def _check_fence(conn: sqlite3.Connection, key: str, token: int, namespace: str = DEFAULT) -> None:
        """Under the write lock: the claim on `key` must still carry fence `token` (live or not, if not replaced)."""
        row = conn.execute("SELECT fence FROM claims WHERE namespace = ? AND key = ?", (namespace, key)).fetchone()
        if row is None or row[0] != token:
            raise StaleFence(key, token, row[0] if row else None)

    def claim(
        self, key: str, holder: str, lease: float, now: float, token_hash: str, namespace: str = DEFAULT
    ) -> tuple[bool, dict[str, Any]]:
        with self._tx() as conn:
            row = conn.execute(
                f"SELECT {self._CLAIM_COLS} FROM claims WHERE namespace = ? AND key = ?", (namespace, key)
            ).fetchone()
            if row is not None and row[3] > now:
                return False, self._claim(row)
            got = conn.execute("SELECT value FROM meta WHERE name = 'claim_fence'").fetchone()
            fence = (int(got[0]) if got else 0) + 1
            conn.execute("INSERT OR REPLACE INTO meta(name, value) VALUES ('claim_fence', ?)", (str(fence),))
            conn.execute(
                "INSERT OR REPLACE INTO claims (namespace, key, holder, acquired_at, expires_at, fence, token_hash)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (namespace, key, holder, now, now + lease, fence, token_hash),
            )
            return True, self._claim((key, holder, now, now + lease, fence, namespace))

    def renew(
        self, key: str, token_hash: str, lease: float, now: float, namespace: str = DEFAULT
    ) -> dict[str, Any] | None:
        """Extend the lease whose token hashes to `token_hash` (even lapsed, while nobody took the key over).

        Returns the renewed claim, or None when the key's claim is not that lease any more.
        """
        with self._tx() as conn:
            row = conn.execute(
                "UPDATE claims SET expires_at = ? WHERE namespace = ? AND key = ? AND token_hash = ?"
                f" RETURNING {self._CLAIM_COLS}",
                (now + lease, namespace, key, token_hash),
            ).fetchone()
            return self._claim(row) if row else None

    def get_claim(self, key: str, now: float, namespace: str = DEFAULT) -> dict[str, Any] | None:
        row = (
            self._reader()
            .execute(
                f"SELECT {self._CLAIM_COLS} FROM claims WHERE namespace = ? AND key = ? AND expires_at > ?",
                (namespace, key, now),
            )
            .fetchone()
        )
        return self._claim(row) if row else None

    def release(self, key: str, token_hash: str, now: float, namespace: str = DEFAULT) -> dict[str, Any] | None:
        """Release the claim whose lease token hashes to `token_hash`. Returns the claim that blocks the release
        (another lease's), or None when released.

        Raises:
            NotFound: no live claim on the key, and no lapsed one of this token.
        """
        with self._tx() as conn:
            row = conn.execute(
                f"SELECT {self._CLAIM_COLS}, token_hash FROM claims WHERE namespace = ? AND key = ?", (namespace, key)
            ).fetchone()
            if row is not None and row[6] == token_hash:
                conn.execute("DELETE FROM claims WHERE namespace = ? AND key = ?", (namespace, key))
                return None
            if row is None or row[3] <= now:
                raise NotFound(f"no live claim on key {key!r}")
            return self._claim(row[:6])

    # -- housekeeping ----------------------------------------------------------------------------------
    def namespaces(self, now: float) -> dict[str, int]:
        """Each namespace holding live records -> how many (from the namespace index)."""
        rows = self._reader().execute(
            "SELECT namespace, count(*) FROM memories WHERE expires_at IS NULL OR expires_at > ?"
            " GROUP BY namespace ORDER BY namespace",
            (now,),
        )
        return {ns: int(n) for ns, n in rows}

    def present_namespaces(self) -> frozenset[str]:
        """Every namespace that may hold records (a superset: kept as writes add them, never narrowed until
        restart). The planner drops a namespace selection that covers them all: it would filter nothing."""
        present = self._present
        if present is not None:
            return present
        with self._write_lock:
            if self._present is None:
                rows = self._writer.execute("SELECT DISTINCT namespace FROM memories").fetchall()
                self._present = frozenset(r[0] for r in rows)
            return self._present

    def _saw_namespaces(self, records: Sequence[NewRecord]) -> None:
        # Under the write lock, inside the write's transaction: a reader that sees the new rows after the commit
        # cannot have read the set from before it.
        if self._present is not None and any(r.namespace not in self._present for r in records):
            self._present = self._present | {r.namespace for r in records}

    def stats(self, now: float, namespace: str = DEFAULT) -> dict[str, Any]:
        conn = self._reader()
        total = conn.execute(
            "SELECT count(*) FROM memories WHERE namespace = ? AND (expires_at IS NULL OR expires_at > ?)",
            (namespace, now),
        ).fetchone()[0]
        tags = dict(
            conn.execute(
                "SELECT t.tag, count(*) AS n FROM memories m JOIN memory_tags t ON t.seq = m.seq"
                " WHERE m.namespace = ? GROUP BY t.tag ORDER BY n DESC, t.tag LIMIT 100",
                (namespace,),
            ).fetchall()
        )
        size = 0
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(self.path) + suffix)
            if p.exists():
                size += p.stat().st_size
        return {"namespace": namespace, "total_memories": int(total), "tags": tags, "database_bytes": size}

    def check(self) -> list[str]:
        try:
            rows = self._reader().execute("PRAGMA integrity_check").fetchall()
        except sqlite3.DatabaseError as exc:
            # Damage bad enough stops the check itself: that is its finding, not a crash of `memory-spine check`.
            return [f"integrity_check stopped: {exc}"]
        problems = [r[0] for r in rows if r[0] != "ok"]
        return problems

    def ping(self) -> dict[str, Any]:
        """For /health: the embedded database is a file this process holds open, so nothing to ask."""
        return {"backend": self.backend, "status": "ok"}

    def close(self) -> None:
        with self._readers_lock:
            for conn in self._readers.values():
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._readers.clear()
        with self._write_lock:
            try:
                self._writer.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error:
                pass
            self._writer.close()
        if self.lock is not None:
            self.lock.release()
            self.lock = None


DB_FILE = "memories.db"
LOCK_FILE = "memory-spine.lock"


def lock_data_dir(data_dir: Path) -> FileLock:
    """Create the data dir if needed and take its lock: one process at a time serves a data dir.

    Raises:
        DataDirLocked: another process holds it. ReadOnlyStorage: the dir cannot be created, written or locked.
    """
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReadOnlyStorage(f"cannot create the data dir {data_dir}: {exc}") from exc
    if not os.access(data_dir, os.W_OK):
        raise ReadOnlyStorage(f"the data dir {data_dir} is not writable")
    lock = FileLock(str(data_dir / LOCK_FILE), timeout=0)
    try:
        lock.acquire()
    except Timeout as exc:
        raise DataDirLocked(
            f"another memory-spine process is already serving {data_dir} (lock file {data_dir / LOCK_FILE});"
            " stop it or choose another --data-dir"
        ) from exc
    except OSError as exc:
        raise ReadOnlyStorage(f"cannot lock the data dir {data_dir}: {exc}") from exc
    return lock


def open_sqlite(settings: Any, dim: int) -> SQLiteStorage:
    """The embedded default: lock `settings.data_dir`, open its SQLite file (the registry entry for "sqlite")."""
    data_dir = Path(settings.data_dir).expanduser()
    lock = lock_data_dir(data_dir)
    try:
        storage = SQLiteStorage(
            data_dir / DB_FILE, dim, synchronous=settings.synchronous, history_versions=keep_versions(settings)
        )
    except BaseException:
        lock.release()
        raise
    storage.lock = lock
    return storage
