"""PostgreSQL schema, as ordered, versioned migrations recorded in `memory_spine_migrations`.

`migrate(conn)` applies the ones a database lacks, each in its own transaction, under a transaction-level
advisory lock: replicas starting at the same moment migrate once, the others wait and find it done. A
migration is never edited once released; a change is a new entry at the end of `MIGRATIONS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from ..errors import StorageError
from .history import COLUMNS as HISTORY_COLUMNS

_LOCK_ID = 0x6D656D73  # "mems": pg_advisory_xact_lock key shared by every memory-spine replica

# Keyword search sees words as SQLite's FTS5 tokenizer does, near enough: ASCII punctuation other than "_"
# separates words ("os.path.join" is the phrase "os path join"). The query side uses the same expression.
FTS_NORMALISE = r"regexp_replace({}, '[!-/:-@\[-^`{{-~]+', ' ', 'g')"


def _initial(conn: psycopg.Connection, params: dict[str, Any]) -> None:
    dim, m, efc = params["dim"], params["hnsw_m"], params["hnsw_ef_construction"]
    fts = FTS_NORMALISE.format("content")
    statements = [
        "CREATE EXTENSION IF NOT EXISTS vector",
        "CREATE TABLE memory_spine_meta (name text PRIMARY KEY, value text NOT NULL)",
        "CREATE SEQUENCE memory_versions",
        sql.SQL(
            """CREATE TABLE memories (
                seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                id text COLLATE "C" NOT NULL UNIQUE,
                content text NOT NULL,
                tags text[] NOT NULL DEFAULT '{{}}',
                metadata jsonb NOT NULL DEFAULT '{{}}',
                importance text NOT NULL DEFAULT 'medium',
                key text COLLATE "C",
                key_parent text COLLATE "C",
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL,
                expires_at timestamptz,
                version bigint NOT NULL,
                embedding vector({dim}) NOT NULL,
                fts tsvector GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, {fts})) STORED
            )"""
        ).format(dim=sql.Literal(dim), fts=sql.SQL(fts)),
        "CREATE INDEX memories_key ON memories (key, version)",
        "CREATE INDEX memories_key_parent ON memories (key_parent, version)",
        "CREATE INDEX memories_created ON memories (created_at)",
        "CREATE INDEX memories_expires ON memories (expires_at) WHERE expires_at IS NOT NULL",
        "CREATE INDEX memories_tags ON memories USING gin (tags)",
        "CREATE INDEX memories_metadata ON memories USING gin (metadata jsonb_path_ops)",
        "CREATE INDEX memories_fts ON memories USING gin (fts)",
        sql.SQL(
            "CREATE INDEX memories_embedding ON memories USING hnsw (embedding vector_cosine_ops)"
            " WITH (m = {m}, ef_construction = {efc})"
        ).format(m=sql.Literal(m), efc=sql.Literal(efc)),
        """CREATE TABLE claims (
            key text COLLATE "C" PRIMARY KEY,
            holder text NOT NULL,
            acquired_at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL
        )""",
    ]
    for stmt in statements:
        conn.execute(stmt)
    conn.execute("INSERT INTO memory_spine_meta (name, value) VALUES ('dim', %s)", (str(dim),))


def _fencing(conn: psycopg.Connection, params: dict[str, Any]) -> None:
    # Fencing tokens: each claim taken gets the next value of one sequence (never reused, only grows), and the
    # sha256 of a secret lease token that renewing and releasing must present. Older claims carry neither.
    conn.execute("CREATE SEQUENCE claim_fences")
    conn.execute("ALTER TABLE claims ADD COLUMN fence bigint, ADD COLUMN token_hash text")


def _isolation(conn: psycopg.Connection, params: dict[str, Any]) -> None:
    # Each record's distance to its 10th nearest neighbour when written (pg_search.py): the isolated ones (far
    # above the median) are scored exactly beside the HNSW walk, which may never reach them. Rows written before
    # this migration have none and are looked up by the first service to start (PostgresSearch.backfill).
    conn.execute(
        "CREATE TABLE memory_kth (seq bigint PRIMARY KEY REFERENCES memories (seq) ON DELETE CASCADE,"
        " kth real NOT NULL)"
    )
    conn.execute("CREATE INDEX memory_kth_kth ON memory_kth (kth)")


def _namespaces(conn: psycopg.Connection, params: dict[str, Any]) -> None:
    # Namespaces (issue 18): every record and claim lives in one; existing ones land in 'default' (a constant
    # default: no table rewrite). Ids and claims are unique per namespace; key lookups lead with it.
    conn.execute("ALTER TABLE memories ADD COLUMN namespace text COLLATE \"C\" NOT NULL DEFAULT 'default'")
    conn.execute("ALTER TABLE memories DROP CONSTRAINT memories_id_key")
    conn.execute("CREATE UNIQUE INDEX memories_namespace_id ON memories (namespace, id)")
    conn.execute("CREATE INDEX memories_namespace ON memories (namespace, seq)")
    conn.execute("DROP INDEX memories_key")
    conn.execute("DROP INDEX memories_key_parent")
    conn.execute("CREATE INDEX memories_key ON memories (namespace, key, version)")
    conn.execute("CREATE INDEX memories_key_parent ON memories (namespace, key_parent, version)")
    conn.execute("ALTER TABLE claims ADD COLUMN namespace text COLLATE \"C\" NOT NULL DEFAULT 'default'")
    conn.execute("ALTER TABLE claims DROP CONSTRAINT claims_pkey")
    conn.execute("ALTER TABLE claims ADD PRIMARY KEY (namespace, key)")


def _occurred_at(conn: psycopg.Connection, params: dict[str, Any]) -> None:
    # Event time (issue 24): when what a record holds happened; rows stored before it happened when stored.
    conn.execute("ALTER TABLE memories ADD COLUMN IF NOT EXISTS occurred_at timestamptz")
    conn.execute("UPDATE memories SET occurred_at = created_at WHERE occurred_at IS NULL")
    conn.execute("CREATE INDEX IF NOT EXISTS memories_occurred ON memories (occurred_at)")


def _history(conn: psycopg.Connection, params: dict[str, Any]) -> None:
    # Prior versions of records (storage/history.py): the columns of history.COLUMNS (added to later by
    # _sync_history, not by editing this), the vector, and when and by what each version ended.
    copied = ", ".join(f"{name} {kind}" for name, _, kind in HISTORY_COLUMNS)
    conn.execute(
        f"CREATE TABLE memory_history (hid bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, {copied},"
        f" embedding vector({int(params['dim'])}) NOT NULL, superseded_at timestamptz NOT NULL,"
        " superseded_by bigint, op text NOT NULL)"
    )
    conn.execute("CREATE INDEX memory_history_record ON memory_history (namespace, id, version)")
    conn.execute("CREATE INDEX memory_history_ended ON memory_history (superseded_at)")
    conn.execute("CREATE INDEX memory_history_deleted ON memory_history (hid) WHERE superseded_by IS NULL")


def _sync_history(conn: psycopg.Connection) -> None:
    """Add the history.COLUMNS memory_history lacks (a column added to memories after the table was made)."""
    have = {
        r[0]
        for r in conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = 'memory_history'"
        )
    }
    if not have:
        return
    for name, _, kind in HISTORY_COLUMNS:
        if name not in have:
            conn.execute(f"ALTER TABLE memory_history ADD COLUMN {name} {kind}")


def _tokens(conn: psycopg.Connection, params: dict[str, Any]) -> None:
    # Scoped bearer tokens (tokens.py): only the SHA-256 of each token, so replicas share them and a leak of the
    # table leaks no token.
    conn.execute(
        "CREATE TABLE tokens (id text PRIMARY KEY, token_hash text NOT NULL UNIQUE, name text,"
        " namespaces text[] NOT NULL, rights text[] NOT NULL, created_at timestamptz NOT NULL,"
        " expires_at timestamptz, revoked_at timestamptz, last_used_at timestamptz)"
    )


def _stemmed_fts(conn: psycopg.Connection, params: dict[str, Any]) -> None:
    # A second tsvector with the English (Snowball) stemmer beside the exact 'simple' one, as SQLite's Porter
    # FTS5 index (sqlite_schema._add_stemmed_fts): keyword search matches on either, ranks by the sum of both.
    fts = FTS_NORMALISE.format("content")
    conn.execute(
        "ALTER TABLE memories ADD COLUMN fts_stem tsvector"
        f" GENERATED ALWAYS AS (to_tsvector('english'::regconfig, {fts})) STORED"
    )
    conn.execute("CREATE INDEX memories_fts_stem ON memories USING gin (fts_stem)")


# (version, name, apply)
MIGRATIONS: list[tuple[int, str, Callable[[psycopg.Connection, dict[str, Any]], None]]] = [
    (1, "records, tags, keys, metadata, vectors (HNSW), full text (tsvector), claims", _initial),
    (2, "claims: fencing tokens (claim_fences sequence) and hashed lease tokens", _fencing),
    (3, "each record's 10th-neighbour distance, for the side list of isolated vectors", _isolation),
    (4, "namespaces: records and claims unique per (namespace, id / key)", _namespaces),
    (5, "records: occurred_at (event time), indexed", _occurred_at),
    (6, "record history: prior versions of replaced and deleted records", _history),
    (7, "scoped tokens (their SHA-256, namespaces, rights, expiry, revocation)", _tokens),
    (8, "full text: a second, English-stemmed tsvector beside the exact one", _stemmed_fts),
]


def migrate(conn: psycopg.Connection, **params: Any) -> list[int]:
    """Apply the migrations this database lacks (autocommit connection). Returns the versions applied."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))  # two replicas' CREATE TABLEs would collide
        conn.execute(
            "CREATE TABLE IF NOT EXISTS memory_spine_migrations"
            " (version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        newest = conn.execute("SELECT max(version) FROM memory_spine_migrations").fetchone()[0] or 0
    if newest > MIGRATIONS[-1][0]:
        raise StorageError(
            f"this database has schema version {newest}; this memory-spine knows up to {MIGRATIONS[-1][0]}: upgrade it"
        )
    applied: list[int] = []
    for version, name, apply in MIGRATIONS:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
            done = conn.execute("SELECT 1 FROM memory_spine_migrations WHERE version = %s", (version,)).fetchone()
            if done:
                continue
            apply(conn, params)
            conn.execute("INSERT INTO memory_spine_migrations (version, name) VALUES (%s, %s)", (version, name))
            applied.append(version)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        _sync_history(conn)
    return applied
