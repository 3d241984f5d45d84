"""Expiry: `ttl_seconds` / `expires_at` on ingest; an expired record is never returned, and the purge removes
it from SQLite, the FTS index and the vector index. Time is moved with the service's clock, not by sleeping."""

from __future__ import annotations

import time

import pytest

from memory_spine.config import Settings
from memory_spine.models import Filter, MemoryIn, MemoryPatch, SearchQuery
from memory_spine.service import MemoryService


class Clock:
    """A service clock that moves forward without sleeping: `clock.advance(seconds)`."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def test_the_service_reads_time_only_from_its_clock():
    import inspect

    from memory_spine import service as module

    assert "time.time()" not in inspect.getsource(module)  # else the clock below would not move it


@pytest.fixture
def clock(service):
    service.clock = c = Clock()
    return c


def raw_rows(service: MemoryService) -> int:
    return service.storage._reader().execute("SELECT count(*) FROM memories").fetchone()[0]


def fts_hits(service: MemoryService, word: str) -> int:
    sql = "SELECT count(*) FROM memories_fts WHERE memories_fts MATCH ?"
    return service.storage._reader().execute(sql, (word,)).fetchone()[0]


def visible(service: MemoryService, id_: str, query: str, key: str | None = None) -> dict[str, bool]:
    """Where a record can be seen: every read path."""
    out = {}
    for mode in ("semantic", "keyword", "hybrid"):
        hits = service.search(SearchQuery(query=query, mode=mode, limit=100))["results"]
        out[mode] = any(h["id"] == id_ for h in hits)
        hits = service.search(SearchQuery(query=query, mode=mode, limit=100, tags=[id_]))["results"]
        out[mode + "+filter"] = any(h["id"] == id_ for h in hits)
    try:
        service.get(id_)
        out["get"] = True
    except Exception:
        out["get"] = False
    out["list"] = any(m["id"] == id_ for m in service.list(Filter(), limit=1000)["results"])
    out["count"] = service.storage.count(Filter(tags=[id_]), service.clock()) > 0
    if key is not None:
        out["key_search"] = bool(service.search(SearchQuery(query=key))["results"])
        out["list_keys"] = bool(service.list_keys(key)["results"])
    return out


def test_ttl_sets_expires_at(service):
    before = time.time()
    out = service.ingest(MemoryIn(content="short lived", ttl_seconds=90))
    got = service.get(out["id"])
    from datetime import datetime

    expires = datetime.fromisoformat(got["expires_at"].replace("Z", "+00:00")).timestamp()
    assert before + 90 <= expires <= time.time() + 90
    at = service.ingest(MemoryIn(content="fixed end", expires_at="2999-01-01T00:00:00Z"))
    assert service.get(at["id"])["expires_at"] == "2999-01-01T00:00:00.000000Z"
    epoch = service.ingest(MemoryIn(content="fixed end", expires_at=32_000_000_000))
    assert service.get(epoch["id"])["expires_at"].startswith("2984-")


def test_an_expired_record_is_never_returned(service, clock):
    service.ingest(MemoryIn(id="keep", content="walrus colony report", tags=["keep"]))
    service.ingest(MemoryIn(id="gone", content="walrus colony report", tags=["gone"], ttl_seconds=60))
    service.ingest(MemoryIn(id="ck", content="checkpoint:wf-9:step", tags=["ck"], ttl_seconds=60))
    assert all(visible(service, "gone", "walrus colony").values())
    assert all(visible(service, "ck", "checkpoint", key="checkpoint:wf-9").values())
    clock.advance(61)
    assert not any(visible(service, "gone", "walrus colony").values())
    assert not any(visible(service, "ck", "checkpoint", key="checkpoint:wf-9").values())
    assert visible(service, "keep", "walrus colony")["get"]
    assert service.stats()["total_memories"] == 1
    # Not purged yet: the row, its FTS entry and its vector are still there, just never shown.
    assert raw_rows(service) == 3 and len(service.index) == 3


def test_expires_at_in_the_past_is_never_returned(service):
    service.ingest(MemoryIn(id="past", content="ancient history", tags=["past"], expires_at=time.time() - 1))
    assert not any(visible(service, "past", "ancient history").values())


def test_purge_removes_from_sqlite_fts_and_index(service, clock):
    service.ingest_batch(
        [MemoryIn(id=f"tmp{i}", content=f"ephemeral narwhal {i}", tags=["t"], ttl_seconds=30) for i in range(5)]
    )
    service.ingest(MemoryIn(id="keep", content="durable narwhal"))
    labels_before = service.index.labels()
    assert raw_rows(service) == 6 and fts_hits(service, "ephemeral") == 5 and len(service.index) == 6
    assert service.purge_expired() == 0
    clock.advance(31)
    assert service.purge_expired() == 5
    assert raw_rows(service) == 1
    assert fts_hits(service, "ephemeral") == 0 and fts_hits(service, "durable") == 1
    assert len(service.index) == 1 and len(service.index.labels()) == 1
    assert service.index.labels() < labels_before
    assert service.check()["missing_from_index"] == 0 and service.check()["extra_in_index"] == 0
    assert [h["id"] for h in service.search(SearchQuery(query="narwhal", limit=10))["results"]] == ["keep"]
    assert service.purge_expired() == 0


def test_purge_runs_in_the_background(tmp_path):
    settings = Settings(data_dir=tmp_path / "d", embedder="fake", purge_seconds=0.1, index_save_seconds=3600)
    with MemoryService.open(settings) as svc:
        svc.ingest(MemoryIn(id="old", content="stale", expires_at=time.time() - 1))
        svc.ingest(MemoryIn(id="new", content="fresh"))
        deadline = time.monotonic() + 10
        while raw_rows(svc) > 1 and time.monotonic() < deadline:
            time.sleep(0.05)  # the housekeeping thread runs on its own schedule: wait for it, boundedly
        assert raw_rows(svc) == 1 and len(svc.index) == 1


def test_ingesting_an_expired_id_again_starts_afresh(service, clock):
    first = service.ingest(MemoryIn(id="x", content="one", ttl_seconds=10))
    assert first["created"] is True
    old_created = service.get("x")["created_at"]
    clock.advance(11)
    again = service.ingest(MemoryIn(id="x", content="two"))
    assert again["created"] is True, "the old record had expired: from the client's view this is a new one"
    got = service.get("x")
    assert got["content"] == "two" and got["expires_at"] is None and got["created_at"] > old_created
    assert service.purge_expired() == 0 and raw_rows(service) == 1


def test_patch_can_extend_or_set_expiry_and_not_revive(service, clock):
    service.ingest(MemoryIn(id="p", content="patch me", ttl_seconds=10))
    service.update("p", MemoryPatch(ttl_seconds=100))
    clock.advance(50)
    assert service.get("p")["content"] == "patch me"
    service.update("p", MemoryPatch(expires_at=clock() + 5))
    clock.advance(6)
    from memory_spine.errors import NotFound

    with pytest.raises(NotFound):
        service.update("p", MemoryPatch(ttl_seconds=1000))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"ttl_seconds": 0}, "ttl_seconds"),
        ({"ttl_seconds": -5}, "ttl_seconds"),
        ({"expires_at": "next tuesday"}, "expires_at"),
    ],
)
async def test_bad_expiry_is_422_naming_the_field(client, body, field):
    r = await client.post("/ingest", json={"content": "x", **body})
    # (pydantic's failed union branch may follow the name: "expires_at.float")
    assert r.status_code == 422 and r.json()["error"]["field"].startswith(field)
    r = await client.post("/ingest/batch", json={"records": [{"content": "ok"}, {"content": "x", **body}]})
    assert r.status_code == 422 and r.json()["error"]["field"].startswith(f"records[1].{field}")
    assert (await client.get("/stats")).json()["total_memories"] == 0
