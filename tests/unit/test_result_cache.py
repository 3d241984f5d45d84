"""The search result cache: a repeated search is answered from memory until any write, never stale."""

from __future__ import annotations

import time

import pytest

from memory_spine.config import Settings
from memory_spine.embedders import FakeEmbedder
from memory_spine.models import MemoryIn, SearchQuery
from memory_spine.service import MemoryService


def _ids(answer: dict) -> list[str]:
    return [h["id"] for h in answer["results"]]


def _hits(service: MemoryService) -> int:
    return service.stats()["result_cache"]["hits"]


async def test_a_repeated_search_is_served_from_the_cache(client, service) -> None:
    await client.post("/ingest/batch", json={"records": [{"id": f"r{i}", "content": f"note {i}"} for i in range(5)]})
    body = {"query": "note 3", "mode": "semantic", "limit": 3}
    first = (await client.post("/search", json=body)).json()
    assert service.stats()["result_cache"]["misses"] == 1  # one search over HTTP, one miss
    before = _hits(service)
    again = (await client.post("/search", json=body)).json()
    assert again == first
    assert _hits(service) == before + 1
    # Another limit, mode or filter is another search.
    await client.post("/search", json={**body, "limit": 2})
    assert _hits(service) == before + 1


@pytest.mark.parametrize("write", ["ingest", "patch", "delete", "claim"])
async def test_any_write_makes_the_cached_answer_stale(client, service, write: str) -> None:
    await client.post("/ingest/batch", json={"records": [{"id": f"w{i}", "content": f"alpha {i}"} for i in range(4)]})
    body = {"query": "alpha 1", "mode": "semantic", "limit": 4}
    first = (await client.post("/search", json=body)).json()
    assert "w1" in _ids(first)
    if write == "ingest":
        r = await client.post("/ingest", json={"id": "new", "content": "alpha 1"})
    elif write == "patch":
        r = await client.patch("/memories/w1", json={"content": "something else entirely"})
    elif write == "delete":
        r = await client.delete("/memories/w1")
    else:
        r = await client.post("/claims", json={"key": "lock:x", "holder": "h"})
    assert r.status_code in (200, 201)
    before = _hits(service)
    after = (await client.post("/search", json=body)).json()
    assert _hits(service) == before  # recomputed, not served
    if write == "ingest":
        assert "new" in _ids(after)[:2]  # the same text as the best hit ranks beside it
    elif write == "patch":
        row = next(h for h in after["results"] if h["id"] == "w1") if "w1" in _ids(after) else None
        assert row is None or row["content"] == "something else entirely"
    elif write == "delete":
        assert "w1" not in _ids(after)
    else:
        assert after == first  # nothing searchable changed; the answer is merely recomputed


def test_answers_holding_an_expiring_record_are_not_kept(tmp_path) -> None:
    now = [time.time()]
    with MemoryService.open(Settings(data_dir=tmp_path), embedder=FakeEmbedder(), clock=lambda: now[0]) as svc:
        svc.ingest(MemoryIn(id="brief", content="short lived fact", ttl_seconds=1.5))
        svc.ingest(MemoryIn(id="stays", content="long lived fact"))
        q = SearchQuery(query="short lived fact", mode="semantic", limit=2)
        assert "brief" in _ids(svc.search(q))
        assert "brief" in _ids(svc.search(q))
        assert svc.result_cache.hits == 0
        now[0] += 1.6  # the service's clock, not a sleep
        assert _ids(svc.search(q)) == ["stays"]  # expired: gone, though no write happened


def test_explain_is_never_cached_and_size_zero_turns_it_off(tmp_path) -> None:
    with MemoryService.open(Settings(data_dir=tmp_path, result_cache_size=0), embedder=FakeEmbedder()) as svc:
        svc.ingest(MemoryIn(content="x marks the spot"))
        q = SearchQuery(query="x", mode="semantic")
        svc.search(q)
        svc.search(q)
        assert svc.result_cache.info()["entries"] == 0
    with MemoryService.open(Settings(data_dir=tmp_path / "b"), embedder=FakeEmbedder()) as svc:
        svc.ingest(MemoryIn(content="x marks the spot"))
        q = SearchQuery(query="x", mode="semantic", explain=True)
        assert "plan" in svc.search(q) and "plan" in svc.search(q)
        assert svc.result_cache.hits == 0


def test_a_write_racing_a_search_cannot_leave_a_stale_answer(tmp_path) -> None:
    """The commit count is read before searching: a write that commits during the search makes the answer it
    produced stale at once, whichever data the search saw."""
    with MemoryService.open(Settings(data_dir=tmp_path), embedder=FakeEmbedder()) as svc:
        svc.ingest(MemoryIn(id="a", content="racing condition"))
        q = SearchQuery(query="racing condition", mode="semantic")
        real = svc._search

        def search_then_write(query: SearchQuery, vector: object = None) -> dict:
            out = real(query, vector)
            svc.ingest(MemoryIn(id="b", content="racing condition"))  # commits after the search read
            return out

        svc._search = search_then_write  # type: ignore[method-assign]
        stale = svc.search(q)
        svc._search = real  # type: ignore[method-assign]
        assert "b" not in _ids(stale)
        assert "b" in _ids(svc.search(q))
