"""Record history on every backend (`sqlite`, `postgres`): what PATCH, upsert, revert and delete keep, and the
routes that read and use it (`GET /memories/{id}/history`, `POST .../revert`, `POST .../restore`,
`GET /deleted`, `GET /memories/{id}?as_of=`), retention (with a fake clock: no sleeping), and that a history row
and the write it belongs to commit together or not at all.

In-process app over ASGI with the fake embedder (contracts/conftest.py).
"""

from __future__ import annotations

import time

import pytest

from memory_spine.models import MemoryPatch, RevertIn, SearchQuery

pytestmark = pytest.mark.timeout(120)


async def _ok(response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    return response.json()


async def _history(client, id_: str) -> dict:
    return await _ok(await client.get(f"/memories/{id_}/history"))


async def test_patch_upsert_and_delete_keep_the_prior_version_with_the_versions_get_shows(client):
    v1 = (await _ok(await client.post("/ingest", json={"id": "h", "content": "one", "tags": ["a"]})))["id"]
    assert v1 == "h"
    first = await _ok(await client.get("/memories/h"))
    patched = await _ok(await client.patch("/memories/h", json={"content": "two", "metadata": {"n": 1}}))
    await _ok(await client.post("/ingest", json={"id": "h", "content": "three", "tags": ["a"]}))
    third = await _ok(await client.get("/memories/h"))

    h = await _history(client, "h")
    assert h["current_version"] == third["version"] and h["deleted_at"] is None
    versions = [v["version"] for v in h["versions"]]
    assert versions == [third["version"], patched["version"], first["version"]]  # newest first, GET's numbers
    assert [v["content"] for v in h["versions"]] == ["three", "two", "one"]
    assert [v["current"] for v in h["versions"]] == [True, False, False]
    assert [v["ended_by"] for v in h["versions"]] == [None, "upsert", "patch"]
    assert [v["superseded_by"] for v in h["versions"]] == [None, third["version"], patched["version"]]
    # What changed: the upsert reset the metadata (fields not given are reset), the PATCH changed content + metadata.
    assert h["versions"][0]["changed"] == ["content", "metadata"]
    assert h["versions"][1]["changed"] == ["content", "metadata"]
    assert h["versions"][2]["changed"] is None  # the oldest kept: nothing before it to compare
    # Each version's validity ends where the next begins.
    assert h["versions"][1]["valid_until"] == h["versions"][0]["valid_from"] == third["updated_at"]
    assert h["versions"][2]["valid_until"] == h["versions"][1]["valid_from"]

    await _ok(await client.delete("/memories/h"))
    h = await _history(client, "h")
    assert h["current_version"] is None and h["deleted_at"] is not None
    assert h["versions"][0]["version"] == third["version"] and h["versions"][0]["ended_by"] == "delete"
    assert (await client.get("/memories/h")).status_code == 404  # deleted is deleted for every other read


async def test_history_of_an_unknown_id_is_404_and_ids_ending_in_history_stay_reachable(client):
    r = await client.get("/memories/nobody/history")
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"
    await _ok(await client.post("/ingest", json={"id": "notes/history", "content": "an id ending in /history"}))
    await _ok(await client.post("/ingest", json={"id": "notes", "content": "its parent"}))
    # The slash sent as %2F (as the kit and the console send ids): the record; a plain slash: the sub-resource.
    got = await _ok(await client.get("/memories/notes%2Fhistory"))
    assert got["content"] == "an id ending in /history"
    assert (await _history(client, "notes"))["versions"][0]["content"] == "its parent"


async def test_revert_makes_a_new_version_equal_to_the_old_one_without_embedding(client, service, monkeypatch):
    await _ok(await client.post("/ingest", json={"id": "r", "content": "original", "tags": ["x"], "key": "k:r"}))
    old = await _ok(await client.get("/memories/r"))
    await _ok(await client.patch("/memories/r", json={"content": "changed", "tags": ["y"], "metadata": {"m": 1}}))

    def no_model(texts):  # the stored vector is written back: the model is not asked
        raise AssertionError(f"revert embedded {texts!r}")

    monkeypatch.setattr(service, "_embed", no_model)
    r = await client.post("/memories/r/revert", json={"version": old["version"]})
    now = await _ok(r)
    assert r.headers["etag"] == f'"{now["version"]}"'
    assert now["version"] > old["version"]
    for field in ("content", "tags", "metadata", "importance", "key", "created_at"):
        assert now[field] == old[field], field
    h = await _history(client, "r")
    assert [v["ended_by"] for v in h["versions"]][:2] == [None, "revert"]
    # Searchable by its old content again (the index follows the reverted vector).
    monkeypatch.undo()
    hits = service.search(SearchQuery(query="original", mode="semantic", limit=1))
    assert hits["results"][0]["id"] == "r" and hits["results"][0]["score"] > 0.99


async def test_revert_honours_if_match_if_version_and_fences_and_names_bad_input(client):
    await _ok(await client.post("/ingest", json={"id": "c", "content": "v-a"}))
    a = await _ok(await client.get("/memories/c"))
    b = await _ok(await client.patch("/memories/c", json={"content": "v-b"}))

    r = await client.post(
        "/memories/c/revert", json={"version": a["version"]}, headers={"If-Match": f'"{a["version"]}"'}
    )
    assert r.status_code == 412 and r.json()["current_version"] == b["version"], r.text
    r = await client.post("/memories/c/revert", json={"version": a["version"], "if_version": a["version"]})
    assert r.status_code == 412 and r.json()["error"]["field"] == "if_version"
    r = await client.post("/memories/c/revert", json={"version": a["version"]}, params={"if_version": b["version"]})
    assert (await _ok(r))["content"] == "v-a"

    claim = await _ok(await client.post("/claims", json={"key": "w:c", "lease_seconds": 60}), 201)
    fence = {"key": "w:c", "token": claim["fence"] + 1}
    r = await client.post("/memories/c/revert", json={"version": b["version"], "fence": fence})
    assert r.status_code == 409 and r.json()["error"]["type"] == "stale_fence", r.text
    fence["token"] = claim["fence"]
    assert (await _ok(await client.post("/memories/c/revert", json={"version": b["version"], "fence": fence})))[
        "content"
    ] == "v-b"

    r = await client.post("/memories/c/revert", json={"version": 987654321})
    assert r.status_code == 404 and r.json()["error"]["field"] == "version" and "987654321" in r.text
    r = await client.post("/memories/c/revert", json={"version": "x"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "version"
    r = await client.post("/memories/c/revert", json={})
    assert r.status_code == 422 and r.json()["error"]["field"] == "version"
    r = await client.post("/memories/nobody/revert", json={"version": 1})
    assert r.status_code == 404

    await _ok(await client.delete("/memories/c"))
    r = await client.post("/memories/c/revert", json={"version": a["version"]})
    assert r.status_code == 409 and "restore" in r.json()["error"]["message"], r.text


async def test_as_of_answers_the_version_live_then(client):
    before = time.time() - 1
    await _ok(await client.post("/ingest", json={"id": "t", "content": "first"}))
    first = await _ok(await client.get("/memories/t"))
    second = await _ok(await client.patch("/memories/t", json={"content": "second"}))
    r = await client.get("/memories/t", params={"as_of": first["updated_at"]})
    assert (await _ok(r))["content"] == "first" and r.json()["version"] == first["version"]
    assert "etag" not in r.headers  # an old version is no precondition for a write
    got = await _ok(await client.get("/memories/t", params={"as_of": second["updated_at"]}))
    assert got["content"] == "second"
    assert (await _ok(await client.get("/memories/t", params={"as_of": str(time.time() + 5)})))["content"] == "second"
    r = await client.get("/memories/t", params={"as_of": str(before)})
    assert r.status_code == 404 and "as_of" in r.json()["error"]["message"]
    for bad in ("yesterday", "", "1e400", "2026-13-01T00:00:00Z", "nan"):
        r = await client.get("/memories/t", params={"as_of": bad})
        assert r.status_code == 422 and r.json()["error"]["field"] == "as_of", (bad, r.text)
    await _ok(await client.delete("/memories/t"))
    after = time.time() + 1
    assert (await client.get("/memories/t", params={"as_of": str(after)})).status_code == 404
    got = await _ok(await client.get("/memories/t", params={"as_of": second["updated_at"]}))
    assert got["content"] == "second"  # deleted now, but it was there then


async def test_deleted_records_are_listed_and_restored(client, service):
    await _ok(
        await client.post(
            "/ingest/batch",
            json={
                "records": [
                    {"id": "d1", "content": "gone by id", "tags": ["keep"]},
                    {"id": "d2", "content": "gone by filter", "tags": ["scratch"], "ttl_seconds": 3600},
                    {"id": "d3", "content": "stays", "tags": ["keep"]},
                ]
            },
        )
    )
    d1 = await _ok(await client.get("/memories/d1"))
    await _ok(await client.delete("/memories/d1"))
    await _ok(await client.request("DELETE", "/memories", json={"tags": ["scratch"]}))
    listed = await _ok(await client.get("/deleted"))
    assert [(r["id"], r["deleted_by"]) for r in listed["results"]] == [("d2", "delete_where"), ("d1", "delete")]
    page = await _ok(await client.get("/deleted", params={"limit": 1}))
    assert len(page["results"]) == 1 and page["next_cursor"]
    rest = await _ok(await client.get("/deleted", params={"limit": 1, "cursor": page["next_cursor"]}))
    assert [r["id"] for r in rest["results"]] == ["d1"]

    r = await client.post("/memories/d1/restore")
    back = await _ok(r)
    assert back["content"] == "gone by id" and back["tags"] == ["keep"] and back["created_at"] == d1["created_at"]
    assert back["version"] > d1["version"] and r.headers["etag"] == f'"{back["version"]}"'
    assert (await _ok(await client.get("/memories/d1")))["content"] == "gone by id"
    assert "d1" in [h["id"] for h in service.search(SearchQuery(query="gone by id", mode="semantic"))["results"]]
    assert [r["id"] for r in (await _ok(await client.get("/deleted")))["results"]] == ["d2"]
    assert (await _ok(await client.post("/memories/d2/restore", json={})))["expires_at"] is not None

    r = await client.post("/memories/d1/restore")
    assert r.status_code == 409 and "revert" in r.json()["error"]["message"]  # live: nothing to restore
    assert (await client.post("/memories/never/restore")).status_code == 404
    r = await client.post("/memories/d3/restore", json={"version": "x"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "version"


async def test_restore_of_a_chosen_version_and_of_one_that_would_expire_at_once(client):
    await _ok(await client.post("/ingest", json={"id": "e", "content": "v1"}))
    v1 = await _ok(await client.get("/memories/e"))
    await _ok(await client.patch("/memories/e", json={"content": "v2"}))
    await _ok(await client.delete("/memories/e"))
    assert (await _ok(await client.post("/memories/e/restore", json={"version": v1["version"]})))["content"] == "v1"
    await _ok(await client.patch("/memories/e", json={"expires_at": time.time() + 0.3}))
    await _ok(await client.delete("/memories/e"))
    time.sleep(0.4)  # the deleted version's own expiry passes (a record's expiry is real time: nothing to fake)
    r = await client.post("/memories/e/restore")
    assert r.status_code == 409 and "expired" in r.json()["error"]["message"], r.text


async def test_retention_bounds_versions_per_record_and_age_with_a_fake_clock(client, service):
    service.storage.history_versions = 3
    await _ok(await client.post("/ingest", json={"id": "n", "content": "0"}))
    for i in range(1, 7):
        await _ok(await client.patch("/memories/n", json={"content": str(i)}))
    h = await _history(client, "n")
    assert [v["content"] for v in h["versions"]] == ["6", "5", "4", "3"]  # the live one and 3 prior
    await _ok(await client.delete("/memories/n"))
    assert [v["content"] for v in (await _history(client, "n"))["versions"]] == ["6", "5", "4"]

    await _ok(await client.post("/ingest", json={"id": "m", "content": "a"}))
    await _ok(await client.patch("/memories/m", json={"content": "b"}))
    days = service.settings.history_days
    assert service.prune_history(now=time.time() + (days - 1) * 86_400) == 0  # younger than the retention
    assert service.prune_history(now=time.time() + (days + 1) * 86_400) == 4  # n's three, m's one
    assert [v["content"] for v in (await _history(client, "m"))["versions"]] == ["b"]
    assert (await client.get("/memories/n/history")).status_code == 404
    assert (await _ok(await client.get("/deleted")))["results"] == []


async def test_no_history_when_retention_is_zero_and_none_for_the_expiry_purge(client, service):
    service.storage.history_versions = 0
    await _ok(await client.post("/ingest", json={"id": "z", "content": "a"}))
    await _ok(await client.patch("/memories/z", json={"content": "b"}))
    assert len((await _history(client, "z"))["versions"]) == 1
    service.storage.history_versions = 10
    await _ok(await client.post("/ingest", json={"id": "x", "content": "short-lived", "ttl_seconds": 0.2}))
    time.sleep(0.3)
    service.purge_expired()
    assert (await client.get("/memories/x/history")).status_code == 404  # expiry is not a change anybody made
    assert (await _ok(await client.get("/deleted")))["results"] == []
    # A record that was patched, then expired: its earlier versions stay, but it was not deleted.
    await _ok(await client.post("/ingest", json={"id": "y", "content": "first", "ttl_seconds": 60}))
    first = await _ok(await client.get("/memories/y"))
    await _ok(await client.patch("/memories/y", json={"content": "second", "ttl_seconds": 0.2}))
    time.sleep(0.3)
    service.purge_expired()
    assert [v["content"] for v in (await _history(client, "y"))["versions"]] == ["first"]
    assert (await _ok(await client.get("/deleted")))["results"] == []
    r = await client.post("/memories/y/restore")
    assert r.status_code == 404 and "by number" in r.json()["error"]["message"], r.text
    r = await client.post("/memories/y/restore", json={"version": first["version"]})
    assert (await _ok(r))["content"] == "first"


@pytest.mark.parametrize("write", ["patch", "upsert", "revert", "delete", "delete_where"])
def test_history_row_and_new_version_commit_together(service, monkeypatch, write):
    """A failure after both the history row and the new version are written (inside the transaction, just
    before its commit) leaves neither: the record at its old version, its history as it was."""
    from memory_spine.models import DeleteWhere, MemoryIn

    service.ingest(MemoryIn(id="s", content="one", tags=["s"]))
    service.update("s", MemoryPatch(content="two"))
    before = (service.get("s"), service.history("s"))

    def crash(*args, **kwargs):
        raise RuntimeError("crash before the commit")

    monkeypatch.setattr(service.storage, "_prune_versions", crash)  # runs last in every keeping transaction
    act = {
        "patch": lambda: service.update("s", MemoryPatch(content="three")),
        "upsert": lambda: service.ingest(MemoryIn(id="s", content="three")),
        "revert": lambda: service.revert("s", RevertIn(version=before[1]["versions"][-1]["version"])),
        "delete": lambda: service.delete("s"),
        "delete_where": lambda: service.delete_where(DeleteWhere(tags=["s"])),
    }[write]
    with pytest.raises(RuntimeError):
        act()
    monkeypatch.undo()
    assert (service.get("s"), service.history("s")) == before


async def test_concurrent_patches_leave_one_unbroken_chain_of_versions(client, service):
    import asyncio

    service.storage.history_versions = 100
    await _ok(await client.post("/ingest", json={"id": "cc", "content": "base"}))
    writers = 20
    answers = await asyncio.gather(
        *(client.patch("/memories/cc", json={"metadata": {f"w{i}": i}}) for i in range(writers))
    )
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers if r.status_code != 200]
    h = await _history(client, "cc")
    versions = h["versions"]
    assert len(versions) == writers + 1  # every write kept exactly the version it replaced: none lost, none twice
    assert len(versions[0]["metadata"]) == writers  # and no PATCH lost another's change
    for newer, older in zip(versions, versions[1:], strict=False):
        assert older["version"] < newer["version"]
        assert older["superseded_by"] == newer["version"] and older["ended_by"] == "patch"
        assert older["valid_until"] == newer["valid_from"]
        assert len(older["metadata"]) == len(newer["metadata"]) - 1  # each version one merge after the one before


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("GET", "/memories/a%00b/history", None, "id"),
        ("GET", "/memories/h1/history?limit=0", None, "limit"),
        ("GET", "/memories/h1/history?limit=5000", None, "limit"),
        ("POST", "/memories/h1/revert", {"version": -1}, "version"),
        ("POST", "/memories/h1/revert", {"version": 2**63}, "version"),
        ("POST", "/memories/h1/revert", {"version": 1.5}, "version"),
        ("POST", "/memories/h1/revert", {"version": 1, "versoin": 2}, "versoin"),
        ("POST", "/memories/h1/revert", {"version": 1, "fence": {"key": "k"}}, "fence.token"),
        ("POST", "/memories/h1/restore", {"version": -5}, "version"),
        ("GET", "/deleted?limit=0", None, "limit"),
        ("GET", "/deleted?cursor=-1", None, "cursor"),
        ("GET", "/memories/h1?as_of=2026-01-01T00:00:00Zjunk", None, "as_of"),
    ],
)
async def test_bad_input_to_the_history_routes_is_422_naming_the_field_and_writes_nothing(
    client, method, path, body, field
):
    await _ok(await client.post("/ingest", json={"id": "h1", "content": "one"}))
    before = await _history(client, "h1")
    r = await client.request(method, path, json=body)
    assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text
    assert await _history(client, "h1") == before


async def test_history_revert_and_restore_stay_in_their_namespace(client):
    for ns, text in (("team/a", "a1"), ("team/b", "b1")):
        await _ok(await client.post("/ingest", json={"id": "same", "content": text, "namespace": ns}))
        await _ok(await client.post("/ingest", json={"id": "same", "content": text + "-2", "namespace": ns}))
    a = await _ok(await client.get("/memories/same/history", params={"namespace": "team/a"}))
    b = await _ok(await client.get("/memories/same/history", headers={"X-Memory-Namespace": "team/b"}))
    assert len(a["versions"]) == len(b["versions"]) == 2
    assert (await client.get("/memories/same/history")).status_code == 404  # nothing of it in `default`
    first_a = a["versions"][-1]["version"]
    reverted = await _ok(
        await client.post("/memories/same/revert", params={"namespace": "team/a"}, json={"version": first_a})
    )
    assert reverted["content"] == "a1" and reverted["namespace"] == "team/a"
    assert (await _ok(await client.get("/memories/same", params={"namespace": "team/b"})))["content"] == "b1-2"
    await _ok(await client.delete("/memories/same", params={"namespace": "team/b"}))
    gone_a = await _ok(await client.get("/deleted", params={"namespace": "team/a"}))
    gone_b = await _ok(await client.get("/deleted", params={"namespace": "team/b"}))
    assert gone_a["results"] == [] and [r["id"] for r in gone_b["results"]] == ["same"]
    restored = await _ok(await client.post("/memories/same/restore", params={"namespace": "team/b"}))
    assert restored["content"] == "b1-2" and restored["namespace"] == "team/b"
