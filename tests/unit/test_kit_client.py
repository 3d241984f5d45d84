"""workflow_kit.client: retries, errors, headers (MockTransport); every endpoint in-process (ASGI)."""

from __future__ import annotations

import json

import httpx
import pytest

import workflow_kit
from workflow_kit import errors
from workflow_kit.client import MemoryClient, current_client


@pytest.fixture
async def client(app):
    """A MemoryClient over the in-process app of tests/conftest.py (fake embedder, temp dir)."""
    async with MemoryClient("http://memory-spine", transport=httpx.ASGITransport(app=app)) as c:
        yield c


def mock_client(handler, **kw) -> tuple[MemoryClient, list[float]]:
    """A client over MockTransport whose backoff sleeps are recorded instead of slept."""
    c = MemoryClient("http://ms", transport=httpx.MockTransport(handler), **kw)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    c._sleep = sleep
    return c, slept


# -- transport-level behaviour ------------------------------------------------------------------------------


async def test_retries_5xx_then_succeeds_with_growing_backoff():
    calls = []

    def handler(request):
        calls.append(request)
        if len(calls) < 3:
            return httpx.Response(503, json={"status": "loading"})
        return httpx.Response(200, json={"status": "ok", "version": "x"})

    c, slept = mock_client(handler)
    assert (await c.health())["status"] == "ok"
    assert len(calls) == 3
    assert len(slept) == 2 and slept[1] > slept[0]  # exponential, not flat


async def test_gives_up_after_retries_with_service_unavailable():
    calls = []

    def handler(request):
        calls.append(request)
        return httpx.Response(503, json={"error": {"type": "not_ready", "message": "loading"}})

    c, _ = mock_client(handler, retries=2)
    with pytest.raises(errors.ServiceUnavailable) as info:
        await c.stats()
    assert len(calls) == 3 and info.value.status == 503


async def test_connection_errors_are_retried_and_translated():
    calls = []

    def handler(request):
        calls.append(request)
        raise httpx.ConnectError("refused", request=request)

    c, slept = mock_client(handler, retries=3)
    with pytest.raises(errors.ServiceUnavailable, match="cannot reach"):
        await c.health()
    assert len(calls) == 4 and len(slept) == 3


@pytest.mark.parametrize(
    ("status", "kind", "cls"),
    [
        (422, "invalid_input", errors.InvalidInput),
        (401, "unauthorized", errors.Unauthorized),
        (404, "not_found", errors.NotFound),
        (409, "conflict", errors.Conflict),
        (413, "payload_too_large", errors.PayloadTooLarge),
        (507, "storage_full", errors.StorageFull),
    ],
)
async def test_4xx_and_permanent_5xx_are_not_retried(status, kind, cls):
    calls = []

    def handler(request):
        calls.append(request)
        return httpx.Response(status, json={"error": {"type": kind, "message": "m", "field": "limit"}})

    c, _ = mock_client(handler)
    with pytest.raises(cls) as info:
        await c.search("x")
    assert len(calls) == 1
    assert info.value.status == status
    if cls is errors.InvalidInput:
        assert info.value.field == "limit"


async def test_unknown_error_body_falls_back_to_status():
    c, _ = mock_client(lambda r: httpx.Response(404, text="<html>nope</html>"))
    with pytest.raises(errors.NotFound, match="nope"):
        await c.get("x")


async def test_token_url_and_ids(monkeypatch):
    seen = []

    def handler(request):
        seen.append(request)
        return httpx.Response(200, json={"id": "i", "key": None, "created": True})

    monkeypatch.setenv("MEMORY_SPINE_TOKEN", "s3cret")
    monkeypatch.setenv("MEMORY_SPINE_URL", "http://from-env:1")
    c = MemoryClient(transport=httpx.MockTransport(handler))
    assert c.base_url == "http://from-env:1"
    await c.ingest("hello")
    await c.ingest("hello")
    assert seen[0].headers["authorization"] == "Bearer s3cret"
    first, second = (json.loads(r.content) for r in seen)
    # Every write carries an id, so a retried write upserts; two calls are two records.
    assert first["id"] and first["id"] != second["id"]
    monkeypatch.delenv("MEMORY_SPINE_URL")
    assert MemoryClient().base_url == "http://127.0.0.1:8788"


