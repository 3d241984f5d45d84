"""Filters under attack, on both backends: the empty-value rule, the size limits, cursors, key-prefix bounds, NUL in
ids, and the query budget. Each bad input is a 422 naming the field (a 503 `query_timeout` for the budget), and
none changes what is stored.
"""

from __future__ import annotations

import json
import time

import pytest

from .conftest import DIM

LIMITS = {"depth": 8, "terms": 256, "values": 1024}  # the defaults in config.Settings


async def _seed(client) -> None:
    records = [
        {"id": f"r{i}", "content": f"note {i}", "tags": ["t", f"t{i}"], "metadata": {"n": i}, "key": f"k:{i}"}
        for i in range(6)
    ]
    records.append({"id": "hi", "content": "high key", "key": "z\U0010ffff\U0010ffff"})
    records.append({"id": "jamo", "content": "jamo key", "key": "\ud7ffx"})
    records.append({"id": "pua", "content": "private use key", "key": "\ue000"})
    r = await client.post("/ingest/batch", json={"records": records})
    assert r.status_code == 200, r.text


async def _ids(client) -> list[str]:
    r = await client.get("/memories", params={"limit": 1000})
    return sorted(m["id"] for m in r.json()["results"])


def _nest(depth: int) -> dict:
    node: dict = {"n": 1}
    for _ in range(depth):
        node = {"$and": [node]}
    return node


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "filter"),
        ({"dry_run": True}, "filter"),
        ({"key_prefix": ""}, "key_prefix"),
        ({"key": ""}, "key"),
        ({"tags": []}, "tags"),
        ({"tags_all": []}, "tags_all"),
        ({"tags_none": []}, "tags_none"),
        ({"tags_none": [""]}, "tags_none[0]"),
        ({"tags": [" "]}, "tags[0]"),
        ({"where": {}}, "where"),
        ({"importance": []}, "importance"),
        ({"tags": [], "where": {}, "dry_run": False}, "tags"),
    ],
)
async def test_a_delete_without_a_real_condition_is_refused(client, body, field):
    await _seed(client)
    before = await _ids(client)
    r = await client.request("DELETE", "/memories", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field
    assert await _ids(client) == before


async def test_empty_lists_and_objects_are_no_condition_in_reads(client):
    await _seed(client)
    everything = (await client.post("/search", json={"query": "note", "limit": 100})).json()["results"]
    for empty in ({"tags": []}, {"tags_all": []}, {"tags_none": []}, {"where": {}}, {"importance": []}):
        got = (await client.post("/search", json={"query": "note", "limit": 100, **empty})).json()["results"]
        assert [h["id"] for h in got] == [h["id"] for h in everything], empty
    for empty in ({"key": ""}, {"key_prefix": ""}):
        r = await client.post("/search", json={"query": "note", **empty})
        assert r.status_code == 422 and r.json()["error"]["field"] == next(iter(empty))


@pytest.mark.parametrize(
    ("where", "field"),
    [
        ({"a\x00b": 1}, "where"),
        ({"n": "x\x00"}, "where.n"),
        (_nest(LIMITS["depth"] + 1), "where" + ".$and[0]" * LIMITS["depth"] + ".$and"),
        ({"$or": [{"n": i} for i in range(LIMITS["terms"] + 5)]}, f"where.$or[{LIMITS['terms'] - 1}].n"),
        ({f"f{i}": i for i in range(LIMITS["terms"] + 5)}, f"where.f{LIMITS['terms']}"),
        ({"n": {"$in": list(range(LIMITS["values"] + 1))}}, "where.n.$in"),
        ({"n": {"$gt": float("inf")}}, "where.n.$gt"),
    ],
    ids=["nul-name", "nul-value", "depth", "or-terms", "fields", "in-values", "infinity"],
)
async def test_where_limits_are_422s_naming_the_field(client, where, field):
    await _seed(client)
    before = await _ids(client)
    for method, path, body in (
        ("POST", "/search", {"query": "note", "where": where}),
        ("DELETE", "/memories", {"where": where}),
    ):
        raw = json.dumps(body)  # allows NaN / Infinity, as Python's JSON parser (the service's) does
        r = await client.request(method, path, content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 422, (method, r.text[:300])
        assert r.json()["error"]["field"] == field, method
    assert await _ids(client) == before


async def test_filters_at_the_limits_are_answered(client):
    await _seed(client)
    at_limits = [
        {"where": _nest(LIMITS["depth"])},
        {"where": {"$or": [{"n": i} for i in range(LIMITS["terms"] - 1)]}},  # the $or group is a term too
        {"where": {"n": {"$in": list(range(LIMITS["values"]))}}},
    ]
    for flt in at_limits:
        r = await client.post("/search", json={"query": "note", "limit": 100, **flt})
        assert r.status_code == 200, r.text[:300]
        assert r.json()["results"]


async def test_too_many_tag_values_are_a_422(client):
    tags = [f"t{i}" for i in range(LIMITS["values"] + 1)]
    r = await client.post("/search", json={"query": "note", "tags": tags})
    assert r.status_code == 422 and r.json()["error"]["field"] == "tags"
    # The limit is over the whole filter: 600 + 600 values is over it too.
    r = await client.post("/search", json={"query": "note", "tags": tags[:600], "tags_none": tags[600:1200]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "tags_none"


@pytest.mark.parametrize(
    "path",
    [
        "/memories?cursor=9223372036854775808",
        "/memories?cursor=-1",
        "/memories?cursor=1e3",
        "/memories?cursor=" + "9" * 5000,
        "/ui/api/traces?cursor=9223372036854775808",
        "/ui/api/workflows?offset=9223372036854775808",
    ],
)
async def test_cursors_and_offsets_beyond_64_bits_are_422s(client, path):
    await _seed(client)
    r = await client.get(path)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] in ("cursor", "offset")


async def test_key_prefix_bounds_at_the_top_of_unicode(client):
    await _seed(client)
    for prefix, want in (
        ("z\U0010ffff", ["hi"]),
        ("\U0010ffff", []),
        ("\ud7ff", ["jamo"]),  # its upper bound skips the surrogates: U+E000
        ("\ue000", ["pua"]),
    ):
        r = await client.get("/keys", params={"prefix": prefix})
        assert r.status_code == 200, (prefix, r.text)
        assert sorted(m["id"] for m in r.json()["results"]) == want, prefix
        r = await client.post("/search", json={"query": "key", "key_prefix": prefix, "mode": "keyword"})
        assert r.status_code == 200, (prefix, r.text)
    r = await client.get("/ui/api/workflows", params={"prefix": "\U0010ffff"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("GET", "/memories/a%00b", "id"),
        ("DELETE", "/memories/a%00b", "id"),
        ("PATCH", "/memories/a%00b", "id"),
        ("GET", "/keys/a%00b", "key"),
        ("GET", "/keys?prefix=a%00", "prefix"),
        ("GET", "/claims/a%00b", "key"),
        ("DELETE", "/claims/a%00b", "key"),
    ],
)
async def test_nul_in_ids_and_keys_is_a_422(client, method, path, field):
    await _seed(client)
    kw = {"json": {"content": "x"}} if method == "PATCH" else {}
    r = await client.request(method, path, **kw)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field


# -- the query budget ------------------------------------------------------------------------------------------
RECORDS = 4000


@pytest.fixture
def slow_client(settings):
    """A service whose query budget is 20 ms, holding enough records for a heavy filter to outrun it.

    Seeded before the budget is lowered: PostgreSQL's budget is a statement_timeout on every statement.
    """
    import httpx

    from memory_spine.api import create_app
    from memory_spine.embedders import FakeEmbedder
    from memory_spine.models import MemoryIn
    from memory_spine.service import MemoryService

    with MemoryService.open(settings, embedder=FakeEmbedder(dim=DIM)) as svc:
        for start in range(0, RECORDS, 1000):
            svc.ingest_batch(
                [
                    MemoryIn(content=f"r {i}", metadata={"a": {"b1": {"c": 1}}, "n": i})
                    for i in range(start, start + 1000)
                ]
            )
    svc = MemoryService.open(settings.model_copy(update={"max_query_seconds": 0.02}), embedder=FakeEmbedder(dim=DIM))
    yield httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(svc)), base_url="http://memory-spine")
    svc.close()


def _heavy(n: int = 250) -> list[dict]:
    # Comparisons on nested JSON fields, none matching: every record is read and every comparison made.
    return [{f"a.b{i}.c": {"$gt": f"zz{i}"}} for i in range(n)]


async def test_a_query_past_its_budget_is_a_503_and_changes_nothing(slow_client, settings):
    async with slow_client as client:
        for method, path, body in (
            ("POST", "/search", {"query": "r", "mode": "keyword", "where": {"$or": _heavy()}}),
            ("GET", "/memories?limit=1000", None),  # not a heavy filter: warms nothing, must pass
            ("DELETE", "/memories", {"where": {"$or": [*_heavy(), {"n": {"$gte": 0}}]}}),
        ):
            started = time.perf_counter()
            r = await client.request(method, path, json=body)
            took = time.perf_counter() - started
            if body is None:
                assert r.status_code == 200, r.text[:200]
                continue
            assert r.status_code == 503, (method, r.status_code, r.text[:200])
            assert r.json()["error"]["type"] == "query_timeout"
            assert took < 5, took
    # Counted in the database itself: on PostgreSQL every statement of the slow service has the 20 ms budget,
    # /stats's too, and on a loaded machine a count can outrun it.
    assert _stored(settings) == RECORDS


def _stored(settings) -> int:
    if settings.database:
        import psycopg

        with psycopg.connect(settings.database) as conn:
            return conn.execute("SELECT count(*) FROM memories").fetchone()[0]
    import sqlite3

    from memory_spine.storage.sqlite import DB_FILE

    with sqlite3.connect(settings.data_dir / DB_FILE) as conn:
        return conn.execute("SELECT count(*) FROM memories").fetchone()[0]
