"""Optimistic concurrency on every backend (`sqlite`, `postgres`): `version` / ETag on reads, `If-Match` and
`if_version` on PATCH and DELETE, 412 on a mismatch.

The headline case is the one issue 15 reported: 40 concurrent read-then-PATCH increments of a counter ended at
14 without a precondition. With `if_version` and a retry on 412 they must end at exactly 40, and the number of
412s shows the races really happened (the test fails if none did).
"""

from __future__ import annotations

import asyncio

import pytest

from memory_spine.models import MemoryPatch
from workflow_kit import MemoryClient, NotFound, PreconditionFailed

pytestmark = pytest.mark.timeout(120)

WRITERS = 40


async def _put(client, id_: str, **body) -> dict:
    r = await client.post("/ingest", json={"id": id_, "content": f"record {id_}", **body})
    assert r.status_code == 200, r.text
    got = await client.get(f"/memories/{id_}")
    assert got.status_code == 200, got.text
    return got.json()


def _precondition_failed(r, field: str, current: int) -> None:
    assert r.status_code == 412, r.text
    body = r.json()
    assert body["error"]["type"] == "precondition_failed" and body["error"]["field"] == field, body
    assert body["current_version"] == current and str(current) in body["error"]["message"], body
    assert r.headers["etag"] == f'"{current}"'


async def test_reads_carry_a_version_and_a_strong_etag_that_every_write_changes(client):
    first = await _put(client, "v1", metadata={"n": 0})
    assert isinstance(first["version"], int) and first["version"] > 0
    r = await client.get("/memories/v1")
    assert r.headers["etag"] == f'"{first["version"]}"'  # strong (no W/), quoted
    patched = await client.patch("/memories/v1", json={"metadata": {"n": 1}})
    assert patched.status_code == 200 and patched.json()["version"] > first["version"]
    assert patched.headers["etag"] == f'"{patched.json()["version"]}"'
    # An upsert through /ingest is a write too: the version moves on.
    again = await _put(client, "v1", metadata={"n": 2})
    assert again["version"] > patched.json()["version"]
    # Another record's writes leave this one's version alone.
    await _put(client, "other")
    assert (await client.get("/memories/v1")).json()["version"] == again["version"]


async def test_patch_with_a_stale_version_is_412_and_writes_nothing(client):
    rec = await _put(client, "p", metadata={"n": 0})
    v0 = rec["version"]
    ok = await client.patch("/memories/p", json={"metadata": {"n": 1}, "if_version": v0})
    assert ok.status_code == 200 and ok.json()["metadata"] == {"n": 1}
    v1 = ok.json()["version"]
    for kw in (
        {"json": {"metadata": {"n": 99}, "if_version": v0}},
        {"json": {"metadata": {"n": 99}}, "params": {"if_version": v0}},
    ):
        _precondition_failed(await client.patch("/memories/p", **kw), "if_version", v1)
    for tag in (f'"{v0}"', f'W/"{v1}"', '"not-a-version"', '""'):  # stale, weak (strong comparison), foreign
        r = await client.patch("/memories/p", json={"metadata": {"n": 99}}, headers={"If-Match": tag})
        _precondition_failed(r, "If-Match", v1)
    after = (await client.get("/memories/p")).json()
    assert after["metadata"] == {"n": 1} and after["version"] == v1
    # The ETag as given works; so does `*` (the record exists), and the body's if_version agreeing with it.
    r = await client.patch("/memories/p", json={"tags": ["a"]}, headers={"If-Match": f'"{v1}"'})
    assert r.status_code == 200 and r.json()["tags"] == ["a"]
    v2 = r.json()["version"]
    r = await client.patch("/memories/p", json={"tags": ["b"], "if_version": v2}, headers={"If-Match": f' "{v2}" '})
    assert r.status_code == 200
    r = await client.patch("/memories/p", json={"tags": ["c"]}, headers={"If-Match": "*"})
    assert r.status_code == 200 and r.json()["tags"] == ["c"]