async def test_retried_ingest_sends_the_same_id():
    bodies = []

    def handler(request):
        bodies.append(json.loads(request.content))
        if len(bodies) == 1:
            return httpx.Response(500, json={"error": {"type": "internal", "message": "boom"}})
        return httpx.Response(200, json={"id": bodies[-1]["id"], "key": None, "created": True})

    c, _ = mock_client(handler)
    await c.ingest("x")
    assert len(bodies) == 2 and bodies[0]["id"] == bodies[1]["id"]


async def test_keys_are_quoted_into_the_path():
    paths = []

    def handler(request):
        paths.append(request.url.raw_path.decode())
        return httpx.Response(404, json={"error": {"type": "not_found", "message": "no"}})

    c, _ = mock_client(handler)
    assert await c.find_key("checkpoint:wf 1/x:step") is None
    assert paths == ["/keys/checkpoint:wf%201%2Fx:step"]


async def test_current_client_is_set_inside_the_block():
    async with MemoryClient("http://ms", transport=httpx.MockTransport(lambda r: httpx.Response(200))) as c:
        assert current_client() is c
    assert current_client() is None


def test_workflow_ids_that_would_break_keys_are_refused():
    from workflow_kit.client import check_step_name, check_workflow_id

    for bad in ("", "a b", "a:b", "tab\t"):
        with pytest.raises(errors.InvalidInput):
            check_workflow_id(bad)
    with pytest.raises(errors.InvalidInput):
        check_step_name("x:y")
    check_workflow_id("pr-42_review.v2")


def test_public_names():
    assert sorted(workflow_kit.__all__) == sorted(set(workflow_kit.__all__))
    for name in workflow_kit.__all__:
        assert getattr(workflow_kit, name).__doc__, name
    assert issubclass(errors.NotJSON, errors.InvalidInput)
    assert issubclass(errors.ServiceUnavailable, errors.ServiceError)
    assert all(
        issubclass(getattr(errors, n), errors.WorkflowKitError | errors.WorkflowSignal)
        for n in workflow_kit.__all__
        if n[0].isupper() and hasattr(errors, n)
    )
    # Signals stop the run: no `except Exception` may swallow them.
    for signal in (errors.WorkflowPaused, errors.WorkflowStopped, errors.AutonomyError, errors.LeaseLost):
        assert issubclass(signal, errors.WorkflowSignal) and not issubclass(signal, Exception)


# -- every endpoint, in-process ------------------------------------------------------------------------------


async def test_records_round_trip(client):
    a = await client.ingest("the deploy failed on staging", tags=["deploy"], metadata={"env": "staging"})
    assert a["created"] is True
    got = await client.get(a["id"])
    assert got["content"] == "the deploy failed on staging" and got["tags"] == ["deploy"]
    updated = await client.update(a["id"], metadata={"env": None, "ok": False}, importance="high")
    assert updated["metadata"] == {"ok": False} and updated["importance"] == "high"
    batch = await client.ingest_batch([{"content": "one", "tags": ["b"]}, {"content": "two", "tags": ["b"]}])
    assert len(batch["ids"]) == 2
    hits = await client.search("deploy staging", limit=5)
    assert hits["results"] and "score" in hits["results"][0]
    page = await client.list(limit=1, tags=["b", "deploy"], order="oldest")
    assert page["results"][0]["content"] == "the deploy failed on staging"
    rest = await client.list(limit=5, tags=["b", "deploy"], order="oldest", cursor=page["next_cursor"])
    assert [m["content"] for m in rest["results"]] == ["one", "two"]
    assert (await client.delete_where(tags=["b"], dry_run=True)) == {"would_delete": 2}
    assert (await client.delete_where(tags=["b"])) == {"deleted": 2}
    assert (await client.delete(a["id"])) == {"deleted": 1}
    with pytest.raises(errors.NotFound):
        await client.get(a["id"])
    stats = await client.stats()
    assert stats["total_memories"] == 0
    assert (await client.health())["status"] == "ok"
    assert "memory" in (await client.metrics()).lower()


