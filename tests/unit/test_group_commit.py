"""Concurrent single-record ingests on the event loop (`MemoryService.ingest_async`, `POST /ingest`): they share
model runs and transactions (group commit), each is answered only once committed, and one bad record fails
only its own request. Also `/search`'s awaited embedding (`query_vector`): the same answers as the thread path.
"""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import numpy as np
import pytest

from memory_spine.api import create_app
from memory_spine.config import Settings
from memory_spine.embedders import FakeEmbedder
from memory_spine.errors import InvalidInput, NotFound, StaleFence
from memory_spine.models import ClaimIn, MemoryIn, SearchQuery
from memory_spine.service import MemoryService


class SlowFake(FakeEmbedder):
    """A model run takes a while, so concurrent callers queue behind it and share the next run."""

    def __init__(self) -> None:
        super().__init__(dim=32)
        self.batches: list[int] = []
        self.threads: set[str] = set()

    def embed(self, texts):
        self.batches.append(len(texts))
        self.threads.add(threading.current_thread().name)
        time.sleep(0.02)
        return super().embed(texts)


@pytest.fixture
def svc(tmp_path):
    settings = Settings(data_dir=tmp_path / "d", embedder="fake", purge_seconds=3600, index_save_seconds=3600)
    service = MemoryService.open(settings, embedder=SlowFake())
    yield service
    service.close()


async def test_concurrent_ingests_share_runs_and_transactions_and_all_land(svc):
    inner = svc.embedder.inner
    before = svc.storage.commits
    n = 40
    out = await asyncio.gather(
        *(svc.ingest_async(MemoryIn(id=f"r{i}", content=f"note {i} about ducks")) for i in range(n))
    )
    assert [o["id"] for o in out] == [f"r{i}" for i in range(n)] and all(o["created"] for o in out)
    commits = svc.storage.commits - before
    assert 1 <= commits < n / 2, commits  # grouped: far fewer transactions than records
    assert sum(inner.batches) == n and len(inner.batches) < n / 2  # and far fewer model runs
    assert inner.threads == {"memory-spine-embed"}  # the model ran on its one thread, not on callers'
    # Every acknowledged record is stored, indexed and findable.
    assert svc.stats()["total_memories"] == n and len(svc.index) == n
    hits = svc.search(SearchQuery(query="note 7 about ducks", mode="semantic", limit=1))["results"]
    assert hits[0]["id"] == "r7"
    vec = svc.storage.vectors([svc.storage.get("r7", time.time())["seq"]])[1][0]
    np.testing.assert_allclose(vec, FakeEmbedder(dim=32).embed(["note 7 about ducks"])[0], atol=1e-6)


async def test_a_stale_fence_fails_only_its_own_request(svc):
    first = svc.claim(ClaimIn(key="job", holder="a"))
    # The claim changes hands: the first holder's fence is stale from now on.
    svc.release("job", first["lease_token"])
    svc.claim(ClaimIn(key="job", holder="b"))
    stale = {"key": "job", "token": first["fence"]}
    calls = [svc.ingest_async(MemoryIn(id=f"ok{i}", content=f"fine record {i}")) for i in range(6)]
    calls.insert(3, svc.ingest_async(MemoryIn(id="late", content="written by a lost lease", fence=stale)))
    out = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(out[3], StaleFence)
    assert [o["id"] for i, o in enumerate(out) if i != 3] == [f"ok{i}" for i in range(6)]
    assert svc.stats()["total_memories"] == 6
    with pytest.raises(NotFound):
        svc.get("late")


async def test_unchanged_content_is_not_embedded_again_and_bad_input_names_the_field(svc):
    inner = svc.embedder.inner
    await svc.ingest_async(MemoryIn(id="x", content="same words", tags=["a"]))
    runs = len(inner.batches)
    again = await svc.ingest_async(MemoryIn(id="x", content="same words", tags=["b"]))
    assert again["created"] is False and len(inner.batches) == runs
    with pytest.raises(InvalidInput) as err:
        await svc.ingest_async(MemoryIn(content="bad", tags=[""]))
    assert err.value.field.startswith("tags")


async def test_http_ingest_and_search_await_the_model_without_a_pool_thread(svc):
    app = create_app(svc)
    inner = svc.embedder.inner
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://m") as c:
        rs = await asyncio.gather(
            *(c.post("/ingest", json={"id": f"h{i}", "content": f"harbour log entry {i}"}) for i in range(16))
        )
        assert all(r.status_code == 200 for r in rs)
        assert len(inner.batches) < 16
        queries = [f"harbour log entry {i}" for i in range(8)]
        rs = await asyncio.gather(
            *(c.post("/search", json={"query": q, "mode": "semantic", "limit": 1}) for q in queries)
        )
        assert [r.json()["results"][0]["id"] for r in rs] == [f"h{i}" for i in range(8)]
        # The same answers as the in-process (thread) path, scores included.
        for q, r in zip(queries, rs, strict=True):
            direct = svc.search_uncached(SearchQuery(query=q, mode="semantic", limit=1))["results"][0]
            assert r.json()["results"][0]["score"] == direct["score"]
        bad = await c.post("/search", json={"query": "x" * (svc.settings.max_content_chars + 1)})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "query"
        bad = await c.post("/ingest", json={"content": "y", "metadata": []})
        assert bad.status_code == 422
