"""Namespaces in the core (SQLite): the migration of a data dir made before them, the planner's namespace
filter, and the service's namespace arguments.

A data dir from before namespaces (the old schema: `id UNIQUE`, claims keyed by `key`) is built with the
migration switched off and rows written as the old code wrote them; opening it with this version moves every
record and claim into `default` in place, keeps seqs (the FTS index and the vector index stay valid) and the
AUTOINCREMENT counter, and lets the same id exist in another namespace. Opening it again changes nothing.
"""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from memory_spine.config import Settings
from memory_spine.embedders import FakeEmbedder
from memory_spine.errors import InvalidInput
from memory_spine.models import ClaimIn, DeleteWhere, Filter, MemoryIn, SearchQuery
from memory_spine.namespaces import Selector, kit_namespace, resolve, selector
from memory_spine.service import MemoryService
from memory_spine.storage import sqlite as sqlite_mod
from memory_spine.storage import sqlite_schema
from memory_spine.storage.filters import parse_filter

DIM = 32


def _open(tmp_path, **kw) -> MemoryService:
    settings = Settings(data_dir=tmp_path / "data", embedder="fake", purge_seconds=3600, **kw)
    return MemoryService.open(settings, embedder=FakeEmbedder(dim=DIM))


def _old_data_dir(tmp_path, monkeypatch) -> None:
    """A data dir in the schema from before namespaces, holding three records (one deleted) and a claim."""
    with monkeypatch.context() as m:
        m.setattr(sqlite_schema, "MIGRATIONS", sqlite_schema.MIGRATIONS[:1])  # the schema's version 1
        m.setattr(sqlite_schema, "LATEST", 1)
        svc = _open(tmp_path)
        svc.close()
    db = tmp_path / "data" / sqlite_mod.DB_FILE
    emb = FakeEmbedder(dim=DIM)
    conn = sqlite3.connect(db, isolation_level=None)
    assert "namespace" not in {r[1] for r in conn.execute("PRAGMA table_info(memories)")}
    for i, (id_, text, key) in enumerate(
        [("a", "the old deploy runbook", "runbook:deploy"), ("b", "gone", None), ("c", "kept notes", None)], 1
    ):
        vector = emb.embed([text])[0].astype(np.float32).tobytes()
        conn.execute(
            "INSERT INTO memories (id, content, tags, metadata, importance, key, key_parent, created_at, updated_at,"
            " expires_at, version, vector_version, vector) VALUES (?, ?, '[\"old\"]', '{}', 'medium', ?, NULL,"
            " 1000, 1000, NULL, ?, ?, ?)",
            (id_, text, key, i, i, vector),
        )
        seq = conn.execute("SELECT seq FROM memories WHERE id = ?", (id_,)).fetchone()[0]
        conn.execute("INSERT INTO memory_tags (tag, seq) VALUES ('old', ?)", (seq,))
    conn.execute("DELETE FROM memory_tags WHERE seq = (SELECT seq FROM memories WHERE id = 'b')")
    conn.execute("DELETE FROM memories WHERE id = 'b'")
    conn.execute("UPDATE sqlite_sequence SET seq = 40 WHERE name = 'memories'")  # seqs up to 40 were used
    conn.execute(
        "INSERT INTO claims (key, holder, acquired_at, expires_at, fence, token_hash)"
        " VALUES ('job:1', 'w1', 1, 9e9, 7, 'h')"
    )
    conn.close()


