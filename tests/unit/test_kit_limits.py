"""workflow_kit.limits: rate limits per agent and per workflow (aiolimiter); waits are measured and counted."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from workflow_kit import Agent, InvalidInput, MemoryClient, Metrics, RateLimit, run_workflow


@pytest.fixture
async def kit(app):
    async with MemoryClient("http://memory-spine", transport=httpx.ASGITransport(app=app)) as c:
        yield c


async def test_a_burst_over_the_rate_waits_for_the_bucket():
    limit = RateLimit(4, per=0.2, name="llm")
    started = time.perf_counter()
    for _ in range(4):  # the bucket holds 4
        await limit.acquire()
    assert limit.waited == 0  # none of the four waited (no wall-clock bound: the machine may be busy)
    assert not limit.has_capacity()
    await limit.acquire()  # the 5th waits for one to leak out: 0.2 / 4 = 0.05 s
    waited = time.perf_counter() - started
    assert waited >= 0.04
    assert limit.waited >= 0.04


async def test_per_agent_limit_slows_that_agent_only():
    metrics = Metrics()
    limited = Agent("limited", lambda x: x, rate=RateLimit(2, per=0.2, name="limited"), metrics=metrics)
    free = Agent("free", lambda x: x, metrics=metrics)
    started = time.perf_counter()
    await asyncio.gather(*(free(i) for i in range(20)))
    # No upper bound on wall time (a busy machine makes any such bound flaky): the free agent never waited.
    assert metrics.registry.get_sample_value("workflow_kit_rate_limit_wait_seconds_count", {"limit": "free"}) is None
    await asyncio.gather(*(limited(i) for i in range(4)))  # 2 at once, then one per 0.1 s
    assert time.perf_counter() - started >= 0.15
    assert metrics.registry.get_sample_value("workflow_kit_rate_limit_wait_seconds_count", {"limit": "limited"}) >= 1


async def test_the_workflow_limit_is_shared_by_every_agent_call_in_the_run(kit):
    metrics = Metrics()
    a = Agent("a", lambda: "a", metrics=metrics)
    b = Agent("b", lambda: "b", metrics=metrics)

    async def step_one(ctx):
        return [await a(), await b(), await a()]

    started = time.perf_counter()
    await run_workflow(
        kit, "limits-1", [step_one], rate_limit=RateLimit(1, per=0.1, name="wf"), trace=False, metrics=metrics
    )
    assert time.perf_counter() - started >= 0.18  # 3 calls at 1 per 0.1 s: two waits
    assert metrics.registry.get_sample_value("workflow_kit_rate_limit_wait_seconds_count", {"limit": "wf"}) == 2


def test_bad_rates_are_refused():
    with pytest.raises(InvalidInput):
        RateLimit(0)
    with pytest.raises(InvalidInput):
        RateLimit(1, per=0)
