"""Filters: each `where` operator, tags / tags_all / tags_none, time, importance, keys, min_score, combinations.

Every case runs through search in every mode and under both semantic plans (exact scoring and HNSW with the
filter), and through DELETE's dry-run count, so one filter means one thing everywhere.
"""

from __future__ import annotations

import time

import pytest

from memory_spine.config import Settings
from memory_spine.errors import InvalidInput
from memory_spine.models import DeleteWhere, MemoryIn, SearchQuery
from memory_spine.service import MemoryService

# id, tags, metadata, importance, key
RECORDS = [
    ("a", ["red", "x"], {"n": 1, "s": "apple", "flag": True, "nested": {"k": "v1"}}, "low", "proj:alpha:1"),
    ("b", ["red", "blue"], {"n": 2, "s": "banana", "flag": False, "nested": {"k": "v2"}}, "medium", "proj:alpha:2"),
    ("c", ["blue"], {"n": 3, "s": "cherry", "nested": {"k": "v1", "deep": {"z": 10}}}, "high", "proj:beta:1"),
    ("d", [], {"n": 4.5, "s": "date", "maybe": None}, "critical", None),
    ("e", ["green"], {"s": "5", "n": "7"}, "medium", None),
    ("f", ["red", "blue", "green"], {}, "medium", "other"),
]
ALL = {r[0] for r in RECORDS}


@pytest.fixture(scope="module", params=["exact", "hnsw_filter"])
def svc(request, tmp_path_factory):
    # exact_max_candidates=0 (and exact_below=0: no exact scoring of the whole small store) sends every filtered
    # semantic search through HNSW + filter.
    exact_max = 4096 if request.param == "exact" else 0
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("filters"),
        embedder="fake",
        purge_seconds=3600,
        index_save_seconds=3600,
        exact_max_candidates=exact_max,
        exact_below=2048 if request.param == "exact" else 0,
    )
    service = MemoryService.open(settings)
    service.created = {}
    for id_, tags, meta, importance, key in RECORDS:
        content = f"report {id_} about fruit"
        service.ingest(MemoryIn(id=id_, content=content, tags=tags, metadata=meta, importance=importance, key=key))
        service.created[id_] = service.get(id_)["created_at"]
    service.plan = request.param
    yield service
    service.close()


def found(svc: MemoryService, mode: str = "semantic", **flt) -> set[str]:
    out = svc.search(SearchQuery(query="report fruit", limit=100, mode=mode, explain=True, **flt))
    if mode == "semantic" and out["results"]:  # (no match at all is always answered by the exact plan)
        assert out["plan"]["plan"].startswith(svc.plan)
    return {h["id"] for h in out["results"]}


def check(svc: MemoryService, expected: set[str], **flt) -> None:
    for mode in ("semantic", "keyword", "hybrid"):
        assert found(svc, mode, **flt) == expected, mode
    assert svc.delete_where(DeleteWhere(dry_run=True, **flt)) == {"would_delete": len(expected)}
    assert svc.storage.count(DeleteWhere(**flt), time.time()) == len(expected)


WHERE_CASES = [
    # equality by default, and $eq
    ({"s": "apple"}, {"a"}),
    ({"s": {"$eq": "apple"}}, {"a"}),
    ({"n": 2}, {"b"}),
    ({"n": 4.5}, {"d"}),
    ({"flag": True}, {"a"}),
    ({"flag": False}, {"b"}),
    # $ne also matches records without the field
    ({"s": {"$ne": "apple"}}, ALL - {"a"}),
    ({"n": {"$ne": 2}}, ALL - {"b"}),
    # ranges: numbers compare with numbers only ("7" in e is a string, not a number)
    ({"n": {"$gt": 2}}, {"c", "d"}),
    ({"n": {"$gte": 2}}, {"b", "c", "d"}),
    ({"n": {"$lt": 2}}, {"a"}),
    ({"n": {"$lte": 2}}, {"a", "b"}),
    ({"n": {"$gt": 1, "$lt": 4}}, {"b", "c"}),
    ({"s": {"$gte": "banana", "$lt": "d"}}, {"b", "c"}),
    ({"s": {"$gt": 3}}, set()),
    # membership
    ({"s": {"$in": ["apple", "cherry", "nope"]}}, {"a", "c"}),
    ({"s": {"$nin": ["apple", "cherry"]}}, {"b", "d", "e", "f"}),
    ({"n": {"$in": [1, 3]}}, {"a", "c"}),
    ({"n": {"$nin": [1, 3]}}, {"b", "d", "e", "f"}),
    # null: a missing field and an explicit null both count as null
    ({"maybe": None}, ALL),
    ({"maybe": {"$ne": None}}, set()),
    ({"n": {"$ne": None}}, {"a", "b", "c", "d", "e"}),
    # dotted paths reach nested objects
    ({"nested.k": "v1"}, {"a", "c"}),
    ({"nested.deep.z": {"$gte": 10}}, {"c"}),
    # several fields: all must hold
    ({"nested.k": "v1", "n": {"$gt": 1}}, {"c"}),
    # $and / $or, nested
    ({"$and": [{"n": {"$gte": 2}}, {"s": {"$ne": "cherry"}}]}, {"b", "d"}),
    ({"$or": [{"s": "apple"}, {"n": {"$gt": 4}}]}, {"a", "d"}),
    ({"$or": [{"$and": [{"n": {"$gte": 2}}, {"n": {"$lte": 3}}]}, {"s": "5"}]}, {"b", "c", "e"}),
    ({"$and": [{"$or": [{"s": "apple"}, {"s": "banana"}]}, {"flag": False}]}, {"b"}),
    ({"$or": [{"s": "apple"}], "n": 2}, set()),
]


