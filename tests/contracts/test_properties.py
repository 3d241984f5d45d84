"""A grammar of hostile requests against the real app, on both backends (hypothesis).

Hypothesis generates filters (every field, `where` trees of any depth and width with every operator and some
that do not exist, NUL, lone surrogates, U+10FFFF, huge and non-finite numbers, empty values), ids, keys,
cursors, offsets and bodies (ingest, batch, patch, claims, the console's API), and sends each to the app over
ASGI (the contract fixtures: in-process, fake embedder, SQLite or PostgreSQL). For every request:

- no 5xx: bad input is a 4xx (the budget's 503 would count as a failure here: nothing generated is that slow);
- no partial write: a request answered 4xx leaves the stored records exactly as they were (same ids, contents,
  versions, read at the same instant);
- bounded time: each answer within `SECONDS_PER_REQUEST`.

Each kind of request is its own test, so every kind gets its share of examples. Profiles: CI runs
`MEMORY_SPINE_PROPERTY_EXAMPLES` examples per backend (default 540, 30 per kind of request). A long run:
`MEMORY_SPINE_PROPERTY_EXAMPLES=20000 pytest tests/contracts/test_properties.py`;
`MEMORY_SPINE_PROPERTY_REPORT=counts.json` writes how many requests of each kind got which status.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("MEMORY_SPINE_PROPERTY_EXAMPLES", "540"))  # per backend, over all kinds
SECONDS_PER_REQUEST = 5.0

# -- the grammar --------------------------------------------------------------------------------------------------
SPECIAL_TEXT = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",
    "k\udfff",
    "\U0010ffff",
    "z\U0010ffff\U0010ffff",
    "\ud7ff",
    "\ue000",
    "checkpoint:" + ":" * 3000 + " x",
    "checkpoint:wf-1:step",
    "dedup:abc def",
    "trace:t1",
    "k:1",
    "%",
    "a/b",
    "..",
    "'; DROP TABLE memories; --",
    '"',
    "$and",
    "\\",
    "é" * 300,
]
chars = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, categories=["L", "N", "P", "S", "Z", "Cc", "Cs", "Co"])
text = st.one_of(st.sampled_from(SPECIAL_TEXT), st.text(chars, max_size=30))
ints = st.one_of(
    st.integers(-5, 5),
    st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 10**30, -(10**30)]),
    st.integers(),
)
floats = st.one_of(st.floats(), st.sampled_from([1e300, -1e300, 1e-300]))
scalars = st.one_of(st.none(), st.booleans(), ints, floats, text)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4), max_leaves=12
)
OPERATORS = ["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$regex", "$exists", "eq", "$"]
field_names = st.one_of(
    st.sampled_from(["n", "a", "a.b", "nested.k", "", ".", "a..b", "a.", '"', "'", "a\x00", "\ud800", "$bad"]), text
)
conditions = st.one_of(
    scalars,
    json_values,
    st.dictionaries(st.sampled_from(OPERATORS), st.one_of(scalars, st.lists(scalars, max_size=6)), max_size=3),
    st.integers(0, 1500).map(lambda n: {"$in": list(range(n))}),
)


def _nest(depth: int) -> dict:
    node: dict = {"n": 1}
    for _ in range(depth):
        node = {"$and": [node]}
    return node


wheres = st.one_of(
    st.recursive(
        st.dictionaries(field_names, conditions, max_size=4),
        lambda inner: (
            st.dictionaries(st.sampled_from(["$and", "$or", "$not"]), st.lists(inner, max_size=4), max_size=2)
            | st.dictionaries(field_names, conditions, max_size=3)
        ),
        max_leaves=10,
    ),
    st.integers(0, 60).map(_nest),
    st.integers(0, 1500).map(lambda n: {"$or": [{"n": i} for i in range(n)]}),
    st.integers(0, 1500).map(lambda n: {f"f{i}": i for i in range(n)}),
    json_values,
)
tag_lists = st.one_of(
    st.lists(text, max_size=5), st.integers(0, 3000).map(lambda n: [f"t{i}" for i in range(n)]), json_values
)
times = st.one_of(floats, ints, st.sampled_from(["2026-01-01T00:00:00Z", "0001-01-01", "9999-12-31T23:59:59", "x"]))
importance = st.one_of(st.sampled_from(["low", "medium", "high", "critical", "urgent"]), st.lists(text, max_size=3))
FILTER_FIELDS = {
    "tags": tag_lists,
    "tags_all": tag_lists,
    "tags_none": tag_lists,
    "where": wheres,
    "created_after": times,
    "created_before": times,
    "importance": importance,
    "key": text,
    "key_prefix": text,
}
filters = st.fixed_dictionaries({}, optional={**FILTER_FIELDS, "tag": text})
cursors = st.one_of(ints.map(str), text, st.sampled_from(["1e3", "0x10", "٣", " 1", "9" * 5000]))
records = st.fixed_dictionaries(
    {"content": text},
    optional={
        "id": text,
        "tags": tag_lists,
        "metadata": json_values,
        "importance": importance,
        "key": text,
        "ttl_seconds": floats,
        "expires_at": times,
        "bogus": scalars,
    },
)


def _path(value: str) -> str:
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


def _query(params: dict[str, Any]) -> str:
    parts = [f"{k}={_path(str(v))}" for k, v in params.items() if v is not None]
    return "?" + "&".join(parts) if parts else ""


Request = tuple[str, str, Any]  # method, path with query, JSON body (None: no body)
REQUESTS: dict[str, st.SearchStrategy[Request]] = {
    "search": st.tuples(
        st.just("POST"),
        st.just("/search"),
        st.builds(
            lambda f, q, extra: {**f, "query": q, **extra},
            filters,
            text,
            st.fixed_dictionaries({}, optional={"limit": ints, "mode": text, "min_score": floats, "explain": scalars}),
        ),
    ),
    "delete_where": st.tuples(
        st.just("DELETE"),
        st.just("/memories"),
        st.builds(lambda f, d: {**f, **d}, filters, st.just({}) | st.just({"dry_run": True})),
    ),
    "list": st.builds(
        lambda p: ("GET", "/memories" + _query(p), None),
        st.fixed_dictionaries(
            {}, optional={"cursor": cursors, "limit": ints, "order": text, "key_prefix": text, "tags": text}
        ),
    ),
    "console_list": st.tuples(
        st.just("POST"),
        st.just("/ui/api/memories"),
        st.builds(
            lambda f, c: {**f, **c}, filters, st.fixed_dictionaries({}, optional={"cursor": cursors, "limit": ints})
        ),
    ),
    "ingest": st.tuples(st.just("POST"), st.just("/ingest"), records),
    "batch": st.tuples(
        st.just("POST"), st.just("/ingest/batch"), st.fixed_dictionaries({"records": st.lists(records, max_size=5)})
    ),
    "patch": st.builds(
        lambda i, b: ("PATCH", f"/memories/{_path(i)}", b),
        st.sampled_from(["r1", "r2", "cp"]) | text,
        records.map(lambda r: {k: v for k, v in r.items() if k != "id"}),
    ),
    "delete": st.builds(lambda i: ("DELETE", f"/memories/{_path(i)}", None), text),
    "get": st.builds(lambda i: ("GET", f"/memories/{_path(i)}", None), text),
    "keys": st.builds(lambda p, n: ("GET", "/keys" + _query({"prefix": p, "limit": n}), None), text, st.none() | ints),
    "key": st.builds(lambda k: ("GET", f"/keys/{_path(k)}", None), text),
    "claim": st.tuples(
        st.just("POST"),
        st.just("/claims"),
        st.fixed_dictionaries({"key": text}, optional={"holder": text, "lease_seconds": floats}),
    ),
    "release": st.builds(
        lambda k, h: ("DELETE", f"/claims/{_path(k)}" + _query({"holder": h}), None), text, st.none() | text
    ),
    "get_claim": st.builds(lambda k: ("GET", f"/claims/{_path(k)}", None), text),
    "workflows": st.builds(
        lambda p: ("GET", "/ui/api/workflows" + _query(p), None),
        st.fixed_dictionaries({}, optional={"prefix": text, "offset": ints, "limit": ints}),
    ),
    "workflow": st.builds(lambda i: ("GET", f"/ui/api/workflows/{_path(i)}", None), text),
    "traces": st.builds(
        lambda p: ("GET", "/ui/api/traces" + _query(p), None),
        st.fixed_dictionaries({}, optional={"cursor": cursors, "workflow_id": text, "status": text, "limit": ints}),
    ),
    "trace": st.builds(lambda i: ("GET", f"/ui/api/traces/{_path(i)}", None), text),
}


# -- the property -------------------------------------------------------------------------------------------------
REPORT = os.environ.get("MEMORY_SPINE_PROPERTY_REPORT")  # a path: how many requests of each kind got which status
_COUNTS: dict[str, dict[str, Any]] = {}


def _tally(backend: str, kind: str, status: int, took: float) -> None:
    row = _COUNTS.setdefault(f"{backend} {kind}", {"requests": 0, "slowest_s": 0.0, "statuses": {}})
    row["requests"] += 1
    row["slowest_s"] = round(max(row["slowest_s"], took), 4)
    row["statuses"][str(status)] = row["statuses"].get(str(status), 0) + 1


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    if REPORT:
        with open(REPORT, "w", encoding="utf-8") as f:
            json.dump(_COUNTS, f, indent=1, sort_keys=True)


def _snapshot(service, now: float) -> list[tuple]:
    return sorted((r["id"], r["content"], r["updated_at"], r.get("key")) for r in service.storage.dump(now, False))


SEED = [
    {
        "id": f"r{i}",
        "content": f"note {i}",
        "tags": ["t", f"t{i}"],
        "metadata": {"n": i, "a": {"b": i}},
        "key": f"k:{i}",
    }
    for i in range(5)
] + [
    {"id": "cp", "content": "checkpoint:wf-1:step"},
    {"id": "tr", "content": "a trace", "key": "trace:t1", "metadata": {"workflow_id": "wf-1"}},
]


@pytest.fixture
def app_client(service):
    from starlette.testclient import TestClient

    from memory_spine.api import create_app

    client = TestClient(create_app(service), raise_server_exceptions=False)
    assert client.post("/ingest/batch", json={"records": SEED}).status_code == 200
    return client


@settings(
    max_examples=max(1, EXAMPLES // len(REQUESTS)),
    deadline=None,  # timed below, per request, with a bound that does not flake on a busy machine
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def _check(app_client: Any, service: Any, kind: str, data: st.DataObject) -> None:
    method, path, body = data.draw(REQUESTS[kind], label=kind)
    now = time.time() + 1.0  # one instant for both snapshots: records expiring meanwhile do not count
    before = _snapshot(service, now)
    kwargs: dict[str, Any] = {}
    if body is not None:
        kwargs = {"content": json.dumps(body), "headers": {"content-type": "application/json"}}
    started = time.perf_counter()
    response = app_client.request(method, path, **kwargs)
    took = time.perf_counter() - started
    _tally(service.storage.backend, kind, response.status_code, took)
    assert response.status_code < 500, (method, path[:200], response.text[:500])
    assert took < SECONDS_PER_REQUEST, (method, path[:200], took)
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/json")
        assert "error" in response.json()
        assert _snapshot(service, now) == before, (method, path[:200], response.status_code)


@pytest.mark.parametrize("kind", sorted(REQUESTS))
def test_hostile_requests_are_4xx_without_partial_writes(app_client, service, kind):
    _check(app_client, service, kind)
