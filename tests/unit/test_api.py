"""The HTTP contract in-process: shapes, exact-key answers, and bad input as 4xx naming the field."""

from __future__ import annotations

import json

import pytest

from memory_spine.config import Settings
from memory_spine.errors import DataDirLocked, StorageError
from memory_spine.service import MemoryService


async def test_ingest_search_and_result_shape(client):
    r = await client.post(
        "/ingest",
        json={"content": "the cat sat on the mat", "tags": ["pets"], "metadata": {"n": 1}, "importance": "high"},
    )
    assert r.status_code == 200
    body = r.json()
    assert body["created"] is True and body["key"] is None
    r = await client.post("/search", json={"query": "cat on a mat"})
    hit = r.json()["results"][0]
    assert set(hit) >= {"id", "content", "tags", "metadata", "importance", "score", "rank_score", "created_at"}
    assert hit["id"] == body["id"] and hit["importance"] == "high" and hit["metadata"] == {"n": 1}
    assert hit["created_at"].endswith("Z")


async def test_trace_ingest_without_metadata_is_valid(client):
    r = await client.post("/ingest", json={"content": json.dumps({"trace_id": "t"}), "tags": ["trace", "audit"]})
    assert r.status_code == 200
    got = (await client.get(f"/memories/{r.json()['id']}")).json()
    assert got["metadata"] == {} and got["importance"] == "medium"


async def test_checkpoint_query_answers_latest_of_exactly_that_workflow(client):
    for wf, step in [("wf-1", "fetch"), ("wf-1", "review"), ("wf-12", "post")]:
        await client.post("/ingest", json={"content": f"checkpoint:{wf}:{step}", "metadata": {"step": step}})
    await client.post("/ingest", json={"content": "all about checkpoint:wf-1 checkpoints and workflows"})
    for mode in ("semantic", "keyword", "hybrid"):
        r = await client.post("/search", json={"query": "checkpoint:wf-1", "limit": 1, "mode": mode})
        res = r.json()["results"]
        assert [h["metadata"]["step"] for h in res] == ["review"], mode
        assert res[0]["score"] is None and res[0]["rank_score"] == 1.0
    r = await client.post("/search", json={"query": "checkpoint:wf-1:fetch", "limit": 5})
    assert [h["metadata"]["step"] for h in r.json()["results"]] == ["fetch"]


async def test_dedup_query_is_exact_or_empty(client):
    await client.post("/ingest", json={"content": "dedup:abcd1234 action=notify", "metadata": {"result": 42}})
    await client.post("/ingest", json={"content": "dedup:abcd12345 action=other"})
    r = await client.post("/search", json={"query": "dedup:abcd1234", "limit": 1})
    assert [h["metadata"]["result"] for h in r.json()["results"]] == [42]
    r = await client.post("/search", json={"query": "dedup:ffff0000", "limit": 1})
    assert r.json() == {"results": []}


async def test_explicit_keys_and_prefix_listing(client):
    for i in range(3):
        await client.post("/ingest", json={"content": f"trace {i}", "key": f"trace:t{i}"})
    assert (await client.get("/keys/trace:t1")).json()["content"] == "trace 1"
    listed = (await client.get("/keys", params={"prefix": "trace:"})).json()["results"]
    assert [m["key"] for m in listed] == ["trace:t2", "trace:t1", "trace:t0"]
    r = await client.get("/keys/trace:nope")
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "content"),
        ({"content": ""}, "content"),
        ({"content": 5}, "content"),
        ({"content": "x", "tags": "a"}, "tags"),
        ({"content": "x", "tags": [""]}, "tags[0]"),
        ({"content": "x", "metadata": [1]}, "metadata"),
        ({"content": "x", "importance": "urgent"}, "importance"),
        ({"content": "x", "unknown": 1}, "unknown"),
        ({"content": "a\u0000b"}, "content"),
        ({"content": "x", "ttl_seconds": -1}, "ttl_seconds"),
    ],
)
async def test_bad_ingest_is_a_4xx_naming_the_field(client, body, field):
    r = await client.post("/ingest", json=body)
    assert 400 <= r.status_code < 500, r.text
    err = r.json()["error"]
    assert err["field"] == field, r.json()
    assert (await client.get("/stats")).json()["total_memories"] == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"query": "x", "limit": 0}, "limit"),
        ({"query": "x", "limit": 10**9}, "limit"),
        ({"limit": 3}, "query"),
        ({"query": "x", "mode": "fuzzy"}, "mode"),
        ({"query": "   "}, "query"),
    ],
)
async def test_bad_search_is_a_4xx_naming_the_field(client, body, field):
    r = await client.post("/search", json=body)
    assert r.status_code == 422 and r.json()["error"]["field"] == field