async def test_keys_and_claims(client):
    await client.ingest("x", key="job:1")
    assert (await client.get_key("job:1"))["content"] == "x"
    assert [m["key"] for m in (await client.list_keys("job:"))["results"]] == ["job:1"]
    with pytest.raises(errors.NotFound):
        await client.get_key("job:2")

    claim = await client.claim("lock:a", holder="w1", lease_seconds=30)
    assert claim["holder"] == "w1"
    with pytest.raises(errors.Conflict) as info:
        await client.claim("lock:a", holder="w2")
    assert info.value.claim["holder"] == "w1"
    renewed = await client.claim("lock:a", lease_token=claim["lease_token"])
    assert renewed["holder"] == "w1" and renewed["fence"] == claim["fence"]
    assert (await client.get_claim("lock:a"))["holder"] == "w1"
    with pytest.raises(errors.LeaseRejected):
        await client.release("lock:a", lease_token="not-mine")
    with pytest.raises(errors.LeaseRejected):
        await client.claim("lock:a", lease_token="not-mine")
    assert (await client.release("lock:a", lease_token=claim["lease_token"])) == {"released": True}
    with pytest.raises(errors.NotFound):
        await client.get_claim("lock:a")


async def test_invalid_input_names_the_field(client):
    with pytest.raises(errors.InvalidInput) as info:
        await client.search("x", limit=1000)
    assert info.value.field == "limit" and info.value.status == 422
    assert str(info.value).startswith("limit: ") and not info.value.problem.startswith("limit")


async def test_checkpoints_are_the_seeds_records(client):
    await client.checkpoint("wf-1", "fetch", {"result": 1})
    await client.checkpoint("wf-1", "review", {"result": 2})
    await client.checkpoint("wf-12", "fetch", {"result": 3})
    latest = await client.latest_checkpoint("wf-1")
    assert latest["content"] == "checkpoint:wf-1:review"
    assert latest["metadata"] == {"workflow_id": "wf-1", "step": "review", "result": 2}
    assert latest["tags"] == ["checkpoint", "workflow", "wf-1"]
    assert (await client.latest_checkpoint("wf-1", "fetch"))["metadata"]["result"] == 1
    assert await client.latest_checkpoint("wf-2") is None
    # They are the kit's records (`_kit/default`): the seed's resume_from_checkpoint query, run in the kit's
    # namespace, finds the same newest record; a user's search in `default` finds none of them.
    seed = await client.kit.search("checkpoint:wf-1", limit=1)
    assert seed["results"][0]["metadata"]["step"] == "review" and seed["results"][0]["namespace"] == "_kit/default"
    assert (await client.search("checkpoint:wf-1", limit=1))["results"] == []


async def test_bearer_token_against_a_service_that_wants_one(tmp_path, monkeypatch):
    from memory_spine.api import create_app
    from memory_spine.config import Settings
    from memory_spine.service import MemoryService

    monkeypatch.delenv("MEMORY_SPINE_TOKEN", raising=False)
    service = MemoryService.open(Settings(data_dir=tmp_path / "d", embedder="fake", token="s3cret"))
    try:
        transport = httpx.ASGITransport(app=create_app(service))
        async with MemoryClient("http://ms", transport=transport) as anonymous:
            assert (await anonymous.health())["status"] == "ok"  # /health stays open
            with pytest.raises(errors.Unauthorized) as info:
                await anonymous.ingest("x")
            assert info.value.status == 401
        async with MemoryClient("http://ms", transport=transport, token="wrong") as wrong:
            with pytest.raises(errors.Unauthorized):
                await wrong.stats()
        monkeypatch.setenv("MEMORY_SPINE_TOKEN", "s3cret")
        async with MemoryClient("http://ms", transport=transport) as from_env:
            assert (await from_env.ingest("x"))["created"] is True
    finally:
        service.close()
