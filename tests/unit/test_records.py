"""Records over HTTP: get, patch (re-embedding, merge and replace rules), delete by id and by filter, listing
with cursors, batch ingest (one embedding batch, all or nothing), upsert by id."""

from __future__ import annotations

import numpy as np
import pytest

from memory_spine.models import MemoryIn


def vector_of(service, id_: str) -> np.ndarray:
    return next(np.frombuffer(r["vector"], dtype=np.float32) for r in service.dump(vectors=True) if r["id"] == id_)


@pytest.fixture
def embed_calls(service, monkeypatch):
    """Texts passed to each embedding call of the service (query embeddings included)."""
    calls: list[list[str]] = []
    original = service._embed

    def counting(texts):
        calls.append(list(texts))
        return original(texts)

    monkeypatch.setattr(service, "_embed", counting)
    return calls


async def ids_of(client, query: str, mode: str = "semantic", **kw) -> list[str]:
    r = await client.post("/search", json={"query": query, "mode": mode, **kw})
    assert r.status_code == 200, r.text
    return [h["id"] for h in r.json()["results"]]


async def test_ingest_then_get_round_trip(client):
    body = {
        "id": "m1",
        "content": "the parser fails on empty lines",
        "tags": ["bug", "parser"],
        "metadata": {"severity": 3, "owner": {"team": "core"}, "seen": [1, 2]},
        "importance": "high",
        "key": "bug:parser:1",
    }
    r = await client.post("/ingest", json=body)
    assert r.status_code == 200 and r.json() == {"id": "m1", "key": "bug:parser:1", "created": True}
    got = (await client.get("/memories/m1")).json()
    assert {k: got[k] for k in body} == body
    assert got["created_at"] == got["updated_at"] and got["created_at"].endswith("Z")
    assert got["expires_at"] is None


async def test_get_unknown_is_404_json(client):
    r = await client.get("/memories/nope")
    assert r.status_code == 404
    assert r.json()["error"]["type"] == "not_found"


async def test_patch_content_re_embeds_and_search_follows(client, service, embed_calls):
    await client.post("/ingest", json={"id": "m1", "content": "apples and pears in the orchard"})
    await client.post("/ingest", json={"id": "m2", "content": "something else entirely"})
    before = vector_of(service, "m1")
    embed_calls.clear()
    r = await client.patch("/memories/m1", json={"content": "submarines under the arctic ice"})
    assert r.status_code == 200 and r.json()["content"] == "submarines under the arctic ice"
    assert embed_calls == [["submarines under the arctic ice"]]
    after = vector_of(service, "m1")
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, service.embedder.embed(["submarines under the arctic ice"])[0], atol=1e-6)
    assert len(service.index) == 2
    for mode in ("semantic", "keyword", "hybrid"):
        assert (await ids_of(client, "submarines arctic", mode))[0] == "m1"
    assert await ids_of(client, "orchard apples", "keyword") == []
    r = await client.post("/search", json={"query": "apples and pears in the orchard", "limit": 1, "mode": "semantic"})
    assert r.json()["results"][0]["score"] < 0.5


async def test_patch_without_content_keeps_the_vector(client, service, embed_calls):
    await client.post("/ingest", json={"id": "m1", "content": "stable text"})
    before = vector_of(service, "m1")
    embed_calls.clear()
    r = await client.patch("/memories/m1", json={"tags": ["x"], "importance": "low"})
    assert r.status_code == 200
    assert embed_calls == []
    np.testing.assert_array_equal(before, vector_of(service, "m1"))


async def test_patch_merges_metadata_and_replaces_tags(client):
    await client.post(
        "/ingest",
        json={"id": "m1", "content": "x", "tags": ["a", "b"], "metadata": {"keep": 1, "drop": 2, "change": 3}},
    )
    created = (await client.get("/memories/m1")).json()
    r = await client.patch(
        "/memories/m1", json={"metadata": {"drop": None, "change": 30, "new": {"x": 1}}, "tags": ["c"]}
    )
    assert r.status_code == 200
    got = r.json()
    assert got["metadata"] == {"keep": 1, "change": 30, "new": {"x": 1}}
    assert got["tags"] == ["c"]
    assert got["content"] == "x" and got["importance"] == "medium"
    assert got["created_at"] == created["created_at"] and got["updated_at"] > created["updated_at"]
    assert await ids_of(client, "x", tags=["a"]) == []
    assert await ids_of(client, "x", tags=["c"]) == ["m1"]
    assert await ids_of(client, "x", where={"change": 30}) == ["m1"]
    # An empty patch changes nothing but updated_at; tags: [] clears the tags.
    assert (await client.patch("/memories/m1", json={"tags": []})).json()["tags"] == []


