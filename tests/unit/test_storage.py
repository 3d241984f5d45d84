"""SQLite storage: WAL, records and tags, key lookups newest-first, change tracking, claims."""

from __future__ import annotations

import numpy as np
import pytest

from memory_spine.errors import NotFound, StorageError
from memory_spine.models import Filter
from memory_spine.storage.base import ContentChanged, NewRecord, StaleFence
from memory_spine.storage.sqlite import SQLiteStorage, compile_filter

DIM = 8


def vec(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def rec(id: str, content: str = "x", tags=None, key=None, now=1000.0, vector=True, **kw) -> NewRecord:
    from memory_spine.keys import key_parent

    return NewRecord(
        id=id,
        content=content,
        tags=tags or [],
        metadata=kw.pop("metadata", {}),
        importance="medium",
        key=key,
        key_parent=key_parent(key),
        expires_at=kw.pop("expires_at", None),
        vector=vec(hash(id) % 1000) if vector else None,
        now=now,
    )


@pytest.fixture
def store(tmp_path):
    s = SQLiteStorage(tmp_path / "m.db", DIM)
    yield s
    s.close()


def test_wal_and_schema(store):
    assert store._writer.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    names = set(store.db.table_names())
    assert {"memories", "memory_tags", "tombstones", "claims", "meta", "memories_fts"} <= names
    assert "memory_tags" in names and store.db["memory_tags"].indexes  # the tag table is indexed


def test_put_get_upsert_keeps_seq_and_created_at(store):
    first = store.put([rec("a", "hello", tags=["t1", "t2"], now=1000.0)])[0]
    assert first.created and first.vector_changed
    again = store.put([rec("a", "hello", tags=["t3"], now=2000.0, vector=False)])[0]
    assert not again.created and not again.vector_changed and again.seq == first.seq
    row = store.get("a", now=2500.0)
    assert row["tags"] == ["t3"]
    assert row["created_at"].startswith("1970-01-01T00:16:40") and row["updated_at"].startswith("1970-01-01T00:33:20")
    assert store.count(Filter(tags=["t1"]), 2500.0) == 0 and store.count(Filter(tags=["t3"]), 2500.0) == 1


def test_unchanged_content_claim_is_verified(store):
    store.put([rec("a", "old")])
    with pytest.raises(ContentChanged):
        store.put([rec("a", "new", vector=False)])
    assert store.get("a", 0)["content"] == "old"  # the failed transaction left nothing behind


def test_batch_is_all_or_nothing(store):
    with pytest.raises(ContentChanged):
        store.put([rec("ok1"), rec("ok2"), rec("bad", vector=False)])
    assert store.count(None, 0) == 0


def test_key_lookup_newest_first_and_exact(store):
    store.put([rec("1", key="checkpoint:wf-1:fetch")])
    store.put([rec("2", key="checkpoint:wf-12:fetch")])
    store.put([rec("3", key="checkpoint:wf-1:review")])
    store.put([rec("4", key="checkpoint:wf-1:fetch")])  # the same step written again, later
    rows = store.find_key("checkpoint:wf-1", True, None, 0, 10)
    assert [r["id"] for r in rows] == ["4", "3", "1"]
    rows = store.find_key("checkpoint:wf-1:fetch", True, None, 0, 10)
    assert [r["id"] for r in rows] == ["4", "1"]
    assert store.find_key("checkpoint:wf", True, None, 0, 10) == []
    # an update makes a record the newest
    store.put([rec("1", key="checkpoint:wf-1:fetch", vector=False)])
    assert store.find_key("checkpoint:wf-1", True, None, 0, 1)[0]["id"] == "1"


def test_changes_since_tracks_vectors_and_deletes(store):
    store.put([rec("a"), rec("b")])
    v1 = store.max_vector_version()
    store.put([rec("a", vector=False)])  # metadata-only change: no new vector
    assert store.changes_since(v1).upserts == []
    store.put([rec("c")])
    seq_b = store.delete(["b"])[0]
    ch = store.changes_since(v1)
    assert [s for s, _ in ch.upserts] == [store.get("c", 0)["seq"]]
    assert ch.deletes == [seq_b]
    assert ch.version == store.max_vector_version()


def test_on_commit_runs_in_commit_order_under_the_lock(store):
    seen = []
    store.put([rec("a")], on_commit=lambda res: seen.append(("put", res[0].id, store._write_lock.locked())))
    store.delete(["a"], on_commit=lambda seqs: seen.append(("del", len(seqs), store._write_lock.locked())))
    assert seen == [("put", "a", True), ("del", 1, True)]


def test_claims(store):
    won, c = store.claim("dedup:k", "w1", lease=10, now=100, token_hash="h1")
    assert won and c["holder"] == "w1" and c["fence"] == 1
    won, c = store.claim("dedup:k", "w1", lease=10, now=105, token_hash="hx")  # the name is no credential
    assert not won and c["holder"] == "w1"
    c = store.renew("dedup:k", "h1", lease=10, now=106)  # renew keeps acquired_at and the fence
    assert c["acquired_at"] == store._claim(("k", "w1", 100, 0, 1))["acquired_at"] and c["fence"] == 1
    assert store.renew("dedup:k", "hx", lease=10, now=106) is None
    won, c = store.claim("dedup:k", "w2", lease=10, now=200, token_hash="h2")  # expired: taken over
    assert won and c["holder"] == "w2" and c["fence"] == 2
    assert store.renew("dedup:k", "h1", lease=10, now=201) is None  # the old lease is gone for good
    assert store.release("dedup:k", "h1", now=201)["holder"] == "w2"  # not yours
    assert store.release("dedup:k", "h2", now=201) is None
    with pytest.raises(NotFound):  # the service's own error, not a bare KeyError
        store.release("dedup:k", "h2", now=202)
    won, c = store.claim("dedup:k", "w3", lease=10, now=300, token_hash="h3")
    assert c["fence"] == 3  # fences never repeat, even after a release


def test_fenced_put(store):
    _, c = store.claim("workflow:w", "w1", lease=10, now=100, token_hash="h1")
    ok = rec("a")
    ok.fence = ("workflow:w", c["fence"])
    store.put([ok])
    store.claim("workflow:w", "w2", lease=10, now=200, token_hash="h2")  # w1's lease lapsed: w2 took over
    stale = rec("b")
    stale.fence = ("workflow:w", c["fence"])
    with pytest.raises(StaleFence):
        store.put([rec("c"), stale])
    assert store.get("b", 201) is None and store.get("c", 201) is None  # all or nothing


def test_dimension_mismatch_is_refused(tmp_path):
    SQLiteStorage(tmp_path / "m.db", DIM).close()
    with pytest.raises(StorageError, match="dimensional"):
        SQLiteStorage(tmp_path / "m.db", DIM * 2)


def test_filter_sql_always_excludes_expired():
    sql, params = compile_filter(None, 123.0)
    assert "expires_at" in sql and params == [123.0]


def test_readers_of_retired_threads_are_closed(store):
    # Server worker threads are retired when idle and replaced: their connections must not pile up.
    import threading

    store.put([rec("a")])
    for _ in range(20):
        t = threading.Thread(target=lambda: store.get("a", 0))
        t.start()
        t.join()
    store.get("a", 0)  # a reader opened after the others are gone prunes them
    assert len(store._readers) <= 2


def _where_plan(s: SQLiteStorage) -> str:
    cond, params = compile_filter(Filter(where={"bucket": {"$lt": 3}}), 1000.0)
    rows = s._reader().execute(f"EXPLAIN QUERY PLAN SELECT m.seq FROM memories m WHERE {cond} LIMIT 10", params)
    return " | ".join(str(r[-1]) for r in rows)


def test_a_where_filter_reads_the_covering_index_not_the_rows(store) -> None:
    store.put([rec(f"r{i}", metadata={"bucket": i % 10}) for i in range(50)])
    plan = _where_plan(store)
    assert "COVERING INDEX memories_expiry_metadata" in plan, plan
    assert sorted(store.candidate_seqs(Filter(where={"bucket": {"$lt": 3}}), 1000.0, 100)) == sorted(
        s for (s,) in store._reader().execute("SELECT seq FROM memories WHERE json_extract(metadata, '$.bucket') < 3")
    )


def test_a_data_dir_from_before_the_covering_index_gets_it_at_open(tmp_path, monkeypatch) -> None:
    from memory_spine.storage import sqlite_schema

    path = tmp_path / "memories.db"
    with monkeypatch.context() as m:  # schema version 1, as every release before versioned migrations said
        m.setattr(sqlite_schema, "MIGRATIONS", sqlite_schema.MIGRATIONS[:1])
        m.setattr(sqlite_schema, "LATEST", 1)
        old = SQLiteStorage(path, DIM)
    # Make it look like a database from before: the plain expiry index, no covering one.
    old._writer.execute("DROP INDEX memories_expiry_metadata")
    old._writer.execute("CREATE INDEX idx_memories_expires_at ON memories(expires_at)")
    old.close()
    s = SQLiteStorage(path, DIM)
    try:
        names = {r[0] for r in s._reader().execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "memories_expiry_metadata" in names and "idx_memories_expires_at" not in names
        assert "COVERING INDEX memories_expiry_metadata" in _where_plan(s)
        s.put([rec("a", metadata={"bucket": 1})])
        assert s.get("a", 1000.0)["metadata"] == {"bucket": 1}
    finally:
        s.close()
