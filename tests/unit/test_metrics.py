"""GET /metrics: Prometheus text with request counters and latency by route template and status, plan counters,
the memories and index gauges and embedding time."""

from __future__ import annotations

import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from memory_spine.api import create_app
from memory_spine.config import Settings
from memory_spine.service import MemoryService


async def scrape(client) -> dict[str, list]:
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def value(samples: dict[str, list], name: str, **labels) -> float:
    return sum(v for lab, v in samples.get(name, []) if all(lab.get(k) == str(x) for k, x in labels.items()))


async def test_request_counters_and_latency_by_route_template(client):
    for i in range(3):
        assert (await client.post("/ingest", json={"id": f"m{i}", "content": f"note {i}"})).status_code == 200
    await client.get("/memories/m1")
    await client.get("/memories/m2")
    await client.get("/memories/missing")
    await client.post("/search", json={"query": "x", "limit": 1000})
    await client.get("/no/such/path")
    m = await scrape(client)
    assert value(m, "memory_spine_requests_total", method="POST", route="/ingest", status=200) == 3
    assert value(m, "memory_spine_requests_total", method="GET", route="/memories/{id}", status=200) == 2
    assert value(m, "memory_spine_requests_total", method="GET", route="/memories/{id}", status=404) == 1
    assert value(m, "memory_spine_requests_total", method="POST", route="/search", status=422) == 1
    assert value(m, "memory_spine_requests_total", route="unmatched", status=404) == 1
    routes = {lab["route"] for lab, _ in m["memory_spine_requests_total"]}
    assert not any("m1" in r or "missing" in r or "no/such" in r for r in routes), "one series per route, not per id"
    assert value(m, "memory_spine_request_seconds_count", method="POST", route="/ingest") == 3
    assert value(m, "memory_spine_request_seconds_bucket", method="POST", route="/ingest", le="+Inf") == 3
    assert value(m, "memory_spine_request_seconds_sum", method="POST", route="/ingest") > 0


async def test_plan_counters(client):
    await client.post("/ingest/batch", json={"records": [{"content": f"w{i} word", "tags": ["t"]} for i in range(5)]})
    await client.post("/ingest", json={"content": "checkpoint:wf:step"})
    searches = [
        ({"query": "word", "mode": "semantic"}, "exact"),  # a store under the index's exact_below
        ({"query": "word", "tags": ["t"], "mode": "semantic"}, "exact"),
        # The same search again, nothing written since: answered from the result cache.
        ({"query": "word", "tags": ["t"], "mode": "semantic"}, "result_cache"),
        ({"query": "word", "mode": "keyword"}, "keyword"),
        ({"query": "word", "mode": "hybrid"}, "hybrid"),
        ({"query": "checkpoint:wf"}, "exact_key"),
    ]
    for body, _ in searches:
        assert (await client.post("/search", json=body)).status_code == 200
    m = await scrape(client)
    for plan in {p for _, p in searches}:
        assert value(m, "memory_spine_search_plans_total", plan=plan) == sum(p == plan for _, p in searches), plan


async def test_memories_and_index_gauges_follow_writes_and_expiry(client, service):
    await client.post("/ingest/batch", json={"records": [{"id": f"m{i}", "content": f"n {i}"} for i in range(4)]})
    await client.post("/ingest", json={"content": "already expired", "expires_at": time.time() - 1})
    m = await scrape(client)
    assert value(m, "memory_spine_memories") == 4
    assert value(m, "memory_spine_index_elements") == 5  # the expired vector stays until the purge
    await client.delete("/memories/m0")
    service.purge_expired()
    m = await scrape(client)
    assert value(m, "memory_spine_memories") == 3 and value(m, "memory_spine_index_elements") == 3


async def test_embed_time_is_observed(client):
    await client.post("/ingest", json={"content": "one"})
    await client.post("/ingest/batch", json={"records": [{"content": "two"}, {"content": "three"}]})
    await client.post("/search", json={"query": "four"})
    await client.post("/search", json={"query": "four"})  # cached query vector: no second embedding
    m = await scrape(client)
    assert value(m, "memory_spine_embed_seconds_count") == 3
    assert value(m, "memory_spine_embed_seconds_sum") > 0


async def test_two_apps_in_one_process_keep_their_own_numbers(tmp_path, client):
    await client.post("/ingest", json={"content": "first app"})
    settings = Settings(data_dir=tmp_path / "other", embedder="fake", purge_seconds=3600, index_save_seconds=3600)
    with MemoryService.open(settings) as other:
        transport = httpx.ASGITransport(app=create_app(other))
        async with httpx.AsyncClient(transport=transport, base_url="http://ms") as c2:
            m = await scrape(c2)
    assert value(m, "memory_spine_requests_total", route="/ingest") == 0
    assert value(m, "memory_spine_memories") == 0


async def test_unauthorized_requests_are_counted(tmp_path):
    settings = Settings(
        data_dir=tmp_path / "d", embedder="fake", token="tok", purge_seconds=3600, index_save_seconds=3600
    )
    with MemoryService.open(settings) as svc:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(svc)), base_url="http://ms") as c:
            await c.get("/stats")
            r = await c.get("/metrics", headers={"Authorization": "Bearer tok"})
    m = {
        s.name: s for f in text_string_to_metric_families(r.text) for s in f.samples if s.labels.get("status") == "401"
    }
    assert m["memory_spine_requests_total"].value == 1
