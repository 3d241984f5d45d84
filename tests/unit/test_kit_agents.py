"""workflow_kit.agents: an Agent call is a traced span with its breaker, timeout budget and metrics around it."""

from __future__ import annotations

import asyncio

import pytest

from workflow_kit import Agent, CircuitBreaker, CircuitOpen, DeadlineExceeded, Metrics, agent, charge


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_failures_trip_the_breaker_rejections_are_counted_and_it_recovers_after_the_cooldown():
    clock, m = Clock(), Metrics()
    healthy = {"up": False}

    async def api(q: str) -> str:
        if not healthy["up"]:
            raise ConnectionError("503 from upstream")
        return f"answer to {q}"

    llm = Agent("llm", api, breaker=CircuitBreaker("llm", cooldown=30, clock=clock, metrics=m), metrics=m)
    for _ in range(3):
        with pytest.raises(ConnectionError):
            await llm("q")
    with pytest.raises(CircuitOpen):
        await llm("q")
    snap = m.snapshot()["llm"]
    assert (snap["invocations"], snap["errors"], snap["rejected"]) == (4, 3, 1)
    healthy["up"] = True
    clock.now += 30
    assert await llm("q") == "answer to q" and llm.breaker.state == "closed"


async def test_the_timeout_budget_and_sync_functions():
    @agent("slow", timeout=0.02, metrics=Metrics())
    async def slow() -> None:
        await asyncio.sleep(5)

    with pytest.raises(DeadlineExceeded, match="agent slow"):
        await slow()

    m = Metrics()
    sync = Agent("sync", lambda x: charge(tokens=x) or x * 2, metrics=m)
    assert await sync(21) == 42
    assert m.snapshot()["sync"]["tokens"] == 21 and sync.__name__ == "sync"


def test_every_part_2_module_exports_documented_names():
    import importlib

    for name in (
        "agents",
        "autonomy",
        "breaker",
        "budget",
        "fallback",
        "journal",
        "limits",
        "metrics",
        "shutdown",
        "patterns",
        "patterns.parallel",
        "patterns.routing",
        "patterns.self_improve",
        "patterns.sequential",
    ):
        module = importlib.import_module(f"workflow_kit.{name}")
        assert module.__doc__, name
        assert sorted(module.__all__) == sorted(set(module.__all__)), name
        for public in module.__all__:
            obj = getattr(module, public)
            assert isinstance(obj, str) or obj.__doc__, f"{name}.{public}"
