"""Fencing, lease loss, run records and signals in workflow_kit, against the in-process service (fake embedder).

The process-level versions (a SIGSTOPped worker, a sync step blocking three leases, kill -9) are in
tests/integration/test_kit_fencing.py.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from workflow_kit import (
    Autonomy,
    BudgetExceeded,
    LeaseLost,
    MemoryClient,
    StaleFence,
    WorkflowSignal,
    WorkflowStopped,
    charge,
    idempotent,
    run_workflow,
)
from workflow_kit.autonomy import Ceiling


@pytest.fixture
async def client(app):
    async with MemoryClient("http://memory-spine", transport=httpx.ASGITransport(app=app)) as c:
        yield c


async def test_checkpoints_carry_the_fence_and_a_taken_over_run_stops_before_its_next_step(client):
    ran: list[str] = []

    async def one():
        ran.append("one")
        # Another worker takes the claim over while this step runs (as after a pause longer than the lease):
        # simulated by releasing our lease with its token from outside and claiming the key anew.
        assert isinstance((await client.kit.get_claim("workflow:wf-taken"))["fence"], int)
        await client.kit.release("workflow:wf-taken", lease_token=_lease_token[0])
        await client.kit.claim("workflow:wf-taken", holder="usurper", lease_seconds=60)
        return 1

    async def two():
        ran.append("two")
        return 2

    _lease_token: list[str] = []
    original = client.kit.claim

    async def spy(key, **kw):
        got = await original(key, **kw)
        if key == "workflow:wf-taken" and kw.get("holder") != "usurper" and "lease_token" in got:
            _lease_token.append(got["lease_token"])
        return got

    client.kit.claim = spy  # type: ignore[method-assign]
    with pytest.raises(LeaseLost) as info:
        await run_workflow(client, "wf-taken", [one, two], lease_seconds=30, trace=False)
    assert ran == ["one"]  # never started `two`
    assert "fenced out" in str(info.value)
    assert await client.latest_checkpoint("wf-taken") is None  # its checkpoint was refused
    assert info.value.run.status == "lease_lost"  # type: ignore[attr-defined]


async def test_a_write_with_a_stale_fence_is_refused_over_http(client):
    first = await client.kit.claim("workflow:f", lease_seconds=0.2)
    await asyncio.sleep(0.3)
    second = await client.kit.claim("workflow:f", lease_seconds=30)
    with pytest.raises(StaleFence):
        await client.checkpoint("f", "s", {"result": 1}, fence={"key": "workflow:f", "token": first["fence"]})
    await client.checkpoint("f", "s", {"result": 2}, fence={"key": "workflow:f", "token": second["fence"]})
    assert (await client.latest_checkpoint("f"))["metadata"]["result"] == 2


async def test_a_renewal_that_finds_the_lease_gone_stops_the_run(client):
    async def one():
        await asyncio.sleep(0.5)  # async: the renewal runs every 0.1 s beside it
        return 1

    async def two():
        return 2

    # A renewal answered lease_lost (the lease lapsed while the process was paused and another took it).
    original = client.kit.claim

    async def refuse_renewal(key, **kw):
        if kw.get("lease_token") and key == "workflow:wf-renew":
            from workflow_kit.errors import LeaseRejected

            raise LeaseRejected("HTTP 409: the lease was lost", status=409)
        return await original(key, **kw)

    client.kit.claim = refuse_renewal  # type: ignore[method-assign]
    with pytest.raises(LeaseLost, match="renewal refused") as info:
        await run_workflow(client, "wf-renew", [one, two], lease_seconds=0.3, trace=False)
    assert info.value.run.ran == ["one"]  # type: ignore[attr-defined]


async def test_sync_steps_run_off_the_event_loop(client):
    beats = []

    async def heartbeat():
        for _ in range(20):
            beats.append(time.monotonic())
            await asyncio.sleep(0.01)

    def blocking():
        time.sleep(0.3)
        return "done"

    task = asyncio.create_task(heartbeat())
    run = await run_workflow(client, "wf-sync", [blocking], trace=False)
    await task
    assert run.result == "done"
    assert max(b - a for a, b in zip(beats, beats[1:], strict=False)) < 0.2  # the loop kept beating


async def test_sync_idempotent_function_runs_in_a_thread_once(client):
    calls = []

    def send(params):
        calls.append(params)
        time.sleep(0.05)
        return {"sent": params["to"]}

    got = await asyncio.gather(*(idempotent(client, "send", {"to": "ops"}, send) for _ in range(3)))
    assert got == [{"sent": "ops"}] * 3 and len(calls) == 1


async def test_spend_of_failed_runs_counts_against_the_ceiling(client):
    attempts = []

    async def costly():
        attempts.append(1)
        charge(cost=0.4)
        raise RuntimeError("flaky")

    autonomy = Autonomy(ceiling=Ceiling(cost=1.0))
    for _ in range(2):
        with pytest.raises(RuntimeError):
            await run_workflow(client, "wf-spend", [costly], autonomy=autonomy, trace=False)
    with pytest.raises(BudgetExceeded):
        await run_workflow(client, "wf-spend", [costly], autonomy=autonomy, trace=False)
    assert len(attempts) == 3  # the third went over 1.0 (0.8 + 0.4) at its charge, not after three more


async def test_run_records_status_and_a_failure_carries_its_run_and_trace(client):
    async def ok():
        return 1

    async def boom():
        raise ValueError("nope")

    with pytest.raises(ValueError) as info:
        await run_workflow(client, "wf-runs", [ok, boom])
    failed = info.value.run  # type: ignore[attr-defined]
    assert failed.status == "failed" and failed.error == "ValueError: nope" and failed.ran == ["ok"]
    assert info.value.trace_id == failed.trace_id and failed.trace_id  # type: ignore[attr-defined]
    assert any(failed.trace_id in note for note in info.value.__notes__)

    async def fixed():
        return 2

    run = await run_workflow(client, "wf-runs", [ok, ("boom", fixed)])
    assert run.status == "completed" and run.error is None
    assert run.resumed_after == "ok" and run.resumed_from == "boom"  # the step it resumed at
    records = (await client.kit.list_keys("run:wf-runs:"))["results"]
    by_id = {r["metadata"]["run_id"]: r["metadata"] for r in records}
    assert by_id[failed.run_id]["status"] == "failed" and by_id[run.run_id]["status"] == "completed"
    assert by_id[run.run_id]["trace_id"] == run.trace_id and by_id[run.run_id]["holder"] == run.holder


async def test_signals_get_past_except_exception(client):
    async def swallower():
        try:
            raise WorkflowStopped("wf-sig", None, "swallower")
        except Exception:  # the kind of handler that used to hide a stop
            return "swallowed"

    with pytest.raises(WorkflowSignal):
        await run_workflow(client, "wf-sig", [swallower], trace=False)


async def test_a_dedup_record_cannot_be_written_once_the_claim_was_taken_over(client):
    from workflow_kit import dedup_key

    key = f"dedup:{dedup_key('charge', {'order': 7})}"
    tokens: list[str] = []
    original = client.kit.claim

    async def spy(k, **kw):
        got = await original(k, **kw)
        if k == key and "lease_token" in got:
            tokens.append(got["lease_token"])
        return got

    client.kit.claim = spy  # type: ignore[method-assign]

    async def charge_card(params):
        # While the action runs, its lease is lost and another worker takes the key (a frozen holder's fate).
        await client.kit.release(key, lease_token=tokens[0])
        await original(key, holder="other", lease_seconds=60)
        return {"charged": params["order"]}

    with pytest.raises(LeaseLost):
        await idempotent(client, "charge", {"order": 7}, charge_card)
    assert await client.kit.find_key(key) is None  # the stale holder's result was not recorded


async def test_a_crashed_runs_lease_kept_in_its_journal_is_given_back_at_once(client, tmp_path):
    from workflow_kit import Journal

    journal = Journal(tmp_path / "journal")
    dead = await client.kit.claim("workflow:wf-kept", holder="crashed", lease_seconds=60)  # the crashed run's claim
    journal.keep_lease("wf-kept", "workflow:wf-kept", dead["lease_token"])

    async def work():
        return (await client.kit.get_claim("workflow:wf-kept"))["fence"]

    started = time.monotonic()
    run = await run_workflow(client, "wf-kept", [work], journal=journal, trace=False)
    assert time.monotonic() - started < 5  # not the 60 s lease
    assert run.result > dead["fence"]  # the new run claimed anew: a new fence
    assert journal.kept_lease("wf-kept") is None  # given back at the end
    # Without the token (another host's crash) the lease is waited out: the name alone proves nothing.
    await client.kit.claim("workflow:wf-other", holder="crashed", lease_seconds=0.5)
    started = time.monotonic()
    await run_workflow(client, "wf-other", [("other", lambda: 1)], journal=journal, holder="crashed", trace=False)
    assert time.monotonic() - started >= 0.4
