"""SQLite schema, as ordered, versioned migrations (the embedded twin of `pg_schema.py`).

The meta row `schema_version` records the last migration applied. `migrate(conn)` applies the ones a database
lacks, each in its own `BEGIN IMMEDIATE` transaction together with the new `schema_version` (SQLite's DDL is
transactional: a crash leaves the database at the previous version, never half-migrated). A migration is never
edited once released; a change is a new entry at the end of `MIGRATIONS`.

Data dirs made before migrations were versioned say `schema_version` 1 but may lack three later additions (the
FTS vocabulary, the expiry+metadata index, the claims' fencing columns); `_catch_up_v1` adds what is missing.
A database made by a newer release (a `schema_version` this one does not know) is refused rather than misread.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Callable

from ..errors import StorageError
from .history import COLUMNS as HISTORY_COLUMNS

log = logging.getLogger("memory_spine.storage")

# Every query excludes expired records with `expires_at IS NULL OR expires_at > now`; with the metadata in the same
# index, a `where` filter on metadata is answered from the index alone instead of reading every row (vectors
# included): 57 ms against 140 ms for a 0.1 %-selective `where` at 100k records.
EXPIRY_METADATA_INDEX = "CREATE INDEX IF NOT EXISTS memories_expiry_metadata ON memories(expires_at, metadata)"
FTS_VOCABULARY = "CREATE VIRTUAL TABLE memories_fts_vocab USING fts5vocab('memories_fts', 'row')"


def _initial(conn: sqlite3.Connection) -> None:
    conn.execute(
        """CREATE TABLE memories (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            content TEXT NOT NULL,
            tags TEXT NOT NULL DEFAULT '[]',
            metadata TEXT NOT NULL DEFAULT '{}',
            importance TEXT NOT NULL DEFAULT 'medium',
            key TEXT,
            key_parent TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            expires_at REAL,
            version INTEGER NOT NULL,
            vector_version INTEGER NOT NULL,
            vector BLOB NOT NULL
        )"""
    )
    # One statement per execute(): executescript() would COMMIT the migration's transaction first.
    for stmt in (
        "CREATE INDEX idx_memories_key_version ON memories (key, version)",
        "CREATE INDEX idx_memories_key_parent_version ON memories (key_parent, version)",
        "CREATE INDEX idx_memories_vector_version ON memories (vector_version)",
        "CREATE INDEX idx_memories_created_at ON memories (created_at)",
        EXPIRY_METADATA_INDEX,
        "CREATE TABLE memory_tags (tag TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (tag, seq)) WITHOUT ROWID",
        "CREATE INDEX idx_memory_tags_seq ON memory_tags (seq)",
        "CREATE TABLE tombstones (seq INTEGER PRIMARY KEY, version INTEGER)",
        "CREATE INDEX idx_tombstones_version ON tombstones (version)",
        "CREATE TABLE claims (key TEXT PRIMARY KEY, holder TEXT, acquired_at REAL, expires_at REAL,"
        " fence INTEGER, token_hash TEXT)",
        "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT)",
    ):
        conn.execute(stmt)
    conn.execute(
        "CREATE VIRTUAL TABLE memories_fts USING fts5(content, content='memories',"
        # No stemmer: keyword search is for exact words (names, codes, identifiers; snake_case stays one token),
        # and unstemmed terms can be looked up in the vocabulary below.
        " content_rowid='seq', tokenize=\"unicode61 remove_diacritics 2 tokenchars '_'\")"
    )
    conn.execute(FTS_VOCABULARY)
    _fts_triggers(conn, "memories_fts", "memories")


def _fts_triggers(conn: sqlite3.Connection, fts: str, prefix: str) -> None:
    """The triggers that keep an external-content FTS5 index `fts` in step with `memories`, in the same
    transaction: `<prefix>_ai`, `<prefix>_ad` and `<prefix>_au` (after insert, delete and content update)."""
    add = f"INSERT INTO {fts}(rowid, content) VALUES (new.seq, new.content);"
    drop = f"INSERT INTO {fts}({fts}, rowid, content) VALUES('delete', old.seq, old.content);"
    conn.execute(f"CREATE TRIGGER {prefix}_ai AFTER INSERT ON memories BEGIN {add} END")
    conn.execute(f"CREATE TRIGGER {prefix}_ad AFTER DELETE ON memories BEGIN {drop} END")
    conn.execute(f"CREATE TRIGGER {prefix}_au AFTER UPDATE OF content ON memories BEGIN {drop} {add} END")


def _namespaces(conn: sqlite3.Connection) -> None:
    """Namespaces (issue 18): a `namespace` column on memories and claims; ids and claims unique per namespace.

    Existing records and claims land in `default`. SQLite cannot drop the column-level UNIQUE on `memories.id`,
    so the table is rebuilt: its own CREATE text (whatever columns it has by now) without that UNIQUE, plus the
    column, rows copied with their seqs (the FTS index and tags stay valid, keyed by seq), the AUTOINCREMENT
    counter kept (seqs are never reused), its other indexes and triggers re-created; the key indexes now lead
    with the namespace. About a second per 100k records, once.
    """
    columns = {r[1] for r in conn.execute("PRAGMA table_info(memories)")}
    claim_columns = {r[1] for r in conn.execute("PRAGMA table_info(claims)")}
    if "namespace" not in columns:
        found = conn.execute("SELECT sql FROM sqlite_master WHERE type='table' AND name='memories'").fetchone()
        table_sql = found[0]
        rebuilt, n = re.subn(r"\bid\s+TEXT\s+NOT\s+NULL\s+UNIQUE", "id TEXT NOT NULL", table_sql, flags=re.I)
        if n != 1:
            raise StorageError("cannot add namespaces: memories.id is not declared as this version expects")
        rebuilt = re.sub(r"^\s*CREATE\s+TABLE\s+\"?memories\"?", "CREATE TABLE memories_ns", rebuilt, flags=re.I)
        rebuilt = rebuilt.rstrip().removesuffix(")") + ", namespace TEXT NOT NULL DEFAULT 'default')"
        keep = conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE tbl_name = 'memories' AND sql IS NOT NULL"
            " AND type IN ('index', 'trigger')"
        ).fetchall()
        counter = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'memories'").fetchone()
        listed = ", ".join(f'"{c}"' for c in sorted(columns))
        conn.execute(rebuilt)
        conn.execute(f"INSERT INTO memories_ns ({listed}) SELECT {listed} FROM memories")
        conn.execute("DROP TABLE memories")  # no trigger fires: the FTS rows stay, keyed by the same seqs
        conn.execute("ALTER TABLE memories_ns RENAME TO memories")
        if counter is not None:
            conn.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'memories'", (counter[0],))
            if conn.execute("SELECT changes()").fetchone()[0] == 0:
                conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('memories', ?)", (counter[0],))
        replaced = {"idx_memories_key_version", "idx_memories_key_parent_version"}
        for _kind, name, stmt in keep:
            if name not in replaced:
                conn.execute(stmt)
        conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS memories_namespace_id ON memories(namespace, id)")
        # (namespace) alone: a namespace's records in seq order (lists, candidates), counts per namespace.
        conn.execute("CREATE INDEX IF NOT EXISTS memories_namespace ON memories(namespace)")
        conn.execute("CREATE INDEX IF NOT EXISTS memories_namespace_key ON memories(namespace, key, version)")
        conn.execute(
            "CREATE INDEX IF NOT EXISTS memories_namespace_key_parent ON memories(namespace, key_parent, version)"
        )
    if "namespace" not in claim_columns:
        conn.execute(
            "CREATE TABLE claims_ns (namespace TEXT NOT NULL DEFAULT 'default', key TEXT NOT NULL, holder TEXT,"
            " acquired_at FLOAT, expires_at FLOAT, fence INTEGER, token_hash TEXT, PRIMARY KEY (namespace, key))"
        )
        conn.execute(
            "INSERT INTO claims_ns (key, holder, acquired_at, expires_at, fence, token_hash)"
            " SELECT key, holder, acquired_at, expires_at, fence, token_hash FROM claims"
        )
        conn.execute("DROP TABLE claims")
        conn.execute("ALTER TABLE claims_ns RENAME TO claims")


def _occurred_at(conn: sqlite3.Connection) -> None:
    """Event time (issue 24): an `occurred_at` column, indexed; rows stored before it happened when stored."""
    conn.execute("ALTER TABLE memories ADD COLUMN occurred_at REAL")
    conn.execute("UPDATE memories SET occurred_at = created_at")
    conn.execute("CREATE INDEX memories_occurred_at ON memories(occurred_at)")


def _add_history(conn: sqlite3.Connection) -> None:
    """Create `memory_history` (storage/history.py), or add the columns of `history.COLUMNS` it lacks.

    Idempotent, DDL only: the caller holds the transaction (a migration step). Run again after a column is
    added to memories and to `history.COLUMNS`, it adds that column to the history too.
    """
    have = {r[1] for r in conn.execute("PRAGMA table_info(memory_history)")}
    if have:
        for name, kind, _ in HISTORY_COLUMNS:
            if name not in have:
                conn.execute(f"ALTER TABLE memory_history ADD COLUMN {name} {kind}")
        return
    copied = ", ".join(f"{name} {kind}" for name, kind, _ in HISTORY_COLUMNS)
    conn.execute(
        f"CREATE TABLE memory_history (hid INTEGER PRIMARY KEY AUTOINCREMENT, {copied}, vector BLOB NOT NULL,"
        " superseded_at REAL NOT NULL, superseded_by INTEGER, op TEXT NOT NULL)"
    )
    conn.execute("CREATE INDEX memory_history_record ON memory_history (namespace, id, version)")
    conn.execute("CREATE INDEX memory_history_ended ON memory_history (superseded_at)")
    conn.execute("CREATE INDEX memory_history_deleted ON memory_history (hid) WHERE superseded_by IS NULL")


# (version, name, apply). Each apply runs inside the migration's transaction; it must not COMMIT.
def add_tokens(conn: sqlite3.Connection) -> None:
    """The scoped tokens' table (memory_spine/tokens.py, storage/tokens.py): only each token's SHA-256 is kept.

    `namespaces` and `rights` are JSON lists; times are epoch seconds. Idempotent, DDL only; also run by
    `memory-spine token` on a data dir a server may hold open (it writes this table only, never the records).
    """
    conn.execute(
        "CREATE TABLE IF NOT EXISTS tokens (id TEXT PRIMARY KEY, token_hash TEXT NOT NULL UNIQUE, name TEXT,"
        " namespaces TEXT NOT NULL, rights TEXT NOT NULL, created_at REAL NOT NULL, expires_at REAL,"
        " revoked_at REAL, last_used_at REAL)"
    )


def _add_stemmed_fts(conn: sqlite3.Connection) -> None:
    """A second full-text index with the Porter stemmer, beside the exact one (issue 24).

    Keyword search matches on the stemmed index ("hiking" finds "hike") and ranks by the sum of both BM25 scores,
    so an exact spelling (an identifier, a name) still outranks a stem-only match. Measured on LoCoMo's tune split
    (benchmarks/conversations.py) and the stdlib quality benchmark: see README "Keyword search". Kept in step by
    its own triggers; filled from the existing rows by FTS5's `rebuild`.
    """
    conn.execute(
        "CREATE VIRTUAL TABLE memories_fts_stem USING fts5(content, content='memories', content_rowid='seq',"
        " tokenize=\"porter unicode61 remove_diacritics 2 tokenchars '_'\")"
    )
    conn.execute("INSERT INTO memories_fts_stem(memories_fts_stem) VALUES ('rebuild')")
    _fts_triggers(conn, "memories_fts_stem", "memories_stem")


MIGRATIONS: list[tuple[int, str, Callable[[sqlite3.Connection], None]]] = [
    (1, "records, tags, keys, metadata, vectors, full text (FTS5 + vocabulary), claims with fencing, meta", _initial),
    (2, "namespaces: ids, exact keys and claims unique per namespace", _namespaces),
    (3, "records: occurred_at (event time), indexed", _occurred_at),
    (4, "record history: prior versions of replaced and deleted records", _add_history),
    (5, "scoped tokens (their SHA-256, namespaces, rights, expiry, revocation)", add_tokens),
    (6, "full text: a second, Porter-stemmed FTS5 index beside the exact one", _add_stemmed_fts),
]
LATEST = MIGRATIONS[-1][0]


def _names(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}


def _v1_gaps(conn: sqlite3.Connection) -> list[str]:
    """What a pre-versioning data dir (schema_version 1) lacks of what later copies of migration 1 created."""
    names = _names(conn)
    gaps = [name for name in ("memories_fts_vocab", "memories_expiry_metadata") if name not in names]
    if "fence" not in {r[1] for r in conn.execute("PRAGMA table_info(claims)")}:
        gaps.append("fence")
    return gaps


def _catch_up_v1(conn: sqlite3.Connection) -> None:
    gaps = _v1_gaps(conn)
    if "memories_fts_vocab" in gaps:
        conn.execute(FTS_VOCABULARY)
    if "memories_expiry_metadata" in gaps:
        # Built once (about 0.5 s per 100k records) in place of the older expiry index.
        conn.execute(EXPIRY_METADATA_INDEX)
        conn.execute("DROP INDEX IF EXISTS idx_memories_expires_at")
    if "fence" in gaps:
        # Claims taken before fencing tokens carry none and can only expire.
        conn.execute("ALTER TABLE claims ADD COLUMN fence INTEGER")
        conn.execute("ALTER TABLE claims ADD COLUMN token_hash TEXT")


def schema_version(conn: sqlite3.Connection) -> int:
    """The last migration applied to this database; 0 for an empty file."""
    if "meta" not in _names(conn):
        return 0
    row = conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def _in_transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], None], version: int) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        fn(conn)
        conn.execute("INSERT OR REPLACE INTO meta(name, value) VALUES ('schema_version', ?)", (str(version),))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def migrate(conn: sqlite3.Connection, dim: int) -> list[int]:
    """Apply the migrations this database lacks (`conn` in autocommit mode, under the caller's write lock).

    Returns the versions applied. A read-only database with migrations pending is served as it is, with a
    warning (its writes answer 503 anyway); one from a newer release raises StorageError.
    """
    current = schema_version(conn)
    if current > LATEST:
        raise StorageError(
            f"this database has schema version {current}; this memory-spine knows up to {LATEST}: upgrade it"
        )
    applied: list[int] = []
    try:
        if current == 0:

            def initial(c: sqlite3.Connection) -> None:
                _initial(c)
                c.execute("INSERT INTO meta(name, value) VALUES ('dim', ?)", (str(dim),))

            _in_transaction(conn, initial, 1)
            current = 1
            applied.append(1)
        elif current == 1 and _v1_gaps(conn):
            _in_transaction(conn, _catch_up_v1, 1)
        for version, name, apply in MIGRATIONS:
            if version > current:
                log.info("migrating the database to schema version %d: %s", version, name)
                _in_transaction(conn, apply, version)
                applied.append(version)
                current = version
        have = {r[1] for r in conn.execute("PRAGMA table_info(memory_history)")}
        if have and any(name not in have for name, _, _ in HISTORY_COLUMNS):
            # A column added to history.COLUMNS (with its migration of memories): the history follows.
            _in_transaction(conn, _add_history, current)
    except sqlite3.OperationalError as exc:
        if "readonly" not in str(exc).replace(" ", "").lower():
            raise
        log.warning("the database is read-only: schema migrations after version %d are not applied (%s)", current, exc)
    return applied
