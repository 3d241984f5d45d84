"""Limits: each configured cap answers 413/422 with a JSON body naming the field, just over the cap (and not at
it), on single and batch ingest and PATCH; nothing is half-written."""

from __future__ import annotations

import httpx
import pytest

from memory_spine.api import create_app
from memory_spine.config import Settings
from memory_spine.service import MemoryService

LIMITS = {
    "max_body_bytes": 20_000,
    "max_content_chars": 100,
    "max_tags": 3,
    "max_tag_chars": 10,
    "max_metadata_bytes": 200,
    "max_metadata_depth": 3,
    "max_batch": 5,
    "max_limit": 50,
    "max_key_chars": 20,
    "max_id_chars": 16,
}


@pytest.fixture
def svc(tmp_path):
    s = MemoryService.open(
        Settings(data_dir=tmp_path / "d", embedder="fake", purge_seconds=3600, index_save_seconds=3600, **LIMITS)
    )
    yield s
    s.close()


@pytest.fixture
async def http(svc):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(svc)), base_url="http://ms") as c:
        yield c


def nested(depth: int) -> dict:
    out: dict = {"leaf": 1}
    for _ in range(depth - 1):
        out = {"n": out}
    return out


# (fields at the limit: accepted, fields just over it: refused, the field the error must name)
CASES = [
    ({"content": "x" * 100}, {"content": "x" * 101}, "content", 422),
    ({"tags": ["a", "b", "c"]}, {"tags": ["a", "b", "c", "d"]}, "tags", 422),
    ({"tags": ["t" * 10]}, {"tags": ["ok", "t" * 11]}, "tags[1]", 422),
    ({"metadata": {"v": "x" * 190}}, {"metadata": {"v": "x" * 200}}, "metadata", 422),
    ({"metadata": nested(3)}, {"metadata": nested(4)}, "metadata", 422),
    ({"metadata": {"l": [[1]]}}, {"metadata": {"l": [[[1]]]}}, "metadata", 422),
    ({"key": "k" * 20}, {"key": "k" * 21}, "key", 422),
    ({"content": "dedup:" + "k" * 14}, {"content": "dedup:" + "k" * 15 + " more"}, "key", 422),
    ({"id": "i" * 16}, {"id": "i" * 17}, "id", 422),
]


def body(fields: dict) -> dict:
    return {"content": "some text", **fields}


async def total(http) -> int:
    return (await http.get("/stats")).json()["total_memories"]


@pytest.mark.parametrize(
    ("ok", "over", "field", "status"), CASES, ids=[c[2] + "-" + str(i) for i, c in enumerate(CASES)]
)
async def test_each_record_limit(http, svc, ok, over, field, status):
    r = await http.post("/ingest", json=body(over))
    assert r.status_code == status, r.text
    assert r.json()["error"]["field"] == field and field.split("[")[0] in r.json()["error"]["message"]
    # the same record inside a batch: the field is named with its index, the valid records are not written
    r = await http.post("/ingest/batch", json={"records": [{"content": "valid one"}, body(over)]})
    assert r.status_code == status and r.json()["error"]["field"] == f"records[1].{field}"
    assert await total(http) == 0 and len(svc.index) == 0
    # just at the limit is fine
    r = await http.post("/ingest", json=body(ok))
    assert r.status_code == 200, r.text
    assert await total(http) == 1


@pytest.mark.parametrize(("ok", "over", "field", "status"), [c for c in CASES if c[2] not in ("id",)])
async def test_each_limit_on_patch_leaves_the_record_unchanged(http, ok, over, field, status):
    await http.post("/ingest", json={"id": "p", "content": "original", "tags": ["orig"]})
    before = (await http.get("/memories/p")).json()
    r = await http.patch("/memories/p", json=over)
    assert r.status_code == status and r.json()["error"]["field"] == field
    assert (await http.get("/memories/p")).json() == before


async def test_batch_size(http):
    records = [{"content": f"r{i}"} for i in range(5)]
    assert (await http.post("/ingest/batch", json={"records": records})).status_code == 200
    r = await http.post("/ingest/batch", json={"records": [*records, {"content": "sixth"}]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "records"
    assert await total(http) == 5


async def test_search_limit_and_query_length(http):
    await http.post("/ingest", json={"content": "hello"})
    assert (await http.post("/search", json={"query": "hello", "limit": 50})).status_code == 200
    for bad in (51, 101, 0, -1):
        r = await http.post("/search", json={"query": "hello", "limit": bad})
        assert r.status_code == 422 and r.json()["error"]["field"] == "limit", bad
    r = await http.post("/search", json={"query": "q" * 101})
    assert r.status_code == 422 and r.json()["error"]["field"] == "query"
    r = await http.get("/memories", params={"limit": 1001})
    assert r.status_code == 422 and r.json()["error"]["field"] == "limit"


async def test_body_size_413(http):
    big = {"content": "x" * 30_000}
    r = await http.post("/ingest", json=big)
    assert r.status_code == 413
    assert r.json()["error"] == {"type": "payload_too_large", "field": "body", "message": r.json()["error"]["message"]}
    assert "20000" in r.json()["error"]["message"]

    async def chunks():  # no Content-Length: the cap must hold while reading
        for _ in range(30):
            yield b"x" * 1000

    r = await http.post("/ingest", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["field"] == "body"
    assert await total(http) == 0


@pytest.mark.parametrize(
    ("content", "field"),
    [("", "content"), ("   ", "content"), ("nul\x00here", "content"), ("lone \ud800 surrogate", "content")],
)
async def test_unstorable_text_is_refused(http, content, field):
    import json

    raw = json.dumps({"content": content})  # ensure_ascii keeps a lone surrogate as a \\ud800 escape
    r = await http.post("/ingest", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["field"] == field
    raw = json.dumps({"content": "ok", "tags": [content or " "]})
    r = await http.post("/ingest", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "tags[0]"
    assert await total(http) == 0


def test_defaults_are_the_documented_ones():
    s = Settings()
    assert (s.max_body_bytes, s.max_content_chars, s.max_tags, s.max_tag_chars) == (16 * 1024 * 1024, 100_000, 64, 128)
    assert (s.max_metadata_bytes, s.max_metadata_depth, s.max_batch, s.max_limit) == (64 * 1024, 16, 1000, 100)
    assert (s.max_key_chars, s.max_id_chars) == (512, 256)


async def test_defaults_enforced(client):
    r = await client.post("/ingest/batch", json={"records": [{"content": f"r{i}"} for i in range(1001)]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "records"
    r = await client.post("/search", json={"query": "x", "limit": 101})
    assert r.status_code == 422 and r.json()["error"]["field"] == "limit"
    r = await client.post("/ingest", json={"content": "x", "tags": [f"t{i}" for i in range(65)]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "tags"
    assert (await client.get("/stats")).json()["total_memories"] == 0