def test_an_old_data_dir_migrates_in_place(tmp_path, monkeypatch):
    _old_data_dir(tmp_path, monkeypatch)
    with _open(tmp_path) as svc:
        got = svc.get("a")
        assert got["namespace"] == "default" and got["content"] == "the old deploy runbook"
        assert svc.get_key("runbook:deploy")["id"] == "a"
        assert [h["id"] for h in svc.search(SearchQuery(query="runbook", mode="keyword"))["results"]] == ["a"]
        assert svc.search(SearchQuery(query="kept notes", limit=1))["results"][0]["id"] == "c"
        assert svc.get_claim("job:1")["holder"] == "w1"
        assert svc.list(Filter(tags=["old"]))["results"][0]["namespace"] == "default"
        # The same id in another namespace is another record; a new seq is above every seq used before.
        svc.ingest(MemoryIn(id="a", content="someone else's a", namespace="team/x"))
        assert svc.get("a")["content"] == "the old deploy runbook"
        assert svc.storage.get("a", 2e9, namespace="team/x")["seq"] > 40
        assert svc.check()["missing_from_index"] == 0
    conn = sqlite3.connect(tmp_path / "data" / sqlite_mod.DB_FILE)
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    triggers = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    conn.close()
    assert {"memories_namespace_id", "memories_namespace_key", "memories_namespace_key_parent"} <= indexes
    assert "idx_memories_key_version" not in indexes
    assert {"memories_ai", "memories_ad", "memories_au"} <= triggers
    with _open(tmp_path) as svc:  # idempotent: nothing left to do, nothing lost
        assert svc.get("a")["namespace"] == "default" and svc.get("a", "team/x")["content"] == "someone else's a"
        svc.update("c", __import__("memory_spine.models").models.MemoryPatch(content="new text"))
        assert [h["id"] for h in svc.search(SearchQuery(query="new text", mode="keyword"))["results"]] == ["c"]


def test_service_namespace_arguments(tmp_path):
    with _open(tmp_path) as svc:
        svc.ingest(MemoryIn(id="x", content="apple pie recipe", key="recipe:pie"))
        svc.ingest(MemoryIn(id="x", content="apple pie recipe", key="recipe:pie"), namespace="_kit/default")
        svc.ingest_batch([MemoryIn(id="y", content="cake"), MemoryIn(id="y", content="cake", namespace="b")], "a")
        assert svc.get("y", "a")["namespace"] == "a" and svc.get("y", "b")["namespace"] == "b"
        assert svc.list_keys("recipe:", namespace="_kit/default")["results"][0]["namespace"] == "_kit/default"
        assert svc.key_groups("recipe:", namespace="nobody")["total"] == 0
        assert svc.delete_where(DeleteWhere(key="recipe:pie", namespace="_kit/default")) == {"deleted": 1}
        assert svc.get("x")["id"] == "x"
        svc.claim(ClaimIn(key="k"), namespace="a")
        with pytest.raises(InvalidInput) as err:
            svc.claim(ClaimIn(key="k", namespace="a//b"))
        assert err.value.field == "namespace"
        with pytest.raises(InvalidInput):
            svc.ingest_batch([MemoryIn(content="z", id="q"), MemoryIn(content="z", id="q")], "a")
        stats = svc.stats("a")
        assert stats["total_memories"] == 1 and stats["namespaces"] == {"a": 1, "b": 1, "default": 1}


def test_the_planner_filters_by_namespace_only_when_it_narrows(tmp_path):
    with _open(tmp_path) as svc:
        svc.ingest_batch([MemoryIn(content=f"note {i}") for i in range(40)])
        only_default = parse_filter(Filter(namespace="default"))
        assert svc.planner.scoped(only_default).namespaces is None, "one namespace: no filter to apply"
        svc.ingest_batch([MemoryIn(content=f"other {i}") for i in range(5)], "team/a")
        assert svc.planner.scoped(only_default).namespaces == Selector(("default",))
        assert svc.planner.scoped(parse_filter(Filter(namespace=["default", "team/"]))).namespaces is None
        plan = svc.search(SearchQuery(query="other 3", explain=True, mode="semantic", namespace="team/a"))["plan"]
        assert plan["plan"] == "exact" and plan["candidates"] == 5
        plan = svc.search(SearchQuery(query="note 3", explain=True, mode="semantic"))["plan"]
        assert plan["plan"] == "exact" and plan["candidates"] == 40
        hits = svc.search(SearchQuery(query="note 3", limit=50, namespace=["default", "team/"]))["results"]
        assert len(hits) == 45
        assert len(svc.search(SearchQuery(query="note", limit=50))["results"]) == 40


def test_selector_and_resolve():
    assert selector(None) == Selector(("default",))
    assert selector(["a/", "b", "a"]) == Selector(("a", "b"), ("a/",))
    assert resolve(None, "q", "h") == "q" and resolve(None, None, None) == "default"
    assert kit_namespace("team/a") == "_kit/team/a"
    with pytest.raises(InvalidInput):
        selector([])
    with pytest.raises(InvalidInput):
        selector(["x"] * 101)