async def test_invalid_json_and_lone_surrogate(client):
    r = await client.post("/ingest", content=b'{"content": ', headers={"content-type": "application/json"})
    assert r.status_code == 422 and "JSON" in r.json()["error"]["message"]
    r = await client.post("/ingest", content=b'{"content": "\\ud800"}', headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "content"


async def test_health_and_stats(client):
    assert (await client.get("/health")).json()["status"] == "ok"
    await client.post("/ingest", json={"content": "a", "tags": ["x", "y"]})
    stats = (await client.get("/stats")).json()
    assert stats["total_memories"] == 1 and stats["tags"] == {"x": 1, "y": 1}
    assert stats["embedder"]["dim"] == 384 and stats["index"]["elements"] == 1
    assert stats["database_bytes"] > 0 and stats["uptime_seconds"] >= 0


async def test_unknown_route_is_json_404(client):
    r = await client.get("/nope")
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"


async def test_claims_over_http(client):
    r = await client.post("/claims", json={"key": "dedup:x", "holder": "w1", "lease_seconds": 30})
    assert r.status_code == 201
    token = {"X-Lease-Token": r.json()["lease_token"]}
    r = await client.post("/claims", json={"key": "dedup:x", "holder": "w2"})
    assert r.status_code == 409 and r.json()["claim"]["holder"] == "w1"
    assert (await client.get("/claims/dedup:x")).json()["holder"] == "w1"
    assert (await client.delete("/claims/dedup:x", params={"holder": "w1"})).status_code == 403
    assert (await client.delete("/claims/dedup:x", headers={"X-Lease-Token": "nope"})).status_code == 409
    assert (await client.delete("/claims/dedup:x", headers=token)).json() == {"released": True}
    assert (await client.get("/claims/dedup:x")).status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/claims", {"key": "k", "lease_token": "a\x00b"}, "lease_token"),
        ("POST", "/claims", {"key": "k", "lease_token": "x" * 300}, "lease_token"),
        ("POST", "/ingest", {"content": "c", "fence": {"key": "k\x00", "token": 1}}, "fence.key"),
        ("POST", "/ingest", {"content": "c", "fence": {"key": "k", "token": 2**63}}, "fence.token"),
        ("POST", "/ingest", {"content": "c", "fence": {"key": "k", "token": -1}}, "fence.token"),
        ("POST", "/ingest", {"content": "c", "fence": {"key": "k"}}, "fence.token"),
        ("POST", "/ingest", {"content": "c", "fence": {"key": "k", "token": 1, "x": 1}}, "fence.x"),
    ],
)
async def test_bad_lease_tokens_and_fences_are_422_naming_the_field(client, method, path, body, field):
    r = await client.request(method, path, json=body)
    assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text


async def test_a_bad_lease_token_header_is_refused_not_a_500(client):
    await client.post("/claims", json={"key": "hdr"})
    r = await client.delete("/claims/hdr", headers={"X-Lease-Token": "\x7f" * 300})
    assert r.status_code in (409, 422), r.text


def test_second_open_of_a_data_dir_is_refused(service, settings):
    with pytest.raises(DataDirLocked):
        MemoryService.open(settings)


def test_a_data_dir_remembers_its_model(tmp_path):
    from memory_spine.embedders import FakeEmbedder

    s = Settings(data_dir=tmp_path, embedder="fake")
    MemoryService.open(s).close()

    other = FakeEmbedder()
    other.model = "another-model"
    with pytest.raises(StorageError, match="another-model"):
        MemoryService.open(s, embedder=other)
