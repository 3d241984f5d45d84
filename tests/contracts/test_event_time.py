"""Event time on every backend: `occurred_at` stored, defaulted, kept by upserts and import, changed by PATCH,
filtered by `occurred_after` / `occurred_before`, and searched with a `when` phrase against `as_of` (issue 24)."""

from __future__ import annotations

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


async def test_occurred_at_defaults_to_created_and_is_kept_by_upserts(client):
    await ingest(client, id="a", content="plain note")
    got = (await client.get("/memories/a")).json()
    assert got["occurred_at"] == got["created_at"]
    await ingest(client, id="b", content="the launch", occurred_at="2023-05-08T13:56:00Z")
    assert (await client.get("/memories/b")).json()["occurred_at"] == "2023-05-08T13:56:00.000000Z"
    await ingest(client, id="b", content="the launch, again")  # an upsert without occurred_at keeps it
    assert (await client.get("/memories/b")).json()["occurred_at"] == "2023-05-08T13:56:00.000000Z"
    patched = await client.patch("/memories/b", json={"occurred_at": 1_600_000_000})
    assert patched.status_code == 200, patched.text
    assert patched.json()["occurred_at"] == "2020-09-13T12:26:40.000000Z"
    bad = await client.post("/ingest", json={"content": "x", "occurred_at": "not a time"})
    assert bad.status_code == 422 and "occurred_at" in bad.json()["error"]["field"]
    bad = await client.post("/ingest", json={"content": "x", "occurred_at": 1e300})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "occurred_at"


async def test_occurred_filters_and_when(client):
    days = {"may1": "2023-05-01T10:00:00Z", "may20": "2023-05-20T10:00:00Z", "jun6": "2023-06-06T10:00:00Z"}
    for id_, at in days.items():
        await ingest(client, id=id_, content=f"met the team about the roadmap ({id_})", occurred_at=at)
    base = {"query": "roadmap meeting", "mode": "semantic", "limit": 10}

    got = await search(client, **base, occurred_after="2023-05-10T00:00:00Z", occurred_before="2023-06-01T00:00:00Z")
    assert {h["id"] for h in got["results"]} == {"may20"}
    assert "time_range" not in got

    got = await search(client, **base, when="in May 2023")
    assert {h["id"] for h in got["results"]} == {"may1", "may20"}
    assert got["time_range"]["from"] == "2023-05-01T00:00:00Z" and got["time_range"]["to"] == "2023-06-01T00:00:00Z"

    got = await search(client, **base, when="last week", as_of="2023-06-09T12:00:00Z")
    assert {h["id"] for h in got["results"]} == set()  # the week of 29 May
    got = await search(client, **base, when="this week", as_of="2023-06-09T12:00:00Z")
    assert {h["id"] for h in got["results"]} == {"jun6"}
    got = await search(client, **base, when="three days before 2023-06-09")
    assert {h["id"] for h in got["results"]} == {"jun6"}
    # `when` and explicit bounds intersect; keyword and hybrid plans take the range too.
    for mode in ("keyword", "hybrid"):
        got = await search(client, **{**base, "mode": mode}, when="2023", occurred_before="2023-05-10T00:00:00Z")
        assert {h["id"] for h in got["results"]} == {"may1"}, mode

    for bad in ({"when": "blorp"}, {"when": ""}, {"when": "x" * 500}):
        r = await client.post("/search", json={**base, **bad})
        assert r.status_code == 422 and r.json()["error"]["field"] == "when", r.text
    r = await client.post("/search", json={**base, "when": "last week", "as_of": "yesterday-ish"})
    assert r.status_code == 422 and "as_of" in r.json()["error"]["field"]


def test_export_import_keep_occurred_at(service):
    from memory_spine.models import MemoryIn

    service.ingest(MemoryIn(id="e1", content="an old event", occurred_at="2021-01-02T03:04:05Z"))
    rows = list(service.dump(vectors=True))
    assert rows[0]["occurred_at"] == "2021-01-02T03:04:05.000000Z"
    service.delete("e1")
    row = rows[0]
    vec = np.frombuffer(row.pop("vector"), dtype=np.float32)
    service.restore([MemoryRestore(**{k: v for k, v in row.items() if k != "version"})], [vec])
    assert service.get("e1")["occurred_at"] == "2021-01-02T03:04:05.000000Z"
