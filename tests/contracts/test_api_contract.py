"""The HTTP API's contract, run on every backend (`sqlite`, `postgres`): same requests, same answers.

Records (ingest, batch, get, PATCH, DELETE, list), exact keys, claims, the `where` language and the other
filters, expiry, search in every mode with `explain`, and the planner's promise: exactly `limit` hits whenever
at least `limit` live records match, at every selectivity (also when the matches sit far from the query).
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from memory_spine.models import MemoryRestore

pytestmark = pytest.mark.timeout(120)


async def ingest(client, **body) -> dict:
    r = await client.post("/ingest", json=body)
    assert r.status_code == 200, r.text
    return r.json()


async def search(client, **body) -> dict:
    r = await client.post("/search", json=body)
    assert r.status_code == 200, r.text
    return r.json()


# -- records -----------------------------------------------------------------------------------------------------
async def test_records_round_trip(client, backend):
    first = await ingest(client, id="r1", content="the deploy failed", tags=["ops", "prod"], metadata={"n": 1})
    assert first == {"id": "r1", "key": None, "created": True}
    got = (await client.get("/memories/r1")).json()
    assert got["content"] == "the deploy failed" and got["tags"] == ["ops", "prod"] and got["metadata"] == {"n": 1}
    assert got["created_at"].endswith("Z") and len(got["created_at"]) == 27  # whole microseconds
    again = await ingest(client, id="r1", content="the deploy failed twice", importance="high")
    assert again["created"] is False
    replaced = (await client.get("/memories/r1")).json()
    assert replaced["created_at"] == got["created_at"] and replaced["tags"] == [] and replaced["importance"] == "high"

    patched = (await client.patch("/memories/r1", json={"metadata": {"owner": "ann"}, "tags": ["x"]})).json()
    assert patched["metadata"] == {"owner": "ann"} and patched["tags"] == ["x"]
    patched = (await client.patch("/memories/r1", json={"metadata": {"owner": None, "k": [1, 2]}})).json()
    assert patched["metadata"] == {"k": [1, 2]}
    patched = (await client.patch("/memories/r1", json={"content": "rollback completed"})).json()
    hit = (await search(client, query="rollback completed", limit=1, mode="semantic"))["results"][0]
    assert hit["id"] == "r1" and hit["score"] > 0.99

    assert (await client.delete("/memories/r1")).json() == {"deleted": 1}
    assert (await client.get("/memories/r1")).status_code == 404
    assert (await client.delete("/memories/r1")).status_code == 404
    assert (await client.get("/health")).json()["database"] == {
        "backend": "postgresql" if backend == "postgres" else "sqlite",
        "status": "ok",
    }


async def test_batch_is_all_or_nothing_and_lists_page(client):
    bad = await client.post("/ingest/batch", json={"records": [{"content": "a"}, {"content": " "}]})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "records[1].content"
    assert (await client.get("/stats")).json()["total_memories"] == 0
    batch = {"records": [{"id": f"b{i}", "content": f"item {i}"} for i in range(7)]}
    r = await client.post("/ingest/batch", json=batch)
    assert r.json()["created"] == 7
    seen, cursor = [], None
    while True:
        page = (await client.get("/memories", params={"limit": 3, **({"cursor": cursor} if cursor else {})})).json()
        seen += [m["id"] for m in page["results"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"b{i}" for i in reversed(range(7))]
    oldest = (await client.get("/memories", params={"limit": 2, "order": "oldest"})).json()["results"]
    assert [m["id"] for m in oldest] == ["b0", "b1"]
    dry = await client.request("DELETE", "/memories", json={"where": {"$or": [{"x": 1}, {"y": 2}]}, "dry_run": True})
    assert dry.json() == {"would_delete": 0}
    gone = await client.request("DELETE", "/memories", json={"key_prefix": "nothing:"})
    assert gone.json() == {"deleted": 0}


# -- exact keys ----------------------------------------------------------------------------------------------------
async def test_exact_keys(client):
    await ingest(client, content="checkpoint:wf-1:fetch", metadata={"step": "fetch"})
    await ingest(client, content="checkpoint:wf-1:review", metadata={"step": "review"})
    await ingest(client, content="checkpoint:wf-12:fetch")
    await ingest(client, content="dedup:abc posted the comment")
    await ingest(client, content="prose that mentions checkpoint:wf-1 in passing")
    for mode in ("semantic", "keyword", "hybrid"):
        res = await search(client, query="checkpoint:wf-1", limit=5, mode=mode, explain=True)
        assert [h["content"] for h in res["results"]] == ["checkpoint:wf-1:review", "checkpoint:wf-1:fetch"]
        assert res["plan"]["plan"] == "exact_key"
        assert all(h["score"] is None and h["rank_score"] == 1.0 for h in res["results"])
    assert [h["key"] for h in (await search(client, query="dedup:abc"))["results"]] == ["dedup:abc"]
    assert (await search(client, query="dedup:ab"))["results"] == []
    assert (await client.get("/keys/checkpoint:wf-1:fetch")).json()["metadata"] == {"step": "fetch"}
    assert (await client.get("/keys/checkpoint:nope")).status_code == 404
    listed = (await client.get("/keys", params={"prefix": "checkpoint:wf-1:"})).json()["results"]
    assert [m["key"] for m in listed] == ["checkpoint:wf-1:review", "checkpoint:wf-1:fetch"]
    filtered = await search(client, query="checkpoint:wf-1", where={"step": "fetch"})
    assert [h["content"] for h in filtered["results"]] == ["checkpoint:wf-1:fetch"]


# -- claims ----------------------------------------------------------------------------------------------------------
async def test_claims(client):
    won = await client.post("/claims", json={"key": "dedup:k", "holder": "w1", "lease_seconds": 30})
    assert won.status_code == 201 and won.json()["holder"] == "w1"
    token, fence = won.json()["lease_token"], won.json()["fence"]
    assert isinstance(fence, int) and len(token) >= 24
    lost = await client.post("/claims", json={"key": "dedup:k", "holder": "w2"})
    assert lost.status_code == 409 and lost.json()["claim"]["holder"] == "w1"
    assert "lease_token" not in lost.json()["claim"]
    # The holder's name is no credential: re-claiming under it is a conflict, not a renewal.
    assert (await client.post("/claims", json={"key": "dedup:k", "holder": "w1"})).status_code == 409
    renewed = await client.post("/claims", json={"key": "dedup:k", "lease_token": token, "lease_seconds": 60})
    assert renewed.status_code == 201 and renewed.json()["acquired_at"] == won.json()["acquired_at"]
    assert renewed.json()["expires_at"] > won.json()["expires_at"] and renewed.json()["fence"] == fence
    assert "lease_token" not in renewed.json()
    wrong = await client.post("/claims", json={"key": "dedup:k", "lease_token": "guess"})
    assert wrong.status_code == 409 and wrong.json()["error"]["type"] == "lease_lost"
    got = (await client.get("/claims/dedup:k")).json()
    assert got["holder"] == "w1" and got["fence"] == fence and "lease_token" not in got
    nothing = await client.delete("/claims/dedup:k", params={"holder": "w1"})  # the old way: no token
    assert nothing.status_code == 403 and nothing.json()["error"]["field"] == "lease_token"
    other = await client.delete("/claims/dedup:k", headers={"X-Lease-Token": "guess"})
    assert other.status_code == 409 and other.json()["error"]["type"] == "lease_lost"
    assert (await client.delete("/claims/dedup:k", headers={"X-Lease-Token": token})).json() == {"released": True}
    assert (await client.get("/claims/dedup:k")).status_code == 404
    assert (await client.delete("/claims/dedup:k", params={"lease_token": token})).status_code == 404

    short = await client.post("/claims", json={"key": "lease", "holder": "a", "lease_seconds": 0.3})
    assert short.status_code == 201
    await asyncio.sleep(0.45)  # the lease runs out (PostgreSQL times it by its own clock)
    took = await client.post("/claims", json={"key": "lease", "holder": "b"})
    assert took.status_code == 201 and took.json()["fence"] > short.json()["fence"]
    late = await client.post("/claims", json={"key": "lease", "lease_token": short.json()["lease_token"]})
    assert late.status_code == 409 and late.json()["error"]["type"] == "lease_lost"


async def test_fenced_writes(client):
    """A write under a claim carries its fence; once another holder took the key over, the old fence is refused
    (409 stale_fence) and nothing of the write is stored, for single, batch and PATCH writes."""
    first = (await client.post("/claims", json={"key": "workflow:f", "holder": "a", "lease_seconds": 0.3})).json()
    old = {"key": "workflow:f", "token": first["fence"]}
    ok = await client.post("/ingest", json={"content": "checkpoint:f:one", "id": "f1", "fence": old})
    assert ok.status_code == 200, ok.text
    await asyncio.sleep(0.45)
    second = (await client.post("/claims", json={"key": "workflow:f", "holder": "b"})).json()
    assert second["fence"] > first["fence"]
    stale = await client.post("/ingest", json={"content": "checkpoint:f:two", "id": "f2", "fence": old})
    assert stale.status_code == 409 and stale.json()["error"]["type"] == "stale_fence"
    assert stale.json()["fence"] == {"key": "workflow:f", "token": first["fence"], "current": second["fence"]}
    batch = await client.post(
        "/ingest/batch",
        json={"records": [{"content": "f3", "id": "f3"}, {"content": "f4", "id": "f4", "fence": old}]},
    )
    assert batch.status_code == 409 and batch.json()["error"]["type"] == "stale_fence"
    patch = await client.patch("/memories/f1", json={"metadata": {"x": 1}, "fence": old})
    assert patch.status_code == 409
    for gone in ("f2", "f3", "f4"):
        assert (await client.get(f"/memories/{gone}")).status_code == 404
    assert (await client.get("/memories/f1")).json()["metadata"] == {}
    new = {"key": "workflow:f", "token": second["fence"]}
    assert (await client.post("/ingest", json={"content": "f5", "id": "f5", "fence": new})).status_code == 200
    assert (await client.patch("/memories/f1", json={"metadata": {"x": 1}, "fence": new})).status_code == 200
    await client.delete("/claims/workflow:f", headers={"X-Lease-Token": second["lease_token"]})
    released = await client.post("/ingest", json={"content": "f6", "id": "f6", "fence": new})
    assert released.status_code == 409 and released.json()["fence"]["current"] is None
    bad = await client.post("/ingest", json={"content": "f7", "fence": {"key": "workflow:f", "token": "x"}})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "fence.token"


async def test_racing_claims_have_one_winner(client):
    answers = await asyncio.gather(
        *(client.post("/claims", json={"key": "dedup:race", "holder": f"w{i}"}) for i in range(8))
    )
    assert sorted(r.status_code for r in answers) == [201] + [409] * 7


# -- filters ---------------------------------------------------------------------------------------------------------
FILTER_DOCS = {
    "n3": {"n": 3, "s": "abc", "team": {"name": "core"}},
    "n10": {"n": 10, "s": "b"},
    "nstr": {"n": "7", "s": 5},
    "ntrue": {"n": True, "flag": True},
    "none": {"n": None},
    "missing": {},
    "one": {"n": 1, "f": 1.5},
    "arr": {"n": [3], "s": ["abc"]},
}

FILTER_CASES = [
    ({"where": {"n": 3}}, {"n3"}),
    ({"where": {"n": {"$gt": 2}}}, {"n3", "n10"}),
    ({"where": {"n": {"$gte": 1, "$lt": 10}}}, {"n3", "one"}),
    ({"where": {"s": {"$gt": "abc"}}}, {"n10"}),
    ({"where": {"s": {"$lte": "abc"}}}, {"n3"}),
    ({"where": {"n": {"$ne": 3}}}, set(FILTER_DOCS) - {"n3"}),
    ({"where": {"n": {"$nin": [3, 10]}}}, set(FILTER_DOCS) - {"n3", "n10"}),
    ({"where": {"n": {"$nin": [3, None]}}}, {"none", "missing"}),
    ({"where": {"n": {"$in": [10, "7", None]}}}, {"n10", "nstr"}),
    ({"where": {"n": None}}, {"none", "missing"}),
    ({"where": {"n": {"$ne": None}}}, set(FILTER_DOCS) - {"none", "missing"}),
    ({"where": {"n": True}}, {"ntrue", "one"}),
    ({"where": {"n": 1}}, {"ntrue", "one"}),
    ({"where": {"f": 1.5}}, {"one"}),
    ({"where": {"n": "7"}}, {"nstr"}),
    ({"where": {"n": 7}}, set()),
    ({"where": {"team.name": "core"}}, {"n3"}),
    ({"where": {"s": "abc"}}, {"n3"}),
    ({"where": {"$or": [{"n": 10}, {"flag": True}]}}, {"n10", "ntrue"}),
    ({"where": {"$and": [{"n": {"$gt": 0}}, {"s": {"$gt": "a"}}]}}, {"n3", "n10"}),
    ({"tags": ["even"]}, {"n3", "nstr", "none", "one"}),
    ({"tags_all": ["even", "low"]}, {"n3"}),
    ({"tags_none": ["even"]}, {"n10", "ntrue", "missing", "arr"}),
    ({"importance": ["high", "critical"]}, {"n10"}),
    ({"key_prefix": "k:n"}, {"n3", "n10", "nstr", "ntrue", "none"}),
    ({"key": "k:one"}, {"one"}),
]


async def test_filters_mean_the_same_everywhere(client):
    for i, (id_, meta) in enumerate(FILTER_DOCS.items()):
        tags = (["even"] if i % 2 == 0 else []) + (["low"] if i == 0 else [])
        await ingest(
            client,
            id=id_,
            content=f"filter document {id_}",
            metadata=meta,
            tags=tags,
            key=f"k:{id_}",
            importance="high" if id_ == "n10" else "low",
        )
    for flt, expected in FILTER_CASES:
        res = await search(client, query="filter document", limit=100, mode="semantic", **flt)
        assert {h["id"] for h in res["results"]} == expected, flt
        dry = await client.request("DELETE", "/memories", json={**flt, "dry_run": True})
        assert dry.json() == {"would_delete": len(expected)}, flt
    created = (await client.get("/memories/n10")).json()["created_at"]
    after = await search(client, query="filter document", limit=100, created_after=created)
    assert {h["id"] for h in after["results"]} == set(list(FILTER_DOCS)[2:])
    before = await search(client, query="filter document", limit=100, created_before=created)
    assert {h["id"] for h in before["results"]} == {"n3"}
    bad = await client.post("/search", json={"query": "x", "where": {"n": {"$regex": "a"}}})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "where.n.$regex"


# -- expiry ----------------------------------------------------------------------------------------------------------
async def test_expiry(client, service, monkeypatch):
    await ingest(client, id="short", content="ephemeral note", ttl_seconds=60, tags=["tmp"])
    await ingest(client, id="long", content="durable note", tags=["tmp"])
    real = service.clock
    monkeypatch.setattr(service, "clock", lambda: real() + 61)
    assert (await client.get("/memories/short")).status_code == 404
    for mode in ("semantic", "keyword", "hybrid"):
        res = await search(client, query="ephemeral note", limit=10, mode=mode)
        assert "short" not in {h["id"] for h in res["results"]}, mode
    assert (await client.get("/stats")).json()["total_memories"] == 1
    assert service.purge_expired() == 1
    assert (await ingest(client, id="short", content="back again"))["created"] is True


# -- search: modes, explain, exactly `limit` -----------------------------------------------------------------------
async def test_modes_and_explain(client):
    records = [{"id": f"d{i}", "content": f"routine maintenance log entry number {i}"} for i in range(40)]
    records.append({"id": "code", "content": "error E4471 raised by the billing importer"})
    records.append({"id": "code2", "content": "error E4417 raised by the billing exporter"})
    assert (await client.post("/ingest/batch", json={"records": records})).status_code == 200
    kw = await search(client, query="E4471", mode="keyword", limit=3, explain=True)
    assert kw["results"][0]["id"] == "code" and kw["plan"]["plan"] == "keyword"
    assert 0 < kw["results"][0]["rank_score"] < 1 and kw["results"][0]["score"] is None
    hy = await search(client, query="which importer raised E4471", mode="hybrid", limit=3, explain=True)
    assert hy["results"][0]["id"] == "code"
    assert hy["plan"]["plan"] == "hybrid" and hy["plan"]["semantic"]["plan"] == "exact" and hy["plan"]["keyword_hits"]
    sem = await search(client, query="routine maintenance log entry number 7", mode="semantic", limit=5, explain=True)
    # A store this small is under the crossover (exact_below) on both backends: every vector scored exactly.
    assert sem["results"][0]["id"] == "d7" and sem["plan"]["plan"] == "exact" and len(sem["results"]) == 5
    assert sem["results"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    cut = await search(client, query="routine maintenance", mode="semantic", limit=10, min_score=0.99)
    assert cut["results"] == []


N = 2000
SELECTIVITY = {"p01": 2, "p1": 20, "p10": 200, "all": N}


def _tags(i: int) -> list[str]:
    tags = ["all"]
    for tag, count in SELECTIVITY.items():
        if tag != "all" and i % (N // count) == 0:
            tags.append(tag)
    return tags


async def test_exactly_limit_at_every_selectivity(client, service):
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((N, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    query = "probe words for the planner"
    q = service.embed_query(query)
    far = 150  # records pointing away from the query: a graph walk from it meets them last
    vectors[-far:] = -q + 0.6 * vectors[-far:]
    vectors[-far:] /= np.linalg.norm(vectors[-far:], axis=1, keepdims=True)
    items, tags = [], []
    for i in range(N):
        t = _tags(i) + (["far"] if i >= N - far else [])
        tags.append(set(t))
        items.append(MemoryRestore(id=f"c{i}", content=f"corpus record {i}", tags=t, metadata={"i": i}))
    for start in range(0, N, 500):
        service.restore(items[start : start + 500], list(vectors[start : start + 500]))
    scores = vectors @ q
    for tag, where in [*((t, None) for t in [*SELECTIVITY, "far"]), ("i<5", {"i": {"$lt": 5}})]:
        mask = np.array([tag in t for t in tags]) if where is None else np.arange(N) < 5
        for limit in (1, 10, 25):
            body = {"query": query, "limit": limit, "mode": "semantic", "explain": True}
            body.update({"where": where} if where else {"tags": [tag]})
            res = await search(client, **body)
            want = min(limit, int(mask.sum()))
            assert len(res["results"]) == want, (tag, limit, res["plan"])
            idx = np.flatnonzero(mask)
            best = {f"c{i}" for i in idx[np.argsort(-scores[idx])[:want]]}
            got = {h["id"] for h in res["results"]}
            assert len(got & best) >= 0.9 * want, (tag, limit, res["plan"])
            assert res["plan"]["plan"] in {"exact", "hnsw_filter", "hnsw_filter+exact"}
            if int(mask.sum()) <= 50:
                assert res["plan"]["plan"] == "exact" and got == best
    for mode in ("keyword", "hybrid"):
        res = await search(client, query="corpus record", limit=25, mode=mode, tags=["p1"])
        assert len(res["results"]) == 20, mode


async def test_key_groups(client, service):
    for wf, steps in (("wf-a", ["fetch", "review"]), ("wf-b", ["fetch"]), ("wf-a2", ["post"])):
        for step in steps:
            await ingest(client, content=f"checkpoint:{wf}:{step}")
    await ingest(client, content="dedup:zzz not a checkpoint")
    groups = service.key_groups("checkpoint:", limit=2)
    assert groups["total"] == 3
    assert [r["key"] for r in groups["results"]] == ["checkpoint:wf-a2:post", "checkpoint:wf-b:fetch"]
    rest = service.key_groups("checkpoint:", limit=2, offset=2)["results"]
    assert [r["key"] for r in rest] == ["checkpoint:wf-a:review"]


def test_concurrent_batches_over_the_same_ids(service):
    """Writers upserting the same ids in opposite orders at once: every write lands, none deadlocks."""
    from concurrent.futures import ThreadPoolExecutor

    from memory_spine.models import MemoryIn

    ids = [f"x{i}" for i in range(40)]

    def write(k: int) -> None:
        for round_ in range(4):
            order = ids if (k + round_) % 2 == 0 else ids[::-1]
            service.ingest_batch([MemoryIn(id=i, content=f"writer {k} round {round_} value {i}") for i in order])

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, range(4)))
    assert service.stats()["total_memories"] == 40
    assert all(service.get(i)["content"].endswith(f"value {i}") for i in ids)


async def test_keyword_matches_stems_and_ranks_the_exact_spelling_first(client):
    """The stemmed index beside the exact one: another form of a word matches, the query's own spelling ranks
    first, and a changed or deleted record leaves the stemmed index with it."""
    records = [
        {"id": "stem", "content": "Ann hiked the ridge trail with her sister"},
        {"id": "exact", "content": "Ann went hiking on the coast"},
        {"id": "other", "content": "Ann painted the kitchen blue"},
    ]
    assert (await client.post("/ingest/batch", json={"records": records})).status_code == 200
    hits = [h["id"] for h in (await search(client, query="hiking", mode="keyword", limit=5))["results"]]
    assert hits == ["exact", "stem"]
    # A stop word of the English stemmer's list that is not one of ours still matches exactly.
    assert (await ingest(client, id="same", content="the same again"))["created"]
    assert [h["id"] for h in (await search(client, query="same", mode="keyword", limit=5))["results"]] == ["same"]
    assert (await client.patch("/memories/stem", json={"content": "Ann swims across the lake"})).status_code == 200
    hits = [h["id"] for h in (await search(client, query="hikes", mode="keyword", limit=5))["results"]]
    assert hits == ["exact"]
    assert [h["id"] for h in (await search(client, query="swimming", mode="keyword", limit=5))["results"]] == ["stem"]
    assert (await client.delete("/memories/stem")).status_code == 200
    assert (await search(client, query="swimming", mode="keyword", limit=5))["results"] == []