@pytest.mark.parametrize(("where", "expected"), WHERE_CASES, ids=[str(c[0]) for c in WHERE_CASES])
def test_where_operator(svc, where, expected):
    check(svc, expected, where=where)


TAG_CASES = [
    ({"tags": ["red"]}, {"a", "b", "f"}),
    ({"tags": ["red", "green"]}, {"a", "b", "e", "f"}),
    ({"tags": ["nope"]}, set()),
    ({"tags_all": ["red", "blue"]}, {"b", "f"}),
    ({"tags_all": ["red", "red"]}, {"a", "b", "f"}),
    ({"tags_all": ["red", "blue", "green"]}, {"f"}),
    ({"tags_none": ["red"]}, {"c", "d", "e"}),
    ({"tags_none": ["red", "blue"]}, {"d", "e"}),
    ({"tags": ["blue"], "tags_none": ["green"]}, {"b", "c"}),
    ({"tags": ["red", "blue"], "tags_all": ["green"]}, {"f"}),
    ({"tags_all": ["blue"], "tags_none": ["red"]}, {"c"}),
]


@pytest.mark.parametrize(("flt", "expected"), TAG_CASES, ids=[str(c[0]) for c in TAG_CASES])
def test_tag_filters(svc, flt, expected):
    check(svc, expected, **flt)


def test_importance(svc):
    check(svc, {"c"}, importance="high")
    check(svc, {"a", "d"}, importance=["low", "critical"])
    check(svc, {"b", "e", "f"}, importance=["medium"])


def test_key_and_key_prefix(svc):
    check(svc, {"a"}, key="proj:alpha:1")
    check(svc, set(), key="proj:alpha")
    check(svc, {"a", "b"}, key_prefix="proj:alpha:")
    check(svc, {"a", "b", "c"}, key_prefix="proj:")
    check(svc, {"f"}, key_prefix="o")


def test_created_after_and_before_are_strict_and_take_iso_or_epoch(svc):
    from datetime import datetime

    c = svc.created["c"]
    c_epoch = datetime.fromisoformat(c.replace("Z", "+00:00")).timestamp()
    check(svc, {"d", "e", "f"}, created_after=c)
    check(svc, {"a", "b"}, created_before=c_epoch)
    check(svc, {"b", "c", "d"}, created_after=svc.created["a"], created_before=svc.created["e"])
    check(svc, set(), created_after=time.time() + 60)


def test_combinations_across_kinds(svc):
    check(svc, {"b"}, tags=["blue"], where={"n": {"$lt": 3}}, importance=["medium", "high"])
    check(svc, {"c"}, tags_none=["green"], where={"nested.k": "v1"}, key_prefix="proj:beta")
    check(svc, {"b", "c"}, tags_all=["blue"], created_after=svc.created["a"], where={"n": {"$ne": None}})


