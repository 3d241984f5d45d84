"""SQLite's versioned migrations: fresh files, pre-versioning data dirs, newer files, and atomic steps."""

from __future__ import annotations

import sqlite3

import pytest

from memory_spine.errors import StorageError
from memory_spine.storage import sqlite_schema
from memory_spine.storage.sqlite import SQLiteStorage

DIM = 8


def _objects(path) -> set[tuple[str, str]]:
    with sqlite3.connect(path) as conn:
        return {(t, n) for t, n in conn.execute("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")}


def _version(path) -> int:
    with sqlite3.connect(path) as conn:
        return sqlite_schema.schema_version(conn)


def test_a_fresh_file_is_at_the_latest_version_with_its_dimension(tmp_path):
    SQLiteStorage(tmp_path / "m.db", DIM).close()
    assert _version(tmp_path / "m.db") == sqlite_schema.LATEST
    with sqlite3.connect(tmp_path / "m.db") as conn:
        assert conn.execute("SELECT value FROM meta WHERE name = 'dim'").fetchone() == (str(DIM),)
    assert {("table", "memories_fts_vocab"), ("index", "memories_expiry_metadata")} <= _objects(tmp_path / "m.db")


def test_a_pre_versioning_data_dir_gets_what_later_copies_of_version_1_created(tmp_path, monkeypatch):
    SQLiteStorage(tmp_path / "fresh.db", DIM).close()
    fresh = _objects(tmp_path / "fresh.db")
    path = tmp_path / "m.db"
    with monkeypatch.context() as m:  # schema version 1, as every release before versioned migrations said
        m.setattr(sqlite_schema, "MIGRATIONS", sqlite_schema.MIGRATIONS[:1])
        m.setattr(sqlite_schema, "LATEST", 1)
        SQLiteStorage(path, DIM).close()
    with sqlite3.connect(path) as conn:  # as made by the first releases: no vocabulary, old index, no fencing
        conn.execute("DROP TABLE memories_fts_vocab")
        conn.execute("DROP INDEX memories_expiry_metadata")
        conn.execute("CREATE INDEX idx_memories_expires_at ON memories (expires_at)")
        conn.execute("DROP TABLE claims")
        conn.execute("CREATE TABLE claims (key TEXT PRIMARY KEY, holder TEXT, acquired_at FLOAT, expires_at FLOAT)")
        conn.execute("INSERT INTO claims VALUES ('old', 'w0', 1, 9e9)")
    store = SQLiteStorage(path, DIM)
    try:
        assert store.get_claim("old", 10)["fence"] is None  # kept; it carries no fence and can only expire
    finally:
        store.close()
    assert _objects(path) == fresh
    assert _version(path) == sqlite_schema.LATEST


def test_a_file_from_a_newer_release_is_refused(tmp_path):
    path = tmp_path / "m.db"
    SQLiteStorage(path, DIM).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE name = 'schema_version'", (str(sqlite_schema.LATEST + 1),))
    with pytest.raises(StorageError, match="schema version"):
        SQLiteStorage(path, DIM)


def test_a_new_migration_runs_once_and_a_failing_one_changes_nothing(tmp_path, monkeypatch):
    path = tmp_path / "m.db"
    SQLiteStorage(path, DIM).close()
    latest = sqlite_schema.LATEST
    calls = []

    def add_notes(conn: sqlite3.Connection) -> None:
        calls.append(1)
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY)")

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half (id INTEGER)")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(sqlite_schema, "MIGRATIONS", [*sqlite_schema.MIGRATIONS, (latest + 1, "notes", add_notes)])
    monkeypatch.setattr(sqlite_schema, "LATEST", latest + 1)
    SQLiteStorage(path, DIM).close()
    SQLiteStorage(path, DIM).close()
    assert calls == [1] and _version(path) == latest + 1 and ("table", "notes") in _objects(path)

    monkeypatch.setattr(sqlite_schema, "MIGRATIONS", [*sqlite_schema.MIGRATIONS, (latest + 2, "broken", broken)])
    monkeypatch.setattr(sqlite_schema, "LATEST", latest + 2)
    with pytest.raises(RuntimeError, match="disk on fire"):
        SQLiteStorage(path, DIM)
    assert _version(path) == latest + 1 and ("table", "half") not in _objects(path)


def test_migrations_are_numbered_in_order():
    versions = [v for v, _, _ in sqlite_schema.MIGRATIONS]
    assert versions == list(range(1, len(versions) + 1)) and sqlite_schema.LATEST == versions[-1]


def test_the_stemmed_index_is_filled_from_the_records_a_data_dir_already_holds(tmp_path, monkeypatch):
    """Migration 6 (Porter-stemmed FTS5 index) on a data dir of version 5 with records: they match by stem."""
    from tests.unit.test_storage import DIM as STORE_DIM
    from tests.unit.test_storage import rec

    path = tmp_path / "m.db"
    with monkeypatch.context() as m:
        m.setattr(sqlite_schema, "MIGRATIONS", sqlite_schema.MIGRATIONS[:5])
        m.setattr(sqlite_schema, "LATEST", 5)
        old = SQLiteStorage(path, STORE_DIM)
        old.put([rec("a", "we went hiking"), rec("b", "a quiet evening")])
        assert [s for s, _ in old.keyword("hikes", None, 2000.0, 10)] == []  # exact words only
        old.close()
    store = SQLiteStorage(path, STORE_DIM)
    try:
        assert _version(path) == sqlite_schema.LATEST
        hits = store.keyword("hikes", None, 2000.0, 10)
        assert len(hits) == 1 and store.rows([hits[0][0]], None, 2000.0)[hits[0][0]]["id"] == "a"
    finally:
        store.close()
