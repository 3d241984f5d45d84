"""PostgreSQL + pgvector storage: the `Storage` contract in one database that many service replicas share.

Schema (created by the versioned migrations in `pg_schema.py`, under an advisory lock so replicas starting
together migrate once):

- `memories`: one row per record; `seq` (identity) names it to search, `version` (a sequence) orders writes
  (newest-first key lookups, PATCH's if_version); tags as `text[]` (GIN), metadata as `jsonb` (GIN
  `jsonb_path_ops`, so `where` equalities are index lookups), the vector in a pgvector column with an HNSW
  index (`vector_cosine_ops`), and a generated `tsvector` column (GIN) for keyword search.
- `claims(key, holder, acquired_at, expires_at, fence, token_hash)`: leases (fence from the sequence
  `claim_fences`), taken with one atomic `INSERT ... ON CONFLICT DO
  UPDATE ... WHERE` and timed by the database clock, so replicas with skewed clocks still agree.
- `memory_spine_meta`: the model and dimension the vectors belong to.

Records keep the service's clock for created/updated/expiry times (as in SQLite), in whole microseconds.
Searching lives in `pg_search.py`. psycopg and pool errors are translated into `memory_spine.errors` here.
"""

from __future__ import annotations

import json
import re
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import psycopg
import psycopg_pool
from psycopg import sql
from psycopg.adapt import Dumper, Loader
from psycopg.pq import Format
from psycopg.types.json import Jsonb

from ..errors import (
    InvalidInput,
    MemorySpineError,
    NotFound,
    QueryTimeout,
    ReadOnlyStorage,
    StorageError,
    StorageFull,
)
from ..models import Filter
from ..namespaces import DEFAULT
from . import budget, redact
from .base import ContentChanged, NewRecord, PutResult, RestoredRecord, StaleFence, VersionChanged, claim_dict
from .filters import Conditions, Group, Node, parse_filter, prefix_upper
from .history import column_names, keep_versions
from .pg_schema import migrate

OnCommit = Callable[[Any], None]
# memory_history holds these columns too (it is read with this list): a new one is also a line in history.COLUMNS.
ROW_COLUMNS = (
    "m.seq, m.id, m.content, m.tags, m.metadata, m.importance, m.key, m.created_at, m.updated_at, m.expires_at,"
    " m.namespace, m.occurred_at"
)
ROW_WIDTH = 12  # columns in ROW_COLUMNS: what a query selects after them starts at this index
# History rows copy history.COLUMNS (which include the namespace); a record is addressed by (namespace, id).
_HISTORY_COLUMNS = f"{column_names()}, embedding, superseded_at, superseded_by, op"
_HISTORY_INSERT = (
    f"INSERT INTO memory_history ({_HISTORY_COLUMNS})"
    f" SELECT {column_names('m.')}, m.embedding, %s, %s, %s FROM memories m WHERE m.seq = %s"
)


def _history_of(id: str, namespace: str) -> tuple[str, list[Any]]:
    """The condition (on alias `m`) and params selecting one record's rows, in memories or memory_history."""
    return "m.namespace = %s AND m.id = %s", [namespace, id]


BULK_ROWS = 5000  # loads at least this large build the HNSW index after the rows (see bulk())
_RANGE = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


# -- conversions ------------------------------------------------------------------------------------------------
def to_dt(ts: float | datetime | None) -> datetime | None:
    """Epoch seconds (or a datetime, naive = UTC) -> an aware datetime in whole microseconds."""
    if ts is None:
        return None
    if isinstance(ts, datetime):
        return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
    return datetime.fromtimestamp(ts, tz=UTC)


def iso(dt: datetime | None) -> str | None:
    """The API's time format, as SQLite's storage renders it: `2026-11-24T06:10:00.123456Z`."""
    if dt is None:
        return None
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def row_dict(r: Sequence[Any]) -> dict[str, Any]:
    seq, id_, content, tags, metadata, importance, key, created, updated, expires, namespace, occurred = r[:ROW_WIDTH]
    return {
        "seq": seq,
        "id": id_,
        "namespace": namespace,
        "content": content,
        "tags": list(tags),
        "metadata": metadata,
        "importance": importance,
        "key": key,
        "created_at": iso(created),
        "updated_at": iso(updated),
        "expires_at": iso(expires),
        "occurred_at": iso(occurred if occurred is not None else created),
    }


class _VectorDumper(Dumper):
    """numpy float32 -> pgvector's binary form: dim, unused, then big-endian float32s."""

    format = Format.BINARY

    def dump(self, obj: Any) -> bytes:
        v = np.asarray(obj, dtype=np.float32).reshape(-1)
        return struct.pack(">HH", v.shape[0], 0) + v.astype(">f4").tobytes()


class _VectorLoader(Loader):
    format = Format.BINARY

    def load(self, data: Any) -> np.ndarray:
        dim = struct.unpack_from(">H", data)[0]
        return np.frombuffer(bytes(data[4 : 4 + 4 * dim]), dtype=">f4").astype(np.float32)


class _VectorTextLoader(Loader):
    format = Format.TEXT

    def load(self, data: Any) -> np.ndarray:
        return np.array(json.loads(bytes(data).decode()), dtype=np.float32)


# The columns a new record's row is written with (put's INSERT, restore's COPY), in `_insert_row`'s order, with
# the staging table's column types and the binary COPY's types.
_INSERT_TYPES = (
    ("id", "text"),
    ("content", "text"),
    ("tags", "text[]"),
    ("metadata", "jsonb"),
    ("importance", "text"),
    ("key", "text"),
    ("key_parent", "text"),
    ("created_at", "timestamptz"),
    ("updated_at", "timestamptz"),
    ("expires_at", "timestamptz"),
    ("version", "bigint"),
    ("embedding", "vector"),
    ("namespace", "text"),
    ("occurred_at", "timestamptz"),
)
_COPY_TYPES = tuple((name, "int8" if kind == "bigint" else kind) for name, kind in _INSERT_TYPES)
_INSERT_COLUMNS = ", ".join(name for name, _ in _INSERT_TYPES)


