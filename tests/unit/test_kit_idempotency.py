"""workflow_kit.idempotency: the seed's key, windows on a fake clock, claims under a race, failures, leases.
In-process service, fake embedder. Lease tests wait on the service's real clock (a few hundred ms)."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import pathlib
import time
import types

import httpx
import pytest

from workflow_kit import ClaimTimeout, MemoryClient, NotJSON, WorkflowKitError, dedup_key, idempotent
from workflow_kit.errors import NotFound
from workflow_kit.idempotency import current_key

SEED = pathlib.Path(__file__).parents[1] / "integration" / "seed_snippets.py"


@pytest.fixture
def transport(app):
    return httpx.ASGITransport(app=app)


@pytest.fixture
async def client(transport):
    async with MemoryClient("http://memory-spine", transport=transport) as c:
        yield c


def seed_key(action, params):
    key_source = f"{action}:{json.dumps(params, sort_keys=True)}"
    return hashlib.sha256(key_source.encode()).hexdigest()[:16]


class Counter:
    def __init__(self, result="sent"):
        self.calls: list[dict] = []
        self.result = result

    async def __call__(self, params):
        self.calls.append(params)
        return self.result


def test_key_is_the_seeds_and_a_window_changes_it():
    params = {"channel": "#ops", "text": "deployed", "n": [1, 2]}
    assert dedup_key("send_slack", params) == seed_key("send_slack", params)
    assert dedup_key("send_slack", {"b": 1, "a": 2}) == dedup_key("send_slack", {"a": 2, "b": 1})
    hourly = [dedup_key("send_slack", params, window_seconds=3600, now=t) for t in (7200, 10799.9, 10800)]
    assert hourly[0] == hourly[1] != hourly[2]
    assert hourly[0] != dedup_key("send_slack", params)
    source = f"send_slack:{json.dumps(params, sort_keys=True)}|window=3600:2"  # the documented form
    assert hourly[0] == hashlib.sha256(source.encode()).hexdigest()[:16]
    # An hourly and a daily window with the same index do not share a key.
    assert dedup_key("a", {}, window_seconds=3600, now=0) != dedup_key("a", {}, window_seconds=86400, now=0)
    with pytest.raises(NotJSON, match="params of action 'a'"):
        dedup_key("a", {"when": object()})


async def test_runs_once_and_writes_the_seeds_record(client):
    send = Counter({"ts": "123.45"})
    params = {"channel": "#ops", "text": "deployed"}
    seen_keys = []

    async def send_with_key(p):
        seen_keys.append(current_key())  # what the action would send as an Idempotency-Key header
        return await send(p)

    first = await idempotent(client, "send_slack", params, send_with_key)
    second = await idempotent(client, "send_slack", params, send)
    assert first == second == {"ts": "123.45"}
    assert send.calls == [params]
    key = seed_key("send_slack", params)
    assert seen_keys == [key] and current_key() is None
    record = await client.kit.get_key(f"dedup:{key}")
    assert record["content"] == f"dedup:{key} action=send_slack"
    assert record["tags"] == ["dedup", "idempotency", "send_slack"]
    assert {"dedup_key": key, "action": "send_slack", "result": {"ts": "123.45"}}.items() <= record["metadata"].items()
    with pytest.raises(NotFound):  # released after the record was written
        await client.kit.get_claim(f"dedup:{key}")


async def test_the_kit_honours_the_seeds_records_and_keeps_its_own_apart(client, transport):
    spec = importlib.util.spec_from_file_location("seed_snippets_idem", SEED)
    seed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(seed)
    seed.httpx = types.SimpleNamespace(AsyncClient=lambda: httpx.AsyncClient(transport=transport))

    kit_side, seed_side = Counter("kit"), Counter("seed")
    # A dedup record the seed wrote (or the kit, before namespaces) in `default` is honoured: not done again.
    assert await seed.idempotent_action("deploy", {"env": "staging"}, seed_side) == "seed"
    assert await idempotent(client, "deploy", {"env": "staging"}, kit_side) == "seed"
    # The kit's own go to `_kit/default`: out of users' searches of `default` (where the seed's code looks).
    assert await idempotent(client, "create_issue", {"repo": "a/b"}, kit_side) == "kit"
    key = f"dedup:{dedup_key('create_issue', {'repo': 'a/b'})}"
    assert await client.kit.find_key(key) is not None and await client.find_key(key) is None
    assert len(kit_side.calls) == 1 and len(seed_side.calls) == 1


async def test_racing_callers_run_it_once_and_share_the_result(client):
    started, go = asyncio.Event(), asyncio.Event()
    calls = []

    async def deploy(params):
        calls.append(params)
        started.set()
        await go.wait()
        return {"deployed": params["sha"]}

    first = asyncio.create_task(idempotent(client, "deploy", {"sha": "abc"}, deploy, holder="w1"))
    await started.wait()
    second = asyncio.create_task(idempotent(client, "deploy", {"sha": "abc"}, deploy, holder="w2"))
    for _ in range(50):  # let the second one find the claim taken and start waiting
        await asyncio.sleep(0)
    assert not second.done()
    go.set()
    assert await asyncio.gather(first, second) == [{"deployed": "abc"}] * 2
    assert len(calls) == 1


async def test_a_window_lets_the_action_run_again_next_window(client):
    now = [600_000.0]  # the start of minute-window 10000
    report = Counter("report")

    def run():
        return idempotent(client, "daily_report", {"team": "ops"}, report, window_seconds=60, clock=lambda: now[0])

    await run()
    now[0] = 600_059.9  # still window 10000
    await run()
    assert len(report.calls) == 1
    now[0] = 600_060.0  # window 10001
    await run()
    assert len(report.calls) == 2
    key = dedup_key("daily_report", {"team": "ops"}, window_seconds=60, now=now[0])
    record = await client.kit.get_key(f"dedup:{key}")
    assert record["metadata"]["window_seconds"] == 60


async def test_a_failure_releases_the_claim_records_the_error_and_allows_a_retry(client):
    attempts = []

    async def flaky(params):
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("slack is down")
        return "ok"

    with pytest.raises(ConnectionError, match="slack is down"):
        await idempotent(client, "notify", {"x": 1}, flaky)
    key = dedup_key("notify", {"x": 1})
    with pytest.raises(NotFound):
        await client.kit.get_claim(f"dedup:{key}")
    assert await client.kit.find_key(f"dedup:{key}") is None
    errors = (await client.kit.list(tags=["dedup-error"]))["results"]
    assert len(errors) == 1
    assert errors[0]["metadata"]["error_type"] == "ConnectionError" and errors[0]["metadata"]["dedup_key"] == key
    assert await idempotent(client, "notify", {"x": 1}, flaky) == "ok"
    assert len(attempts) == 2


async def test_an_expired_lease_lets_a_crashed_holders_action_run(client):
    key = dedup_key("charge", {"order": 7})
    await client.kit.claim(f"dedup:{key}", holder="crashed-worker", lease_seconds=0.3)
    charge = Counter("charged")
    started = time.monotonic()
    assert await idempotent(client, "charge", {"order": 7}, charge, wait_timeout=5) == "charged"
    assert time.monotonic() - started >= 0.25  # it waited for the lease, then ran
    assert len(charge.calls) == 1


async def test_waiting_is_bounded(client):
    key = dedup_key("charge", {"order": 8})
    await client.kit.claim(f"dedup:{key}", holder="slow-worker", lease_seconds=60)
    charge = Counter()
    with pytest.raises(ClaimTimeout, match="slow-worker") as info:
        await idempotent(client, "charge", {"order": 8}, charge, wait_timeout=0.2)
    assert info.value.holder == "slow-worker" and charge.calls == []


async def test_a_long_action_keeps_its_claim_alive(client):
    calls = []

    async def slow(params):
        calls.append(1)
        await asyncio.sleep(0.7)  # longer than two leases: only the heartbeat keeps others out
        return "done"

    first = asyncio.create_task(idempotent(client, "slow", {}, slow, lease_seconds=0.3, holder="a"))
    await asyncio.sleep(0.45)
    second = await idempotent(client, "slow", {}, slow, lease_seconds=0.3, holder="b", wait_timeout=5)
    assert second == await first == "done"
    assert len(calls) == 1


async def test_a_non_json_result_is_recorded_as_null_and_reported(client):
    ran = []

    async def opaque(params):
        ran.append(1)
        return object()

    with pytest.raises(NotJSON, match="result of action 'opaque'"):
        await idempotent(client, "opaque", {}, opaque)
    assert await idempotent(client, "opaque", {}, opaque) is None  # the side effect is not repeated
    assert len(ran) == 1


async def test_decorator_forms(client, transport):
    sent = []

    @idempotent
    async def send_slack(channel: str, text: str = "hi"):
        sent.append((channel, text))
        return len(sent)

    @idempotent("post-comment", exclude=("session",), client=client)
    def post_comment(pr: int, session: object = None):
        sent.append(("pr", pr))
        return f"posted on {pr}"

    assert await send_slack("#ops") == 1  # current_client(): the `async with` in the fixture
    assert await send_slack(channel="#ops", text="hi") == 1  # same bound arguments, same key
    assert await send_slack("#dev") == 2
    assert await post_comment(5, session=object()) == await post_comment(5) == "posted on 5"
    assert sent == [("#ops", "hi"), ("#dev", "hi"), ("pr", 5)]
    record = await client.kit.get_key(f"dedup:{dedup_key('send_slack', {'channel': '#ops', 'text': 'hi'})}")
    assert record["metadata"]["result"] == 1

    async def elsewhere():  # a fresh context: no client anywhere
        with pytest.raises(WorkflowKitError, match="no MemoryClient"):
            await send_slack("#new")

    await asyncio.get_running_loop().create_task(elsewhere(), context=__import__("contextvars").Context())
