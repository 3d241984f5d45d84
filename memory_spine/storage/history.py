"""Record history, what both backends share: the history table's shape, the operations that keep a prior
version, the retention rule, and how a version list is described.

Every write that replaces or removes a record (PATCH, an upsert through ingest, revert, delete by id or by
filter) first copies the row it replaces into `memory_history`, in the same transaction, with when it ended
(`superseded_at`), what ended it (`op`) and the version that replaced it (`superseded_by`, NULL for a delete).
The expiry purge keeps nothing: a record that expired reached the end its writer gave it, it was not changed by
anyone. The row copies the vector too (1.5 KB at 384 dimensions): a revert or a restore writes it back
without running the model, and bit for bit the vector the version had.

The copied columns are listed once, in `COLUMNS`, with their type in each backend: SQLite's `_add_history`
and PostgreSQL's migration create (and extend) the table from it, and both copy rows with it. A column added to
`memories` that reads return (`namespace`, `occurred_at`) is one line there.

The SQL itself lives in each backend (storage/sqlite.py, storage/postgres.py); this module imports neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "COLUMNS",
    "DELETE_OPS",
    "FIELDS",
    "OPS",
    "column_names",
    "describe",
    "keep_versions",
]

# (name, SQLite type, PostgreSQL type): the memories columns a history row copies, in this order. The vector
# (SQLite `vector` BLOB, PostgreSQL `embedding vector(dim)`) is copied beside them by each backend. A NOT NULL
# column added later needs a DEFAULT (history rows kept before it have none), as it does on memories.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("seq", "INTEGER NOT NULL", "bigint NOT NULL"),
    ("id", "TEXT NOT NULL", 'text COLLATE "C" NOT NULL'),
    ("content", "TEXT NOT NULL", "text NOT NULL"),
    ("tags", "TEXT NOT NULL DEFAULT '[]'", "text[] NOT NULL DEFAULT '{}'"),
    ("metadata", "TEXT NOT NULL DEFAULT '{}'", "jsonb NOT NULL DEFAULT '{}'"),
    ("importance", "TEXT NOT NULL DEFAULT 'medium'", "text NOT NULL DEFAULT 'medium'"),
    ("key", "TEXT", 'text COLLATE "C"'),
    ("key_parent", "TEXT", 'text COLLATE "C"'),
    ("created_at", "REAL NOT NULL", "timestamptz NOT NULL"),
    ("updated_at", "REAL NOT NULL", "timestamptz NOT NULL"),
    ("expires_at", "REAL", "timestamptz"),
    ("version", "INTEGER NOT NULL", "bigint NOT NULL"),
    ("namespace", "TEXT NOT NULL DEFAULT 'default'", "text COLLATE \"C\" NOT NULL DEFAULT 'default'"),
    ("occurred_at", "REAL", "timestamptz"),
)

# What ended a version (the history row's `op`). A revert or a restore is a write like the others.
OPS = ("patch", "upsert", "revert", "restore", "delete", "delete_where")
DELETE_OPS = ("delete", "delete_where")

# The fields a version's "changed" list compares (what a client wrote; not the bookkeeping times).
FIELDS = ("content", "tags", "metadata", "importance", "key", "expires_at", "occurred_at")


def column_names(prefix: str = "") -> str:
    """The copied columns as an SQL list, each with `prefix` (say "m."): for INSERT ... SELECT."""
    return ", ".join(prefix + name for name, _, _ in COLUMNS)


def keep_versions(settings: Any) -> int:
    """How many prior versions a record keeps: `history_versions`, or 0 (no history) when either setting is 0."""
    if settings.history_versions <= 0 or settings.history_days <= 0:
        return 0
    return int(settings.history_versions)


def describe(current: dict[str, Any] | None, prior: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The version list `GET /memories/{id}/history` answers, newest first.

    `current` is the live row (or None: deleted), `prior` the history rows newest first, each with
    `version`, `superseded_at` (ISO), `superseded_by` and `op`. Each entry gets `current`, `valid_from` (when
    the version was written), `valid_until` (when it was replaced or deleted; None for the live one),
    `ended_by` (the op that ended it) and `changed`: the fields that differ from the version before it (None for
    the oldest one kept, whose predecessor is unknown).
    """
    entries: list[dict[str, Any]] = []
    if current is not None:
        entries.append(
            {
                **current,
                "current": True,
                "valid_from": current["updated_at"],
                "valid_until": None,
                "ended_by": None,
                "superseded_by": None,
            }
        )
    for row in prior:
        entry = {k: v for k, v in row.items() if k not in ("superseded_at", "op")}
        entry.update(
            current=False,
            valid_from=row["updated_at"],
            valid_until=row["superseded_at"],
            ended_by=row["op"],
            superseded_by=row["superseded_by"],
        )
        entries.append(entry)
    for newer, older in zip(entries, entries[1:], strict=False):
        newer["changed"] = [f for f in FIELDS if newer.get(f) != older.get(f)]
    if entries:
        entries[-1]["changed"] = None
    for e in entries:
        e.pop("seq", None)
    return entries