def _insert_row(rec: NewRecord, created: datetime | None, updated: datetime | None, version: int) -> tuple:
    """A new record's row in _INSERT_COLUMNS order (put and restore: only the timestamps differ)."""
    return (
        rec.id,
        rec.content,
        rec.tags,
        Jsonb(rec.metadata),
        rec.importance,
        rec.key,
        rec.key_parent,
        created,
        updated,
        to_dt(rec.expires_at),
        version,
        np.asarray(rec.vector, dtype=np.float32),
        rec.namespace,
        to_dt(rec.occurred_at) if rec.occurred_at is not None else created,
    )


def _translate(exc: Exception) -> MemorySpineError:
    if isinstance(exc, MemorySpineError):
        return exc
    if isinstance(exc, psycopg_pool.PoolTimeout):
        return StorageError(f"no database connection available: {exc}")
    if isinstance(exc, psycopg.errors.DiskFull | psycopg.errors.OutOfMemory):
        return StorageFull(f"the database is out of space: {exc}")
    if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction | psycopg.errors.InsufficientPrivilege):
        return ReadOnlyStorage(f"the database cannot be written: {exc}")
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return QueryTimeout(f"the query ran past its budget of time and was stopped: {exc}")
    if isinstance(exc, psycopg.errors.ProgramLimitExceeded):
        return InvalidInput("content", f"is too large for the database's indexes: {exc}")
    if isinstance(exc, psycopg.OperationalError):
        return StorageError(f"the database is unavailable: {exc}")
    return StorageError(f"database error: {exc}")


# -- filters ----------------------------------------------------------------------------------------------------
def _nest(parts: list[str], value: Any) -> dict[str, Any]:
    doc: Any = value
    for part in reversed(parts):
        doc = {part: doc}
    return doc


def _eq(parts: list[str], value: Any, params: list[Any]) -> str:
    """`field == value` as SQLite's json_extract sees it: true equals 1 and false 0, 1 equals 1.0.

    Written as jsonb containment so the GIN index answers it; containment never unwraps nested arrays, so a
    field holding ["x"] does not equal "x" (as in SQLite, where it is the text '["x"]').
    """
    if value is None:
        params.append(parts)
        params.append(parts)
        return "(m.metadata #> %s IS NULL OR jsonb_typeof(m.metadata #> %s) = 'null')"
    same: list[Any] = [value]
    if isinstance(value, bool):
        same.append(int(value))
    elif isinstance(value, int | float) and value in (0, 1):
        same.append(bool(value))
    for v in same:
        params.append(Jsonb(_nest(parts, v)))
    return "(" + " OR ".join("m.metadata @> %s" for _ in same) + ")"


