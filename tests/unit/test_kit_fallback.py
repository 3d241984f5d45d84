"""workflow_kit.fallback: primary -> cheaper -> cached; the path taken on the span; AllFailed with every error;
control-flow signals are not swallowed."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from workflow_kit import (
    Agent,
    AllFailed,
    CircuitBreaker,
    DeadlineExceeded,
    Metrics,
    ScopeViolation,
    WorkflowPaused,
    constant,
    fallback,
    tracing,
)
from workflow_kit.fallback import FallbackResult

EXPORTER = InMemorySpanExporter()


@pytest.fixture(autouse=True)
def spans():
    tracing.install()
    if not getattr(tracing, "_test_fallback_exporter", False):
        tracing._provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
        tracing._test_fallback_exporter = True
    EXPORTER.clear()
    return EXPORTER


def chain_span(name: str = "fallback"):
    return [s for s in EXPORTER.get_finished_spans() if s.name == f"fallback {name}"][-1]


async def primary(text: str) -> str:
    raise RuntimeError("model overloaded")


async def cheaper(text: str) -> str:
    return f"short summary of {text}"


async def test_the_first_link_that_answers_wins_and_the_path_is_on_the_span():
    calls = []

    async def first(text):
        calls.append("first")
        return "full"

    assert await fallback([first, cheaper], "diff") == "full"
    assert calls == ["first"]
    assert chain_span().attributes["workflow_kit.fallback.path"] == ("first:ok",)
    assert chain_span().attributes["workflow_kit.fallback.degraded"] is False

    out = await fallback([primary, cheaper, constant("cached")], "diff", with_path=True)
    assert out == FallbackResult("short summary of diff", "cheaper", ["primary:RuntimeError", "cheaper:ok"])
    assert out.degraded
    span = chain_span()
    assert span.attributes["workflow_kit.fallback.path"] == ("primary:RuntimeError", "cheaper:ok")
    assert span.attributes["workflow_kit.fallback.used"] == "cheaper"
    assert span.attributes["workflow_kit.fallback.degraded"] is True
    [event] = [e for e in span.events if e.name == "fallback.link_failed"]
    assert event.attributes["link"] == "primary" and "model overloaded" in event.attributes["error"]


async def test_an_open_breaker_or_a_timeout_falls_through_to_the_cached_answer():
    breaker = CircuitBreaker("llm", failure_threshold=1, metrics=Metrics())
    llm = Agent("llm", primary, breaker=breaker, metrics=Metrics())

    async def slow(text):
        import asyncio

        await asyncio.sleep(5)

    slow_agent = Agent("slow", slow, timeout=0.02, metrics=Metrics())
    assert await fallback([llm, ("cached", lambda text: "cached")], "x") == "cached"  # RuntimeError, opens
    out = await fallback([llm, slow_agent, constant({"summary": "degraded"})], "x", with_path=True)
    assert out.value == {"summary": "degraded"}
    assert out.path == ["llm:CircuitOpen", "slow:DeadlineExceeded", "cached:ok"]


async def test_all_links_failing_raises_all_failed_with_each_error():
    async def also_bad(text):
        raise DeadlineExceeded("agent cheap", 1.0)

    with pytest.raises(AllFailed) as info:
        await fallback([primary, also_bad], "x", name="summary")
    assert [(n, type(e).__name__) for n, e in info.value.attempts] == [
        ("primary", "RuntimeError"),
        ("also_bad", "DeadlineExceeded"),
    ]
    assert chain_span("summary").attributes["workflow_kit.fallback.path"] == (
        "primary:RuntimeError",
        "also_bad:DeadlineExceeded",
    )


@pytest.mark.parametrize(
    "signal", [WorkflowPaused("wf", {"reason": "person needed"}), ScopeViolation("tool", "rm", ["ls"])]
)
async def test_control_flow_signals_end_the_chain(signal):
    later = []

    async def stops(text):
        raise signal

    with pytest.raises(type(signal)):
        await fallback([stops, lambda text: later.append(text)], "x")
    assert later == []