async def test_patch_content_moves_a_key_derived_from_the_content(client):
    await client.post("/ingest", json={"id": "m1", "content": "dedup:abc sent the mail"})
    r = await client.patch("/memories/m1", json={"content": "dedup:xyz sent another mail"})
    assert r.json()["key"] == "dedup:xyz"
    assert await ids_of(client, "dedup:xyz") == ["m1"]
    assert await ids_of(client, "dedup:abc") == []
    # An explicit key stays when only the content changes.
    await client.post("/ingest", json={"id": "m2", "content": "plain", "key": "mine:1"})
    assert (await client.patch("/memories/m2", json={"content": "plainer"})).json()["key"] == "mine:1"
    assert (await client.patch("/memories/m2", json={"key": "mine:2"})).json()["key"] == "mine:2"


async def test_patch_errors(client):
    assert (await client.patch("/memories/nope", json={"content": "x"})).status_code == 404
    await client.post("/ingest", json={"id": "m1", "content": "x"})
    r = await client.patch("/memories/m1", json={"importance": "urgent"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "importance"
    r = await client.patch("/memories/m1", json={"content": " "})
    assert r.status_code == 422 and r.json()["error"]["field"] == "content"
    r = await client.patch("/memories/m1", json={"colour": "red"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "colour"
    assert (await client.get("/memories/m1")).json()["content"] == "x"


async def test_delete_by_id_removes_it_everywhere(client, service):
    for i in range(3):
        await client.post("/ingest", json={"id": f"m{i}", "content": f"zebra number {i}", "key": f"k:{i}"})
    r = await client.delete("/memories/m1")
    assert r.status_code == 200 and r.json() == {"deleted": 1}
    assert (await client.get("/memories/m1")).status_code == 404
    assert (await client.delete("/memories/m1")).status_code == 404
    assert len(service.index) == 2
    for mode in ("semantic", "keyword", "hybrid"):
        assert sorted(await ids_of(client, "zebra number 1", mode)) == ["m0", "m2"]
    assert (await client.get("/keys/k:1")).status_code == 404


async def test_delete_by_filter_with_dry_run(client, service):
    for i in range(10):
        await client.post("/ingest", json={"id": f"m{i}", "content": f"note {i}", "tags": ["old" if i < 4 else "new"]})
    r = await client.request("DELETE", "/memories", json={"tags": ["old"], "dry_run": True})
    assert r.status_code == 200 and r.json() == {"would_delete": 4}
    assert (await client.get("/stats")).json()["total_memories"] == 10
    r = await client.request("DELETE", "/memories", json={"tags": ["old"]})
    assert r.json() == {"deleted": 4}
    assert (await client.get("/stats")).json()["total_memories"] == 6
    assert len(service.index) == 6
    assert all(h.startswith("m") and int(h[1:]) >= 4 for h in await ids_of(client, "note", limit=100))
    r = await client.request("DELETE", "/memories", json={"where": {"n": {"$gt": 1}}})
    assert r.json() == {"deleted": 0}


async def test_delete_with_an_empty_filter_is_refused(client):
    await client.post("/ingest", json={"content": "keep me"})
    # No condition at all names `filter`; an empty value given (no condition either) names its field.
    for body, field in (
        ({}, "filter"),
        ({"dry_run": True}, "filter"),
        ({"tags": []}, "tags"),
        ({"where": {}}, "where"),
    ):
        r = await client.request("DELETE", "/memories", json=body)
        assert r.status_code == 422 and r.json()["error"]["field"] == field
    assert (await client.get("/stats")).json()["total_memories"] == 1


async def test_list_pages_with_a_cursor(client):
    for i in range(25):
        await client.post(
            "/ingest", json={"id": f"m{i:02d}", "content": f"n {i}", "tags": ["even" if i % 2 == 0 else "odd"]}
        )
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 10, **({"cursor": cursor} if cursor else {})}
        body = (await client.get("/memories", params=params)).json()
        seen += [m["id"] for m in body["results"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == [f"m{i:02d}" for i in reversed(range(25))]
    oldest = (await client.get("/memories", params={"limit": 100, "order": "oldest"})).json()
    assert [m["id"] for m in oldest["results"]] == sorted(seen) and oldest["next_cursor"] is None
    evens = (await client.get("/memories", params={"limit": 5, "tags": "even"})).json()
    assert [m["id"] for m in evens["results"]] == ["m24", "m22", "m20", "m18", "m16"]
    more = (await client.get("/memories", params={"limit": 5, "tags": "even", "cursor": evens["next_cursor"]})).json()
    assert [m["id"] for m in more["results"]] == ["m14", "m12", "m10", "m08", "m06"]
    r = await client.get("/memories", params={"cursor": "not-a-cursor"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "cursor"


async def test_list_by_key_prefix(client):
    for key in ("task:1", "task:2", "other:1"):
        await client.post("/ingest", json={"content": f"about {key}", "key": key})
    body = (await client.get("/memories", params={"key_prefix": "task:"})).json()
    assert sorted(m["key"] for m in body["results"]) == ["task:1", "task:2"]


async def test_batch_ingest_embeds_once_and_is_all_or_nothing(client, service, embed_calls):
    records = [{"id": f"b{i}", "content": f"batch record {i}", "tags": ["batch"]} for i in range(1000)]
    r = await client.post("/ingest/batch", json={"records": records})
    assert r.status_code == 200 and r.json()["created"] == 1000 and len(r.json()["ids"]) == 1000
    assert [len(c) for c in embed_calls] == [1000]
    assert len(service.index) == 1000

    bad = [{"content": f"new {i}"} for i in range(10)]
    bad[5] = {"content": ""}
    r = await client.post("/ingest/batch", json={"records": bad})
    assert r.status_code == 422 and r.json()["error"]["field"] == "records[5].content"
    dup = [{"id": "same", "content": "a"}, {"id": "same", "content": "b"}]
    r = await client.post("/ingest/batch", json={"records": dup})
    assert r.status_code == 422 and r.json()["error"]["field"] == "records[1].id"
    r = await client.post("/ingest/batch", json={"records": []})
    assert r.status_code == 422 and r.json()["error"]["field"] == "records"
    assert (await client.get("/stats")).json()["total_memories"] == 1000


async def test_batch_can_mix_new_records_and_upserts(client):
    await client.post("/ingest", json={"id": "old", "content": "before"})
    r = await client.post(
        "/ingest/batch", json={"records": [{"id": "old", "content": "after"}, {"id": "new", "content": "fresh"}]}
    )
    assert r.json() == {"ids": ["old", "new"], "created": 1}
    assert (await client.get("/memories/old")).json()["content"] == "after"


async def test_ingest_with_an_existing_id_upserts(client, service, embed_calls):
    r = await client.post("/ingest", json={"id": "u1", "content": "first version", "tags": ["a"], "metadata": {"v": 1}})
    first = (await client.get("/memories/u1")).json()
    r = await client.post("/ingest", json={"id": "u1", "content": "second version", "tags": ["b"]})
    assert r.json() == {"id": "u1", "key": None, "created": False}
    got = (await client.get("/memories/u1")).json()
    # Ingest replaces the whole record (unlike PATCH): metadata not given is gone; created_at stays.
    assert got["content"] == "second version" and got["tags"] == ["b"] and got["metadata"] == {}
    assert got["created_at"] == first["created_at"] and got["updated_at"] > first["updated_at"]
    assert (await client.get("/stats")).json()["total_memories"] == 1 and len(service.index) == 1
    assert await ids_of(client, "second", "keyword") == ["u1"]
    assert await ids_of(client, "first", "keyword") == []
    embed_calls.clear()
    await client.post("/ingest", json={"id": "u1", "content": "second version", "tags": ["c"]})
    assert embed_calls == [], "same content: the stored vector is kept"


def test_service_level_round_trip(service):
    """The core without HTTP: the same calls the routes make."""
    from memory_spine.errors import NotFound
    from memory_spine.models import MemoryPatch

    out = service.ingest(MemoryIn(content="in-process memory", tags=["t"]))
    assert service.get(out["id"])["tags"] == ["t"]
    assert service.update(out["id"], MemoryPatch(content="changed"))["content"] == "changed"
    assert service.delete(out["id"]) == {"deleted": 1}
    with pytest.raises(NotFound):
        service.get(out["id"])


def test_writes_after_deletes_and_a_restart_survive_a_crash(settings):
    """Versions must never go back: after deletes, an index save (which forgets the tombstones) and a restart,
    new writes got versions the saved index claimed to hold, so after a crash catch-up skipped them."""
    from memory_spine.models import SearchQuery
    from memory_spine.service import MemoryService

    svc = MemoryService.open(settings)
    for id_ in ("a", "b"):
        svc.ingest(MemoryIn(id=id_, content=f"{id_} gone soon"))
        svc.delete(id_)
    svc.close()  # saves the index at the highest version and forgets the tombstones
    svc = MemoryService.open(settings)
    svc.ingest(MemoryIn(id="c", content="charlie survives"))
    svc.ingest(MemoryIn(id="d", content="delta survives"))
    # crash: the process dies without saving the index
    svc._upkeep.stop()
    svc.storage.close()
    svc._lock.release()
    with MemoryService.open(settings) as svc:
        assert svc.check()["missing_from_index"] == 0
        assert svc.search(SearchQuery(query="charlie survives", limit=1))["results"][0]["id"] == "c"