def test_min_score_drops_weaker_hits(svc):
    everything = svc.search(SearchQuery(query="report a about fruit", limit=100))["results"]
    scores = sorted((h["score"] for h in everything), reverse=True)
    assert len(scores) == len(ALL)
    cut = (scores[0] + scores[1]) / 2  # between the best hit and the rest
    kept = svc.search(SearchQuery(query="report a about fruit", limit=100, min_score=cut))["results"]
    assert [h["id"] for h in kept] == ["a"]
    assert all(h["score"] >= cut for h in kept)
    assert svc.search(SearchQuery(query="report a about fruit", limit=100, min_score=1.5))["results"] == []


@pytest.mark.parametrize(
    ("where", "field"),
    [
        ({"n": {"$regex": "a.*"}}, "where.n.$regex"),
        ({"$not": [{"n": 1}]}, "where.$not"),
        ({"n": {"$in": "apple"}}, "where.n.$in"),
        ({"n": {"$nin": []}}, "where.n.$nin"),
        ({"$and": []}, "where.$and"),
        ({"$or": [{"n": {"$bad": 1}}]}, "where.$or[0].n.$bad"),
        ({"n": {"$eq": [1, 2]}}, "where.n"),
        ({"n": {"a": 1}}, "where.n"),
        ({"": 1}, "where."),
        ({"a..b": 1}, "where.a..b"),
    ],
)
def test_bad_where_names_the_field(svc, where, field):
    with pytest.raises(InvalidInput) as err:
        svc.search(SearchQuery(query="report", where=where))
    assert err.value.field == field


async def test_filters_over_http(client):
    for i, (tags, meta) in enumerate([(["red"], {"n": 1}), (["blue"], {"n": 2}), (["red"], {"n": 3})]):
        r = await client.post("/ingest", json={"id": f"r{i}", "content": f"note {i}", "tags": tags, "metadata": meta})
        assert r.status_code == 200
    r = await client.post("/search", json={"query": "note", "tags": ["red"], "where": {"n": {"$gt": 1}}})
    assert [h["id"] for h in r.json()["results"]] == ["r2"]
    r = await client.get("/memories", params=[("tags", "red"), ("tags", "blue"), ("order", "oldest")])
    assert [m["id"] for m in r.json()["results"]] == ["r0", "r1", "r2"]
    r = await client.request("DELETE", "/memories", json={"where": {"n": {"$lte": 2}}, "dry_run": True})
    assert r.json() == {"would_delete": 2}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"where": {"n": {"$regex": "x"}}}, "where.n.$regex"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"importance": "urgent"}, "importance"),
        ({"tag": ["red"]}, "tag"),
        ({"tags": "red"}, "tags"),
    ],
)
async def test_bad_filter_over_http_is_422_naming_the_field(client, body, field):
    r = await client.post("/search", json={"query": "note", **body})
    assert r.status_code == 422
    assert r.json()["error"]["field"].startswith(field)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"where": {"a\\"b": 1}}', 'where.a"b'),
        ('{"where": {"a": "\\ud800"}}', "where.a"),
        ('{"where": {"\\ud800": 1}}', "where"),
        ('{"where": {"$or": [{"a": {"$in": ["ok", "\\udfff"]}}]}}', "where.$or[0].a.$in[1]"),
        ('{"where": {"a": 99999999999999999999999}}', "where.a"),
        ('{"where": {"a": {"$gt": -99999999999999999999999}}}', "where.a.$gt"),
        ('{"tags": ["ok", "\\ud800"]}', "tags[1]"),
        ('{"tags_all": ["\\ud800"]}', "tags_all[0]"),
        ('{"tags_none": ["\\ud800"]}', "tags_none[0]"),
        ('{"key": "\\ud800"}', "key"),
        ('{"key_prefix": "\\ud800"}', "key_prefix"),
        ('{"key_prefix": ""}', "key_prefix"),
        ('{"key": ""}', "key"),
        ('{"tags_none": [""]}', "tags_none[0]"),
        ('{"where": {"a\\u0000b": 1}}', "where"),
        ('{"where": {"a": "x\\u0000"}}', "where.a"),
        ('{"created_after": 1e300}', "created_after"),
    ],
)
async def test_unusable_filter_values_are_422_not_500(client, raw, field):
    await client.post("/ingest", json={"content": "note", "metadata": {"a": 1, 'a"b': 2}, "key": "k:1"})
    for method, path, body in (("POST", "/search", '{"query": "note", ' + raw[1:]), ("DELETE", "/memories", raw)):
        r = await client.request(method, path, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422, (method, r.text)
        assert r.json()["error"]["field"] == field
    assert (await client.get("/stats")).json()["total_memories"] == 1
