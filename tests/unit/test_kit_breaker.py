"""workflow_kit.breaker: closed -> open after N consecutive failures -> half-open after the cooldown (one trial)
-> closed on success / open on failure; transitions in logs, span events and metrics. A fake clock, no sleeps."""

from __future__ import annotations

import asyncio
import logging

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from workflow_kit import CircuitBreaker, CircuitOpen, InvalidInput, Metrics, tracing
from workflow_kit.breaker import CLOSED, HALF_OPEN, OPEN


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def boom() -> None:
    raise RuntimeError("dependency down")


async def fine() -> str:
    return "ok"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


def gauge(metrics: Metrics, name: str) -> float:
    return metrics.registry.get_sample_value("workflow_kit_breaker_state", {"breaker": name})


async def test_opens_after_three_consecutive_failures_and_refuses_calls(clock, metrics):
    b = CircuitBreaker("llm", clock=clock, metrics=metrics)
    assert (b.failure_threshold, b.cooldown, b.state) == (3, 30.0, CLOSED)
    for _ in range(2):
        with pytest.raises(RuntimeError):
            await b.call(boom)
    assert b.state == CLOSED and b.failures == 2
    with pytest.raises(RuntimeError):
        await b.call(boom)
    assert b.state == OPEN and gauge(metrics, "llm") == 2

    calls = []

    async def tracked() -> str:
        calls.append(1)
        return "ok"

    with pytest.raises(CircuitOpen) as info:
        await b.call(tracked)
    assert calls == []  # refused without calling
    assert info.value.retry_in == pytest.approx(30.0) and info.value.name == "llm"


async def test_half_open_after_cooldown_lets_one_trial_through_and_success_closes(clock, metrics):
    b = CircuitBreaker("llm", failure_threshold=3, cooldown=30, clock=clock, metrics=metrics)
    for _ in range(3):
        with pytest.raises(RuntimeError):
            await b.call(boom)
    clock.now += 29.9
    assert b.state == OPEN and b.retry_in() == pytest.approx(0.1)
    clock.now += 0.1
    assert b.state == HALF_OPEN and gauge(metrics, "llm") == 1

    gate = asyncio.Event()

    async def slow_trial() -> str:
        await gate.wait()
        return "recovered"

    trial = asyncio.create_task(b.call(slow_trial))
    await asyncio.sleep(0)
    with pytest.raises(CircuitOpen, match="trial"):  # only one trial at a time
        await b.call(fine)
    gate.set()
    assert await trial == "recovered"
    assert b.state == CLOSED and b.failures == 0 and gauge(metrics, "llm") == 0
    assert [(f, t) for f, t, _ in b.transitions] == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    assert [round(at - 1000.0, 1) for _, _, at in b.transitions] == [0.0, 30.0, 30.0]
    for to, n in ((OPEN, 1), (HALF_OPEN, 1), (CLOSED, 1)):
        value = metrics.registry.get_sample_value(
            "workflow_kit_breaker_transitions_total", {"breaker": "llm", "to": to}
        )
        assert value == n


async def test_a_failed_trial_reopens_for_another_cooldown(clock):
    b = CircuitBreaker("db", failure_threshold=1, cooldown=10, clock=clock, metrics=Metrics())
    with pytest.raises(RuntimeError):
        await b.call(boom)
    clock.now += 10
    with pytest.raises(RuntimeError):
        await b.call(boom)  # the trial
    assert b.state == OPEN and b.opened_at == clock.now
    clock.now += 9
    with pytest.raises(CircuitOpen):
        await b.call(fine)
    clock.now += 1
    assert await b.call(fine) == "ok" and b.state == CLOSED


async def test_only_consecutive_failures_count_and_answers_are_not_failures(clock):
    b = CircuitBreaker("svc", clock=clock, metrics=Metrics())
    for _ in range(2):
        with pytest.raises(RuntimeError):
            await b.call(boom)
    assert await b.call(fine) == "ok"
    assert b.failures == 0
    for _ in range(2):
        with pytest.raises(RuntimeError):
            await b.call(boom)
    assert b.state == CLOSED

    async def refused() -> None:
        raise InvalidInput("limit", "too big")  # the dependency is up and said no

    for _ in range(5):
        with pytest.raises(InvalidInput):
            await b.call(refused)
    assert b.state == CLOSED and b.failures == 0


async def test_a_cancelled_trial_gives_the_trial_back(clock):
    b = CircuitBreaker("svc", failure_threshold=1, cooldown=1, clock=clock, metrics=Metrics())
    with pytest.raises(RuntimeError):
        await b.call(boom)
    clock.now += 1
    task = asyncio.create_task(b.call(asyncio.sleep, 10))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert b.state == HALF_OPEN
    assert await b.call(fine) == "ok" and b.state == CLOSED


async def test_transitions_are_logged_and_span_events(clock, caplog):
    exporter = InMemorySpanExporter()
    tracing.install()
    tracing._provider.add_span_processor(SimpleSpanProcessor(exporter))
    b = CircuitBreaker("search-api", failure_threshold=2, cooldown=5, clock=clock, metrics=Metrics())
    caplog.set_level(logging.INFO, logger="workflow_kit.breaker")
    with tracing.span("agent call", kind="agent"):
        for _ in range(2):
            with pytest.raises(RuntimeError):
                await b.call(boom)
        clock.now += 5
        await b.call(fine)
    spans = [s for s in exporter.get_finished_spans() if s.name == "agent call"]
    events = [e for e in spans[-1].events if e.name == "circuit_breaker.state_change"]
    assert [(e.attributes["from"], e.attributes["to"]) for e in events] == [
        (CLOSED, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, CLOSED),
    ]
    assert (
        events[0].attributes["breaker"] == "search-api" and "2 consecutive failures" in events[0].attributes["reason"]
    )
    messages = [r.getMessage() for r in caplog.records if r.name == "workflow_kit.breaker"]
    assert "circuit breaker search-api: closed -> open" in messages[0]
    assert any("half_open -> closed" in m for m in messages)


def test_bad_settings_are_refused():
    with pytest.raises(InvalidInput):
        CircuitBreaker("x", failure_threshold=0)
    with pytest.raises(InvalidInput):
        CircuitBreaker("x", cooldown=-1)
