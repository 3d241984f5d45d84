"""Record history in process: the version list's description (storage/history.py), `as_of` parsing, SQLite's
history table following `history.COLUMNS`, the settings, and the kit client's history calls (ASGI).

The HTTP behaviour on both backends is in tests/contracts/test_history.py.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import httpx
import numpy as np
import pytest

from memory_spine.config import Settings
from memory_spine.errors import InvalidInput
from memory_spine.storage import history, sqlite, sqlite_schema
from memory_spine.storage.base import NewRecord
from memory_spine.validation import as_of as _as_of
from workflow_kit import errors
from workflow_kit.client import MemoryClient


def _row(version: int, content: str, **kw) -> dict:
    return {
        "seq": 1,
        "id": "r",
        "content": content,
        "tags": kw.get("tags", []),
        "metadata": {},
        "importance": "medium",
        "key": None,
        "created_at": "2026-01-01T00:00:00.000000Z",
        "updated_at": kw.get("at", "2026-01-01T00:00:00.000000Z"),
        "expires_at": None,
        "version": version,
    }


def test_describe_orders_newest_first_and_says_what_changed():
    current = _row(9, "c", tags=["x"], at="t3")
    prior = [
        {**_row(5, "b", at="t2"), "superseded_at": "t3", "superseded_by": 9, "op": "patch"},
        {**_row(2, "a", at="t1"), "superseded_at": "t2", "superseded_by": 5, "op": "upsert"},
    ]
    out = history.describe(current, prior)
    assert [v["version"] for v in out] == [9, 5, 2]
    assert [v["changed"] for v in out] == [["content", "tags"], ["content"], None]
    assert [(v["valid_from"], v["valid_until"], v["ended_by"]) for v in out] == [
        ("t3", None, None),
        ("t2", "t3", "patch"),
        ("t1", "t2", "upsert"),
    ]
    assert all("seq" not in v and "superseded_at" not in v for v in out)
    deleted = history.describe(None, [{**_row(5, "b"), "superseded_at": "t3", "superseded_by": None, "op": "delete"}])
    assert deleted[0]["current"] is False and deleted[0]["ended_by"] == "delete" and deleted[0]["changed"] is None


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1700000000", 1_700_000_000.0),
        ("1700000000.5", 1_700_000_000.5),
        ("2026-01-02T03:04:05Z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()),
        ("2026-01-02T03:04:05", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()),  # naive: UTC
        ("2026-01-02T05:04:05+02:00", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()),
    ],
)
def test_as_of_reads_iso_and_epoch_seconds(text, expected):
    assert _as_of(text) == expected


@pytest.mark.parametrize("text", ["", "soon", "nan", "inf", "1e400", "-1e20", "2026-02-30T00:00:00Z"])
def test_as_of_refuses_what_is_no_time_naming_the_field(text):
    with pytest.raises(InvalidInput) as info:
        _as_of(text)
    assert info.value.field == "as_of"


def test_retention_settings_and_their_zero():
    assert history.keep_versions(Settings(history_versions=4, history_days=2)) == 4
    assert history.keep_versions(Settings(history_versions=0)) == 0
    assert history.keep_versions(Settings(history_days=0)) == 0
    with pytest.raises(ValueError):
        Settings(history_versions=-1)


def _record(id_: str, content: str, now: float) -> NewRecord:
    v = np.ones(8, dtype=np.float32) / np.sqrt(8)
    return NewRecord(id_, content, [], {}, "medium", None, None, None, v, now=now)


def test_sqlite_history_table_follows_the_column_list(tmp_path, monkeypatch):
    """A column added to memories and to history.COLUMNS (one line) appears in memory_history on the next open,
    and is copied: what the namespace and event-time columns will need."""
    path = tmp_path / "m.db"
    SQLiteStorage = sqlite.SQLiteStorage
    SQLiteStorage(path, 8).close()
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE memories ADD COLUMN extra TEXT NOT NULL DEFAULT 'dflt'")
    columns = (*history.COLUMNS, ("extra", "TEXT NOT NULL DEFAULT 'dflt'", "text NOT NULL DEFAULT 'dflt'"))
    monkeypatch.setattr(sqlite_schema, "HISTORY_COLUMNS", columns)
    insert = sqlite._HISTORY_INSERT.replace("occurred_at, vector", "occurred_at, extra, vector").replace(
        "m.occurred_at, m.vector", "m.occurred_at, m.extra, m.vector"
    )
    monkeypatch.setattr(sqlite, "_HISTORY_INSERT", insert)
    s = SQLiteStorage(path, 8)
    try:
        with sqlite3.connect(path) as conn:
            assert "extra" in {r[1] for r in conn.execute("PRAGMA table_info(memory_history)")}
        s.put([_record("a", "one", 1000.0)])
        s.put([_record("a", "two", 1001.0)])
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT content, extra FROM memory_history").fetchall() == [("one", "dflt")]
    finally:
        s.close()


@pytest.fixture
async def kit(app):
    async with MemoryClient("http://memory-spine", transport=httpx.ASGITransport(app=app)) as c:
        yield c


async def test_kit_client_history_revert_as_of_deleted_and_restore(kit):
    await kit.ingest("first", id="team/k")  # a slash in the id: the client quotes it
    first = await kit.get("team/k")
    await kit.update("team/k", content="second")
    h = await kit.history("team/k")
    assert [v["content"] for v in h["versions"]] == ["second", "first"]
    assert (await kit.get("team/k", as_of=first["updated_at"]))["content"] == "first"
    assert (await kit.get("team/k", as_of=datetime.fromisoformat(first["updated_at"])))["content"] == "first"
    back = await kit.revert("team/k", first["version"], if_version=h["current_version"])
    assert back["content"] == "first" and back["version"] > h["current_version"]
    with pytest.raises(errors.PreconditionFailed):
        await kit.revert("team/k", first["version"], if_version=first["version"])
    with pytest.raises(errors.NotFound):
        await kit.revert("team/k", 10**12)
    await kit.delete("team/k")
    with pytest.raises(errors.Conflict):
        await kit.revert("team/k", first["version"])
    assert [r["id"] for r in (await kit.deleted())["results"]] == ["team/k"]
    assert (await kit.restore("team/k"))["content"] == "first"
    assert (await kit.deleted(limit=10))["results"] == []
    with pytest.raises(errors.Conflict):
        await kit.restore("team/k")
    with pytest.raises(errors.InvalidInput):
        await kit.get("team/k", as_of="not a time")