async def test_bad_preconditions_are_422_naming_the_field(client):
    rec = await _put(client, "b")
    v = rec["version"]
    cases = [
        ({"json": {"tags": ["x"], "if_version": "seven"}}, "if_version"),
        ({"json": {"tags": ["x"], "if_version": -1}}, "if_version"),
        ({"json": {"tags": ["x"], "if_version": 2**63}}, "if_version"),
        ({"json": {"tags": ["x"]}, "params": {"if_version": "x"}}, "if_version"),
        ({"json": {"tags": ["x"]}, "headers": {"If-Match": str(v)}}, "If-Match"),  # unquoted
        ({"json": {"tags": ["x"]}, "headers": {"If-Match": f'"{v}", "{v + 1}"'}}, "If-Match"),  # a list
        ({"json": {"tags": ["x"], "if_version": v}, "headers": {"If-Match": f'"{v + 1}"'}}, "if_version"),
        ({"json": {"tags": ["x"], "if_version": v}, "params": {"if_version": v + 1}}, "if_version"),
    ]
    for kw, field in cases:
        r = await client.patch("/memories/b", **kw)
        assert r.status_code == 422 and r.json()["error"]["field"] == field, (kw, r.text)
    r = await client.delete("/memories/b", headers={"If-Match": "W/"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "If-Match"
    assert (await client.get("/memories/b")).json()["version"] == v  # none of them wrote


async def test_delete_with_a_version(client):
    rec = await _put(client, "d")
    v0 = rec["version"]
    v1 = (await client.patch("/memories/d", json={"tags": ["t"]})).json()["version"]
    _precondition_failed(await client.delete("/memories/d", params={"if_version": v0}), "if_version", v1)
    _precondition_failed(await client.delete("/memories/d", headers={"If-Match": f'"{v0}"'}), "If-Match", v1)
    assert (await client.get("/memories/d")).status_code == 200
    assert (await client.delete("/memories/d", headers={"If-Match": f'"{v1}"'})).json() == {"deleted": 1}
    # A missing record stays 404, whatever the precondition.
    for kw in ({"params": {"if_version": v1}}, {"headers": {"If-Match": f'"{v1}"'}}, {"headers": {"If-Match": "*"}}):
        r = await client.delete("/memories/d", **kw)
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found", kw
        r = await client.patch("/memories/d", json={"tags": ["x"]}, **kw)
        assert r.status_code == 404, kw
    await _put(client, "d2")
    assert (
        await client.delete("/memories/d2", params={"if_version": (await _put(client, "d2"))["version"]})
    ).json() == {"deleted": 1}


async def test_concurrent_read_then_patch_increments_all_count(client):
    """40 clients each read the counter, add one and PATCH it back with if_version, retrying on 412."""
    await _put(client, "counter", metadata={"n": 0})
    conflicts = 0
    start = asyncio.Event()

    async def increment() -> None:
        nonlocal conflicts
        await start.wait()
        for _attempt in range(1000):
            got = (await client.get("/memories/counter")).json()
            await asyncio.sleep(0)  # let the other readers in between our read and our write
            r = await client.patch(
                "/memories/counter", json={"metadata": {"n": got["metadata"]["n"] + 1}, "if_version": got["version"]}
            )
            if r.status_code == 200:
                return
            assert r.status_code == 412, r.text
            conflicts += 1
        raise AssertionError("an increment never got through")

    tasks = [asyncio.create_task(increment()) for _ in range(WRITERS)]
    start.set()
    await asyncio.gather(*tasks)
    final = (await client.get("/memories/counter")).json()
    assert final["metadata"]["n"] == WRITERS
    assert conflicts > 0, "no write ever raced: the test did not exercise the precondition"


async def test_without_a_precondition_increments_are_lost(client):
    """The same 40 read-then-PATCH increments without if_version: the failure the precondition exists for."""
    await _put(client, "loose", metadata={"n": 0})
    start = asyncio.Event()

    async def increment() -> None:
        await start.wait()
        got = (await client.get("/memories/loose")).json()
        await asyncio.sleep(0)
        r = await client.patch("/memories/loose", json={"metadata": {"n": got["metadata"]["n"] + 1}})
        assert r.status_code == 200

    tasks = [asyncio.create_task(increment()) for _ in range(WRITERS)]
    start.set()
    await asyncio.gather(*tasks)
    assert (await client.get("/memories/loose")).json()["metadata"]["n"] < WRITERS


async def test_the_kit_client_passes_if_version(service):
    import httpx

    from memory_spine.api import create_app

    transport = httpx.ASGITransport(app=create_app(service))
    async with MemoryClient("http://memory-spine", transport=transport, retries=0) as kit:
        await kit.ingest("a kit record", id="k", metadata={"n": 0})
        got = await kit.get("k")
        done = await kit.update("k", metadata={"n": 1}, if_version=got["version"])
        assert done["version"] > got["version"]
        with pytest.raises(PreconditionFailed) as err:
            await kit.update("k", metadata={"n": 2}, if_version=got["version"])
        assert err.value.current_version == done["version"] and err.value.status == 412
        with pytest.raises(PreconditionFailed):
            await kit.delete("k", if_version=got["version"])
        assert await kit.delete("k", if_version=done["version"]) == {"deleted": 1}
        with pytest.raises(NotFound):
            await kit.delete("k", if_version=done["version"])


async def test_the_mcp_tools_pass_if_version(service):
    import httpx
    from mcp import Client

    from memory_spine.api import create_app
    from memory_spine.mcp_server import build_server

    app = create_app(service)
    server = build_server(lambda: MemoryClient("http://memory-spine", transport=httpx.ASGITransport(app=app)))
    async with Client(server) as mcp:
        stored = (await mcp.call_tool("memory_store", {"content": "an mcp record", "id": "m"})).structured_content
        got = (await mcp.call_tool("memory_get", {"id": stored["id"]})).structured_content
        v = got["version"]
        done = await mcp.call_tool("memory_update", {"id": "m", "tags": ["a"], "if_version": v})
        assert not done.is_error and done.structured_content["version"] > v
        for name, args in (("memory_update", {"id": "m", "tags": ["b"]}), ("memory_delete", {"id": "m"})):
            stale = await mcp.call_tool(name, {**args, "if_version": v})
            assert stale.is_error and "precondition_failed" in stale.content[0].text, name
        assert (await mcp.call_tool("memory_get", {"id": "m"})).structured_content["tags"] == ["a"]
        gone = await mcp.call_tool("memory_delete", {"id": "m", "if_version": done.structured_content["version"]})
        assert gone.structured_content == {"deleted": 1}


def test_storage_writes_only_the_version_named(service):
    """The storage contract itself: a put or delete with a stale `if_version` changes nothing."""
    import time

    from memory_spine import validation
    from memory_spine.models import MemoryIn
    from memory_spine.storage.base import VersionChanged

    service.ingest(MemoryIn(id="s", content="storage level", metadata={"n": 0}))
    storage = service.storage
    v0 = storage.get("s", time.time())["version"]
    service.update("s", MemoryPatch(metadata={"n": 1}))
    v1 = storage.get("s", time.time())["version"]
    assert v1 != v0
    item = MemoryIn(id="s", content="storage level", metadata={"n": 99})
    rec = validation.record(service.settings, item, time.time())
    rec.if_version = v0
    with pytest.raises(VersionChanged):
        storage.put([rec])
    assert storage.delete(["s"], if_version=v0) == []
    assert storage.get("s", time.time())["metadata"] == {"n": 1}
    assert len(storage.delete(["s"], if_version=v1)) == 1
    assert storage.get("s", time.time()) is None