def _number(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return Decimal(repr(value))  # the shortest form: 0.1 compares equal to a stored 0.1
    return value


def _emit_where(node: Node, params: list[Any]) -> str:
    """A parsed `where` tree (storage/filters.py) -> SQL over `m.metadata` (jsonb), with SQLite's semantics.

    Ranges compare numbers only with numbers and strings only with strings (by code point: COLLATE "C");
    `$ne`/`$nin` match records lacking the field; `{"f": null}` matches a missing field or an explicit null;
    a null inside `$in` never matches, and inside `$nin` leaves only missing fields (SQL's NOT IN with NULL).
    """
    if isinstance(node, Group):
        parts = [_emit_where(item, params) for item in node.items]
        return "(" + (" AND " if node.op == "$and" else " OR ").join(parts) + ")"
    keys = list(node.parts)
    op, value = node.op, node.value
    if op in ("$in", "$nin"):
        sub: list[Any] = []
        present = [_eq(keys, v, sub) for v in value if v is not None]
        any_eq = "(" + " OR ".join(present) + ")" if present else "FALSE"
        if op == "$in":
            params.extend(sub)
            return any_eq
        missing = _eq(keys, None, params)
        if None in value:
            return missing
        params.extend(sub)
        return f"({missing} OR NOT {any_eq})"
    if op in ("$eq", "$ne"):
        eq = _eq(keys, value, params)
        return eq if op == "$eq" else f"(NOT {eq})"
    if value is None:
        return "FALSE"
    if isinstance(value, str):
        params.extend([keys, keys, value])
        return (
            "(CASE WHEN jsonb_typeof(m.metadata #> %s) = 'string'"
            f' THEN (m.metadata #>> %s) COLLATE "C" {_RANGE[op]} %s END)'
        )
    params.extend([keys, keys, _number(value)])
    return (
        "(CASE WHEN jsonb_typeof(m.metadata #> %s) = 'number'"
        f" THEN (m.metadata #> %s)::numeric {_RANGE[op]} %s::numeric END)"
    )


def compile_filter(flt: Filter | Conditions | None, now: float) -> tuple[str, list[Any]]:
    """A filter -> an SQL condition on `memories m` (expired records always excluded) and its params."""
    c = parse_filter(flt)
    clauses = ["(m.expires_at IS NULL OR m.expires_at > %s)"]
    params: list[Any] = [to_dt(now)]
    ns_sql, ns_params = c.namespace_sql("%s")
    if ns_sql is not None:
        clauses.append(ns_sql)
        params.extend(ns_params)
    if c.tags:
        clauses.append("m.tags && %s::text[]")
        params.append(list(c.tags))
    if c.tags_all:
        clauses.append("m.tags @> %s::text[]")
        params.append(list(c.tags_all))
    if c.tags_none:
        clauses.append("NOT (m.tags && %s::text[])")
        params.append(list(c.tags_none))
    if c.where is not None:
        clauses.append(_emit_where(c.where, params))
    if c.importance:
        clauses.append("m.importance = ANY(%s::text[])")
        params.append(list(c.importance))
    for column, op, value in c.comparisons():
        clauses.append(f"{column} {op} %s")
        params.append(to_dt(value) if column in ("m.created_at", "m.occurred_at") else value)
    return " AND ".join(clauses), params


# -- storage ----------------------------------------------------------------------------------------------------
class PostgresStorage:
    """The `Storage` contract over PostgreSQL + pgvector, through a psycopg connection pool."""

    backend = "postgresql"
    reads_are_local = False  # every read is a round trip to the database server
    commits = None  # other replicas write unseen: no commit count says the data is unchanged

    def __init__(
        self,
        url: str,
        dim: int,
        *,
        pool_size: int = 8,
        hnsw_m: int = 16,
        hnsw_ef_construction: int = 64,
        ef_search: int = 128,
        connect_timeout: float = 10.0,
        query_seconds: float = 0.0,
        history_versions: int = 10,
    ) -> None:
        self.url = url
        self.dim = dim
        # Prior versions each record keeps in memory_history (0: none); see storage/history.py.
        self.history_versions = history_versions
        self.ef_search = ef_search
        self.hnsw_m = hnsw_m
        self.hnsw_ef_construction = hnsw_ef_construction
        self.lock = None  # no data dir to hold: replicas share the database
        self._server: dict[str, Any] = {}
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=int(connect_timeout)) as conn:
                migrate(conn, dim=dim, hnsw_m=hnsw_m, hnsw_ef_construction=hnsw_ef_construction)
                self._vector_oid = conn.execute("SELECT 'vector'::regtype::oid").fetchone()[0]
                self._server = {
                    "server": conn.execute("SHOW server_version").fetchone()[0],
                    "pgvector": conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[
                        0
                    ],
                }
                stored_dim = conn.execute("SELECT value FROM memory_spine_meta WHERE name = 'dim'").fetchone()
        except MemorySpineError:
            raise
        except (psycopg.Error, OSError) as exc:
            raise StorageError(f"cannot open the database {redact(url)}: {exc}") from exc
        found = tuple(int(x) for x in re.findall(r"\d+", str(self._server.get("pgvector", "0")))[:2])
        if found < (0, 8):
            # Iterative index scans (0.8) are what keep a filtered search at exactly `limit` results.
            raise StorageError(
                f"pgvector {self._server.get('pgvector')} is too old: 0.8 or newer is needed"
                " (ALTER EXTENSION vector UPDATE after installing it)"
            )
        if stored_dim is not None and int(stored_dim[0]) != dim:
            raise StorageError(f"this database holds {stored_dim[0]}-dimensional vectors; the embedder makes {dim}")
        self.pool = psycopg_pool.ConnectionPool(
            url,
            min_size=1,
            max_size=max(2, pool_size),
            # The per-statement budget (0: none); maintenance (index builds, COPY loads) lifts it for itself.
            kwargs={"autocommit": True, "options": f"-c statement_timeout={max(0, int(query_seconds * 1000))}"},
            configure=self._configure,
            name="memory-spine",
            timeout=5.0,  # a request waits this long for a free connection, then answers 503
            open=False,
        )
        try:
            self.pool.open(wait=True, timeout=connect_timeout)
        except psycopg_pool.PoolTimeout as exc:
            self.pool.close()
            raise StorageError(f"cannot connect to the database {redact(url)}: {exc}") from exc

    def _configure(self, conn: psycopg.Connection) -> None:
        dumper = type("VectorDumper", (_VectorDumper,), {"oid": self._vector_oid})
        conn.adapters.register_dumper(np.ndarray, dumper)
        conn.adapters.register_loader(self._vector_oid, _VectorLoader)
        conn.adapters.register_loader(self._vector_oid, _VectorTextLoader)
        # Recall >= 0.98 at limit 10; iterative scans keep a filtered HNSW search going until `limit` rows pass
        # the filter (pgvector 0.8), so the planner's exactly-`limit` contract holds.
        conn.execute(f"SET hnsw.ef_search = {int(self.ef_search)}")
        conn.execute("SET hnsw.iterative_scan = relaxed_order")

    @contextmanager
    def conn(self, timeout: float | None = None) -> Iterator[psycopg.Connection]:
        """A pooled connection (autocommit); database errors come out as `memory_spine.errors`."""
        try:
            with self.pool.connection(timeout=timeout) as conn:
                left = budget.remaining()
                if left is None:
                    yield conn
                    return
                # Under a query budget: this connection's statements get what is left of it, not a fresh 10 s each.
                conn.execute("SELECT set_config('statement_timeout', %s, false)", (str(max(1, int(left * 1000))),))
                try:
                    yield conn
                finally:
                    try:
                        conn.execute("SET statement_timeout TO DEFAULT")  # the pool's ceiling, from `options`
                    except psycopg.Error:
                        conn.close()  # the pool drops it rather than lend out a connection with a short timeout
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            raise _translate(exc) from exc

    def fetch_all(self, query: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Run one statement on a pooled connection and return all its rows (for pg_search's plans too)."""
        with self.conn() as conn:
            return conn.execute(query, params).fetchall()

    # -- meta ------------------------------------------------------------------------------------------------
    def meta(self, name: str) -> str | None:
        rows = self.fetch_all("SELECT value FROM memory_spine_meta WHERE name = %s", (name,))
        return rows[0][0] if rows else None

    def set_meta(self, name: str, value: str) -> None:
        self.fetch_all(
            "INSERT INTO memory_spine_meta (name, value) VALUES (%s, %s)"
            " ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value RETURNING name",
            (name, value),
        )

    # -- records and keys ------------------------------------------------------------------------------------
    def put(self, records: Sequence[NewRecord], on_commit: OnCommit | None = None) -> list[PutResult]:
        for _attempt in range(10):
            try:
                with self.conn() as conn:
                    try:
                        with conn.transaction():
                            results = self._put(conn, records)
                    except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                        raise _Raced() from None
                break
            except _Raced:
                continue  # another replica inserted one of these ids meanwhile (it is an update now), or deadlocked
        else:
            raise StorageError("a write kept racing concurrent inserts of the same ids; try again")
        if on_commit is not None:
            on_commit(results)
        return results

    def _put(self, conn: psycopg.Connection, records: Sequence[NewRecord]) -> list[PutResult]:
        existing = {
            (r[6], r[0]): r
            for r in conn.execute(
                "SELECT m.id, m.seq, m.content, m.created_at, m.expires_at, m.version, m.namespace FROM memories m"
                " JOIN unnest(%s::text[], %s::text[]) AS w(namespace, id) ON m.namespace = w.namespace AND m.id = w.id"
                " ORDER BY m.seq FOR UPDATE OF m",
                ([r.namespace for r in records], [r.id for r in records]),
            )
        }
        fences = sorted({(r.namespace, *r.fence) for r in records if r.fence is not None})
        for namespace, key, token in fences:
            # FOR SHARE: a takeover of the claim waits for this transaction, so the fence cannot change under it.
            got = conn.execute(
                "SELECT fence FROM claims WHERE namespace = %s AND key = %s FOR SHARE", (namespace, key)
            ).fetchone()
            if got is None or got[0] != token:
                raise StaleFence(key, token, got[0] if got else None)
        version = conn.execute("SELECT nextval('memory_versions')").fetchone()[0]
        inserts: list[tuple] = []
        updates: list[tuple] = []
        vector_updates: list[tuple] = []
        history: list[tuple] = []  # (superseded_at, superseded_by, op, seq) of each row replaced
        out: dict[tuple[str, str], PutResult] = {}
        for rec in records:
            row = existing.get((rec.namespace, rec.id))
            if rec.if_version is not None and (row is None or row[5] != rec.if_version):
                raise VersionChanged(rec.id)
            if rec.absent and row is not None and (row[4] is None or row[4].timestamp() > rec.now):
                raise VersionChanged(rec.id)
            now = to_dt(round(rec.now, 6))
            meta = Jsonb(rec.metadata)
            if row is None:
                if rec.vector is None:
                    raise ContentChanged(rec.id)
                born = now if rec.first_created_at is None else to_dt(rec.first_created_at)
                inserts.append(_insert_row(rec, born, now, version))
                continue
            _, seq, old_content, old_created, old_expires, old_version, _ns = row
            # The UPDATE below writes only the version the caller read (if_version), else the one locked here.
            expected = rec.if_version if rec.if_version is not None else old_version
            # An expired row not purged yet is gone for clients: writing its id again creates it anew.
            revived = old_expires is not None and old_expires.timestamp() <= rec.now
            if rec.vector is None and old_content != rec.content:
                raise ContentChanged(rec.id)
            fields = (
                rec.content,
                rec.tags,
                meta,
                rec.importance,
                rec.key,
                rec.key_parent,
                now if revived else old_created,
                now,
                to_dt(rec.expires_at),
                version,
                to_dt(rec.occurred_at) if rec.occurred_at is not None else (now if revived else None),
            )
            history.append((now, version, rec.op, seq))
            if rec.vector is not None:
                vector_updates.append((*fields, np.asarray(rec.vector, dtype=np.float32), seq, expected))
            else:
                updates.append((*fields, seq, expected))
            out[rec.namespace, rec.id] = PutResult(
                seq=seq, id=rec.id, created=revived, vector_changed=rec.vector is not None
            )
        set_fields = (
            "content=%s, tags=%s, metadata=%s, importance=%s, key=%s, key_parent=%s, created_at=%s, updated_at=%s,"
            " expires_at=%s, version=%s, occurred_at=COALESCE(%s::timestamptz, occurred_at)"
        )
        with conn.cursor() as cur:
            if history and self.history_versions:
                # The versions replaced (rows locked above), kept in this same transaction (storage/history.py).
                cur.executemany(_HISTORY_INSERT, history)
            # Conditional on the expected version: `if_version` is checked by the write itself, not only above.
            if updates:
                cur.executemany(f"UPDATE memories SET {set_fields} WHERE seq=%s AND version=%s", updates)
                if cur.rowcount != len(updates):  # rows are locked: only a stale if_version misses
                    raise VersionChanged(records[0].id if len(records) == 1 else "a record of the batch")
            if vector_updates:
                cur.executemany(
                    f"UPDATE memories SET {set_fields}, embedding=%s WHERE seq=%s AND version=%s", vector_updates
                )
                if cur.rowcount != len(vector_updates):
                    raise VersionChanged(records[0].id if len(records) == 1 else "a record of the batch")
            if inserts:
                # One order for every writer: no deadlock on the (namespace, id) index.
                inserts.sort(key=lambda row: (row[-1], row[0]))
                cur.executemany(
                    f"INSERT INTO memories ({_INSERT_COLUMNS}) VALUES ({','.join(['%s'] * len(_INSERT_TYPES))})"
                    " ON CONFLICT (namespace, id) DO NOTHING RETURNING seq, id, namespace",
                    inserts,
                    returning=True,
                )
                inserted = []
                while True:
                    got = cur.fetchone()
                    if got is not None:
                        inserted.append(got)
                    if not cur.nextset():
                        break
                if len(inserted) != len(inserts):
                    raise _Raced()
                for seq, id_, namespace in inserted:
                    out[namespace, id_] = PutResult(seq=seq, id=id_, created=True, vector_changed=True)
        if history:
            self._prune_versions(conn, [(r.namespace, r.id) for r in records if (r.namespace, r.id) in existing])
        return [out[r.namespace, r.id] for r in records]

    def _prune_versions(self, conn: psycopg.Connection, records: Sequence[tuple[str, str]]) -> None:
        """Keep at most `history_versions` history rows of each of these (namespace, id) records (in the
        writing transaction)."""
        if not self.history_versions or not records:
            return
        conn.execute(
            "DELETE FROM memory_history WHERE hid IN (SELECT hid FROM (SELECT h.hid, row_number() OVER"
            " (PARTITION BY h.namespace, h.id ORDER BY h.version DESC) AS n FROM memory_history h"
            " JOIN unnest(%s::text[], %s::text[]) AS w(namespace, id) ON h.namespace = w.namespace AND h.id = w.id)"
            " x WHERE n > %s)",
            ([n for n, _ in records], [i for _, i in records], self.history_versions),
        )

    def _delete_kept(self, cond: str, params: Sequence[Any], op: str, now: float) -> list[int]:
        """Delete the records matching `cond` (on `memories m`); their versions go to the history, ended by
        `op`, in the same statement (a data-modifying CTE: exactly the rows deleted). Returns their seqs."""
        delete = f"DELETE FROM memories m WHERE {cond}"
        if not self.history_versions:
            return [r[0] for r in self.fetch_all(f"{delete} RETURNING m.seq", params)]
        with self.conn() as conn, conn.transaction():
            rows = conn.execute(
                f"WITH gone AS ({delete} RETURNING {column_names('m.')}, m.embedding)"
                f" INSERT INTO memory_history ({_HISTORY_COLUMNS})"
                f" SELECT {column_names()}, embedding, %s, NULL, %s FROM gone RETURNING seq, namespace, id",
                [*params, to_dt(round(now, 6)), op],
            ).fetchall()
            self._prune_versions(conn, [(r[1], r[2]) for r in rows])
        return [r[0] for r in rows]

    def restore(self, records: Sequence[RestoredRecord], on_commit: OnCommit | None = None) -> list[PutResult]:
        """Insert records as exported (their own timestamps and vectors), one transaction; ids present are skipped."""
        for rec in records:
            if rec.vector is None:
                raise ValueError(f"restore() needs a vector for {rec.id!r}")
        # COPY through a staging table: a batch costs one round trip, not one per record.
        results = [PutResult(seq=seq, id=id_, created=True, vector_changed=True) for seq, id_ in self.copy_in(records)]
        if on_commit is not None:
            on_commit(results)
        return results

    def dump(self, now: float, vectors: bool, batch: int = 1000) -> Iterator[dict[str, Any]]:
        """Every live record, oldest first, from one snapshot (export); with its float32 vector bytes if asked."""
        columns = ROW_COLUMNS + (", m.embedding" if vectors else "")
        with self.conn() as conn, conn.transaction():
            with conn.cursor(name="memory_spine_dump", binary=True) as cur:
                cur.itersize = batch
                cur.execute(
                    f"SELECT {columns} FROM memories m WHERE m.expires_at IS NULL OR m.expires_at > %s ORDER BY m.seq",
                    (to_dt(now),),
                )
                for r in cur:
                    out = row_dict(r)
                    if vectors:
                        out["vector"] = np.asarray(r[ROW_WIDTH], dtype="<f4").tobytes()
                    yield out

    def contents(self, ids: Sequence[str], namespace: str = DEFAULT) -> dict[str, str]:
        if not ids:
            return {}
        return dict(
            self.fetch_all(
                "SELECT id, content FROM memories WHERE namespace = %s AND id = ANY(%s)", (namespace, list(ids))
            )
        )

    def get(self, id: str, now: float, namespace: str = DEFAULT) -> dict[str, Any] | None:
        """The live record (namespace, id), with its `version` (what `if_version` / an ETag names), or None."""
        rows = self.fetch_all(
            f"SELECT {ROW_COLUMNS}, m.version FROM memories m"
            " WHERE m.namespace = %s AND m.id = %s AND (m.expires_at IS NULL OR m.expires_at > %s)",
            (namespace, id, to_dt(now)),
        )
        return {**row_dict(rows[0]), "version": int(rows[0][ROW_WIDTH])} if rows else None

    def rows(self, seqs: Sequence[int], flt: Filter | None, now: float) -> dict[int, dict[str, Any]]:
        if not len(seqs):
            return {}
        cond, params = compile_filter(flt, now)
        rows = self.fetch_all(
            f"SELECT {ROW_COLUMNS} FROM memories m WHERE m.seq = ANY(%s) AND {cond}", [[int(s) for s in seqs], *params]
        )
        return {r[0]: row_dict(r) for r in rows}

    def delete(
        self,
        ids: Sequence[str],
        on_commit: OnCommit | None = None,
        if_version: int | None = None,
        namespace: str = DEFAULT,
        now: float | None = None,
    ) -> list[int]:
        # With `if_version`, one conditional statement: only rows still at that version go.
        cond, args = (
            ("", [namespace, list(ids)])
            if if_version is None
            else (" AND m.version = %s", [namespace, list(ids), if_version])
        )
        seqs = self._delete_kept(
            f"m.namespace = %s AND m.id = ANY(%s){cond}", args, "delete", time.time() if now is None else now
        )
        if on_commit is not None:
            on_commit(seqs)
        return seqs

    def delete_where(
        self, flt: Filter, now: float, dry_run: bool, on_commit: OnCommit | None = None
    ) -> tuple[int, list[int]]:
        if dry_run:
            return self.count(flt, now), []
        cond, params = compile_filter(flt, now)
        seqs = self._delete_kept(cond, params, "delete_where", now)
        if on_commit is not None:
            on_commit(seqs)
        return len(seqs), seqs

    def list(
        self, flt: Filter | None, now: float, limit: int, cursor: int | None, newest_first: bool
    ) -> tuple[list[dict[str, Any]], int | None]:
        cond, params = compile_filter(flt, now)
        if cursor is not None:
            cond += " AND m.seq " + ("<" if newest_first else ">") + " %s"
            params.append(cursor)
        rows = self.fetch_all(
            f"SELECT {ROW_COLUMNS} FROM memories m WHERE {cond} ORDER BY m.seq {'DESC' if newest_first else 'ASC'}"
            " LIMIT %s",
            [*params, limit + 1],
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return [row_dict(r) for r in rows], (rows[-1][0] if more and rows else None)

    def find_key(
        self, key: str, include_children: bool, flt: Filter | None, now: float, limit: int
    ) -> list[dict[str, Any]]:
        cond, params = compile_filter(flt, now)
        one = f"SELECT {ROW_COLUMNS}, m.version FROM memories m WHERE m.{{col}} = %s AND {cond} ORDER BY m.version DESC"
        if include_children:
            # Two index range scans, (key, version) and (key_parent, version), merged newest first.
            query = (
                f"SELECT * FROM (({one.format(col='key')} LIMIT %s)"
                f" UNION ALL ({one.format(col='key_parent')} LIMIT %s)) u ORDER BY version DESC LIMIT %s"
            )
            args = [key, *params, limit, key, *params, limit, limit]
        else:
            query = one.format(col="key") + " LIMIT %s"
            args = [key, *params, limit]
        return [row_dict(r) for r in self.fetch_all(query, args)]

    def newest_per_parent(
        self, prefix: str, now: float, limit: int, offset: int, namespace: str = DEFAULT
    ) -> tuple[list[dict[str, Any]], int]:
        """The newest live record of each key parent starting with `prefix`, newest first, and how many parents."""
        upper = prefix_upper(prefix)
        groups = (
            "SELECT key_parent AS p, max(version) AS v FROM memories WHERE namespace = %s AND key_parent >= %s"
            + (" AND key_parent < %s" if upper is not None else "")
            + " AND (expires_at IS NULL OR expires_at > %s) GROUP BY key_parent"
        )
        args = (namespace, prefix, upper, to_dt(now)) if upper is not None else (namespace, prefix, to_dt(now))
        with self.conn() as conn:
            total = conn.execute(f"SELECT count(*) FROM ({groups}) g", args).fetchone()[0]
            rows = conn.execute(
                f"SELECT {ROW_COLUMNS} FROM ({groups} ORDER BY v DESC LIMIT %s OFFSET %s) g"
                " JOIN memories m ON m.namespace = %s AND m.key_parent = g.p AND m.version = g.v ORDER BY g.v DESC",
                (*args, limit, offset, namespace),
            ).fetchall()
        return [row_dict(r) for r in rows], int(total)

    # -- history (storage/history.py) ----------------------------------------------------------------------------
    def history(
        self, id: str, now: float, limit: int, namespace: str = DEFAULT
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The live record (with its version) or None, and up to `limit` prior versions newest first, each with
        `version`, `superseded_at`, `superseded_by` and `op`; both from one snapshot."""
        where, args = _history_of(id, namespace)
        with self.conn() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            live = conn.execute(
                f"SELECT {ROW_COLUMNS}, m.version FROM memories m WHERE {where}"
                " AND (m.expires_at IS NULL OR m.expires_at > %s)",
                [*args, to_dt(now)],
            ).fetchone()
            rows = conn.execute(
                f"SELECT {ROW_COLUMNS}, m.version, m.superseded_at, m.superseded_by, m.op FROM memory_history m"
                f" WHERE {where} ORDER BY m.version DESC LIMIT %s",
                [*args, limit],
            ).fetchall()
        current = {**row_dict(live), "version": int(live[ROW_WIDTH])} if live else None
        prior = [
            {
                **row_dict(r),
                "version": int(r[ROW_WIDTH]),
                "superseded_at": iso(r[ROW_WIDTH + 1]),
                "superseded_by": r[ROW_WIDTH + 2],
                "op": r[ROW_WIDTH + 3],
            }
            for r in rows
        ]
        return current, prior

    def get_version(self, id: str, version: int, namespace: str = DEFAULT) -> dict[str, Any] | None:
        """Version `version` of the record (live or kept in the history), with its `vector`; None if not kept."""
        where, args = _history_of(id, namespace)
        one = f"SELECT {ROW_COLUMNS}, m.version, m.embedding FROM {{table}} m WHERE {where} AND m.version = %s"
        rows = self.fetch_all(
            f"{one.format(table='memories')} UNION ALL {one.format(table='memory_history')} LIMIT 1",
            [*args, version, *args, version],
        )
        if not rows:
            return None
        return {
            **row_dict(rows[0]),
            "version": int(rows[0][ROW_WIDTH]),
            "vector": np.asarray(rows[0][ROW_WIDTH + 1], np.float32),
        }

    def as_of(self, id: str, at: float, namespace: str = DEFAULT) -> dict[str, Any] | None:
        """The version of the record that was live at `at` (written at or before it, not yet replaced, deleted
        or expired), with its `version`; None if none was, or that version is past the history's retention."""
        where, args = _history_of(id, namespace)
        t = to_dt(at)
        live = "(m.expires_at IS NULL OR m.expires_at > %s)"
        rows = self.fetch_all(
            f"SELECT {ROW_COLUMNS}, m.version FROM memories m WHERE {where} AND m.updated_at <= %s AND {live}"
            f" UNION ALL SELECT {ROW_COLUMNS}, m.version FROM memory_history m WHERE {where}"
            f" AND m.updated_at <= %s AND m.superseded_at > %s AND {live} ORDER BY version DESC LIMIT 1",
            [*args, t, t, *args, t, t, t],
        )
        return {**row_dict(rows[0]), "version": int(rows[0][ROW_WIDTH])} if rows else None

    def deleted(
        self, now: float, limit: int, cursor: int | None, namespace: str = DEFAULT
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Records deleted (by id or filter) and not written again, newest deletion first: each one's version
        as deleted, with `version`, `deleted_at` and `deleted_by`; and the cursor of the next page."""
        rows = self.fetch_all(
            f"SELECT {ROW_COLUMNS}, m.version, m.superseded_at, m.op, m.hid FROM memory_history m"
            " WHERE m.namespace = %s AND m.superseded_by IS NULL AND m.hid < %s"
            " AND m.hid = (SELECT max(h.hid) FROM memory_history h WHERE h.namespace = m.namespace AND h.id = m.id)"
            " AND NOT EXISTS (SELECT 1 FROM memories l WHERE l.namespace = m.namespace AND l.id = m.id"
            " AND (l.expires_at IS NULL OR l.expires_at > %s)) ORDER BY m.hid DESC LIMIT %s",
            (namespace, 2**63 - 1 if cursor is None else cursor, to_dt(now), limit + 1),
        )
        more = len(rows) > limit
        rows = rows[:limit]
        out = [
            {
                **row_dict(r),
                "version": int(r[ROW_WIDTH]),
                "deleted_at": iso(r[ROW_WIDTH + 1]),
                "deleted_by": r[ROW_WIDTH + 2],
            }
            for r in rows
        ]
        return out, (int(rows[-1][ROW_WIDTH + 3]) if more and rows else None)

    def prune_history(self, before: float) -> int:
        """Drop the history rows of versions replaced or deleted before `before`. Returns how many."""
        with self.conn() as conn:
            return conn.execute("DELETE FROM memory_history WHERE superseded_at < %s", (to_dt(before),)).rowcount

    # -- tags and filters --------------------------------------------------------------------------------------
    def count(self, flt: Filter | None, now: float) -> int:
        cond, params = compile_filter(flt, now)
        return int(self.fetch_all(f"SELECT count(*) FROM memories m WHERE {cond}", params)[0][0])

    def purge_expired(self, now: float, on_commit: OnCommit | None = None) -> list[int]:
        with self.conn() as conn, conn.transaction():
            seqs = [
                r[0]
                for r in conn.execute(
                    "DELETE FROM memories WHERE expires_at IS NOT NULL AND expires_at <= %s RETURNING seq",
                    (to_dt(now),),
                )
            ]
            # Lapsed claims stay a day (as on SQLite): their fence still admits late journal deliveries.
            conn.execute("DELETE FROM claims WHERE expires_at <= now() - interval '1 day'")
        if on_commit is not None:
            on_commit(seqs)
        return seqs

    # -- claims: the database's clock, so every replica agrees on who holds a lease -----------------------------
    _CLAIM_COLS = "key, holder, acquired_at, expires_at, fence, namespace"

    @staticmethod
    def _claim(row: Sequence[Any]) -> dict[str, Any]:
        return claim_dict(row, iso)

    def claim(
        self, key: str, holder: str, lease: float, now: float, token_hash: str, namespace: str = DEFAULT
    ) -> tuple[bool, dict[str, Any]]:
        interval = f"{float(lease):.6f} seconds"  # fixed-point: PostgreSQL reads no exponent ("1e-300 seconds")
        with self.conn() as conn:
            for _attempt in range(10):
                # One statement, atomic under the row lock: take a free or expired key, with the next fence.
                got = conn.execute(
                    "INSERT INTO claims AS c (namespace, key, holder, acquired_at, expires_at, fence, token_hash)"
                    " VALUES (%s, %s, %s, date_trunc('microseconds', clock_timestamp()),"
                    " date_trunc('microseconds', clock_timestamp() + %s::interval), nextval('claim_fences'), %s)"
                    " ON CONFLICT (namespace, key) DO UPDATE SET holder = EXCLUDED.holder,"
                    " acquired_at = EXCLUDED.acquired_at,"
                    " expires_at = EXCLUDED.expires_at, fence = EXCLUDED.fence, token_hash = EXCLUDED.token_hash"
                    " WHERE c.expires_at <= clock_timestamp()"
                    f" RETURNING {self._CLAIM_COLS}",
                    (namespace, key, holder, interval, token_hash),
                ).fetchone()
                if got is not None:
                    return True, self._claim(got)
                other = conn.execute(
                    f"SELECT {self._CLAIM_COLS} FROM claims WHERE namespace = %s AND key = %s AND expires_at > now()",
                    (namespace, key),
                ).fetchone()
                if other is not None:
                    return False, self._claim(other)
            raise StorageError(f"claiming {key!r} kept racing; try again")

    def renew(
        self, key: str, token_hash: str, lease: float, now: float, namespace: str = DEFAULT
    ) -> dict[str, Any] | None:
        """Extend the lease whose token hashes to `token_hash` (even lapsed, while nobody took the key over)."""
        rows = self.fetch_all(
            "UPDATE claims SET expires_at = date_trunc('microseconds', clock_timestamp() + %s::interval)"
            f" WHERE namespace = %s AND key = %s AND token_hash = %s RETURNING {self._CLAIM_COLS}",
            (f"{float(lease)} seconds", namespace, key, token_hash),
        )
        return self._claim(rows[0]) if rows else None

    def get_claim(self, key: str, now: float, namespace: str = DEFAULT) -> dict[str, Any] | None:
        rows = self.fetch_all(
            f"SELECT {self._CLAIM_COLS} FROM claims WHERE namespace = %s AND key = %s AND expires_at > now()",
            (namespace, key),
        )
        return self._claim(rows[0]) if rows else None

    def release(self, key: str, token_hash: str, now: float, namespace: str = DEFAULT) -> dict[str, Any] | None:
        """Release the claim whose lease token hashes to `token_hash`. Returns the claim that blocks the release
        (another lease's), or None when released.

        Raises:
            NotFound: no live claim on the key, and no lapsed one of this token.
        """
        with self.conn() as conn, conn.transaction():
            row = conn.execute(
                f"SELECT {self._CLAIM_COLS}, token_hash, expires_at > now() FROM claims"
                " WHERE namespace = %s AND key = %s FOR UPDATE",
                (namespace, key),
            ).fetchone()
            if row is not None and row[6] == token_hash:
                conn.execute("DELETE FROM claims WHERE namespace = %s AND key = %s", (namespace, key))
                return None
            if row is None or not row[7]:
                raise NotFound(f"no live claim on key {key!r}")
            return self._claim(row[:6])

    # -- bulk loading: rows first, the HNSW index after ---------------------------------------------------------
    def drop_vector_index(self) -> None:
        """Drop the HNSW index before a bulk load (inserting into a built HNSW graph is ~100x slower)."""
        with self.conn() as conn:
            conn.execute("DROP INDEX IF EXISTS memories_embedding")

    def build_vector_index(self, progress: Callable[[str], None] | None = None) -> float:
        """(Re)create the HNSW index if missing and refresh the planner's statistics. Returns seconds taken."""
        started = time.perf_counter()
        with self.conn() as conn:
            conn.execute("SET maintenance_work_mem = '1GB'")
            conn.execute("SET max_parallel_maintenance_workers = 2")
            conn.execute("SET statement_timeout = 0")
            try:
                conn.execute(
                    sql.SQL(
                        "CREATE INDEX IF NOT EXISTS memories_embedding ON memories"
                        " USING hnsw (embedding vector_cosine_ops) WITH (m = {}, ef_construction = {})"
                    ).format(sql.Literal(self.hnsw_m), sql.Literal(self.hnsw_ef_construction))
                )
                conn.execute("ANALYZE memories")
            finally:
                conn.execute("RESET maintenance_work_mem")
                conn.execute("RESET max_parallel_maintenance_workers")
                conn.execute("RESET statement_timeout")
        return time.perf_counter() - started

    @contextmanager
    def bulk(self, rows: int) -> Iterator[None]:
        """Around a load of `rows` records: for a large one, drop the HNSW index first and build it once after
        (COPY into an indexed table inserts each vector into the graph, measured ~100x slower)."""
        if rows < BULK_ROWS or not self.has_vector_index():
            yield
            return
        self.drop_vector_index()
        try:
            yield
        finally:
            self.build_vector_index()  # also after a failure: never leave the table without its index

    def has_vector_index(self) -> bool:
        return bool(self.fetch_all("SELECT to_regclass('memories_embedding') IS NOT NULL")[0][0])

    def copy_in(self, rows: Sequence[RestoredRecord]) -> list[tuple[int, str]]:
        """Insert exported records with COPY in one transaction; ids already present are skipped.

        Returns the (seq, id) of the records inserted.
        """
        if not rows:
            return []
        with self.conn() as conn, conn.transaction():
            conn.execute("SET LOCAL statement_timeout = 0")  # a load, not a request: no budget
            version = conn.execute("SELECT nextval('memory_versions')").fetchone()[0]
            staged = ", ".join(f"{name} {kind}" for name, kind in _INSERT_TYPES)
            conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS memory_spine_load ({staged}) ON COMMIT DELETE ROWS")
            columns = _INSERT_COLUMNS
            with conn.cursor() as cur:
                with cur.copy(f"COPY memory_spine_load ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types([self._vector_oid if kind == "vector" else kind for _, kind in _COPY_TYPES])
                    for r in rows:
                        copy.write_row(_insert_row(r, to_dt(r.created_at), to_dt(r.updated_at), version))
                cur.execute(
                    f"INSERT INTO memories ({columns}) SELECT {columns} FROM memory_spine_load"
                    " ON CONFLICT (namespace, id) DO NOTHING RETURNING seq, id"
                )
                return [(int(seq), id_) for seq, id_ in cur.fetchall()]

    # -- housekeeping ------------------------------------------------------------------------------------------
    def namespaces(self, now: float) -> dict[str, int]:
        """Each namespace holding live records -> how many."""
        rows = self.fetch_all(
            "SELECT namespace, count(*) FROM memories WHERE expires_at IS NULL OR expires_at > %s"
            " GROUP BY namespace ORDER BY namespace",
            (to_dt(now),),
        )
        return {ns: int(n) for ns, n in rows}

    def stats(self, now: float, namespace: str = DEFAULT) -> dict[str, Any]:
        with self.conn() as conn:
            total = conn.execute(
                "SELECT count(*) FROM memories WHERE namespace = %s AND (expires_at IS NULL OR expires_at > %s)",
                (namespace, to_dt(now)),
            ).fetchone()[0]
            tags = dict(
                conn.execute(
                    "SELECT t, count(*) AS n FROM memories, unnest(tags) t WHERE namespace = %s"
                    " GROUP BY t ORDER BY n DESC, t LIMIT 100",
                    (namespace,),
                ).fetchall()
            )
            size = conn.execute(
                "SELECT coalesce(sum(pg_total_relation_size(c)), 0) FROM unnest(ARRAY['memories', 'claims',"
                " 'memory_spine_meta', 'memory_history']::regclass[]) c"
            ).fetchone()[0]
        return {"namespace": namespace, "total_memories": int(total), "tags": tags, "database_bytes": int(size)}

    def check(self) -> list[str]:
        problems = []
        with self.conn() as conn:
            row = conn.execute(
                "SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass('memories_embedding')"
            ).fetchone()
            if row is None:
                problems.append("the HNSW index memories_embedding is missing (searches scan every vector)")
            elif not row[0]:
                problems.append("the HNSW index memories_embedding is invalid (an interrupted build?)")
        return problems

    def ping(self) -> dict[str, Any]:
        started = time.perf_counter()
        with self.conn(timeout=2.0) as conn:  # a health check must answer before its prober gives up
            conn.execute("SELECT 1")
        return {
            "backend": self.backend,
            "status": "ok",
            "ms": round((time.perf_counter() - started) * 1000, 3),
            **self._server,
        }

    def close(self) -> None:
        self.pool.close()


class _Raced(Exception):
    """An insert met a row another replica inserted after our read: redo the write as an update."""


_OPEN_LOCK = threading.Lock()


def open_postgres(settings: Any, dim: int) -> PostgresStorage:
    """The registry entry for postgresql://...: connect, migrate, pool."""
    with _OPEN_LOCK:
        return PostgresStorage(
            settings.database,
            dim,
            pool_size=settings.database_pool_size,
            hnsw_m=settings.hnsw_m,
            hnsw_ef_construction=settings.hnsw_ef_construction,
            ef_search=settings.hnsw_ef_search,
            query_seconds=settings.max_query_seconds,
            history_versions=keep_versions(settings),
        )
