"""workflow_kit.metrics: per-agent p50/p95/p99, invocations, error rate, memory reads/writes, cost per
execution; Prometheus on its own registry; a readable report. In-process service."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import REGISTRY

from workflow_kit import Agent, MemoryClient, Metrics, charge, run_workflow


@pytest.fixture
async def kit(app):
    async with MemoryClient("http://memory-spine", transport=httpx.ASGITransport(app=app)) as c:
        yield c


def test_percentiles_are_nearest_rank_over_the_window():
    m = Metrics()
    for ms in range(1, 101):  # 1..100 ms
        m.observe_agent("a", ms / 1000)
    s = m.snapshot()["a"]
    assert (s["p50"], s["p95"], s["p99"]) == (0.050, 0.095, 0.099)
    assert s["invocations"] == 100 and s["error_rate"] == 0.0

    small = Metrics(window=10)
    for ms in range(1, 101):
        small.observe_agent("a", ms / 1000)
    assert small.snapshot()["a"]["p50"] == 0.095  # only the last 10 calls (91..100 ms)


def test_error_rate_counts_errors_and_rejections_and_cost_is_per_execution():
    m = Metrics()
    for outcome in ["ok", "ok", "error", "rejected"]:
        m.observe_agent("llm", 0.01, outcome, tokens=100 if outcome != "rejected" else 0, cost=0.02)
    s = m.snapshot()["llm"]
    assert s["invocations"] == 4 and s["errors"] == 1 and s["rejected"] == 1
    assert s["error_rate"] == 0.5
    assert s["cost"] == pytest.approx(0.08) and s["cost_per_execution"] == pytest.approx(0.08 / 3)
    assert s["tokens"] == 300


def test_own_registry_and_exposition():
    a, b = Metrics(), Metrics()  # two instances never clash (and never touch the global registry)
    a.observe_agent("x", 0.1)
    assert b.registry.get_sample_value("workflow_kit_agent_invocations_total", {"agent": "x", "outcome": "ok"}) is None
    assert REGISTRY.get_sample_value("workflow_kit_agent_invocations_total", {"agent": "x", "outcome": "ok"}) is None
    text = a.exposition().decode()
    for name in (
        "workflow_kit_agent_seconds_bucket",
        'workflow_kit_agent_invocations_total{agent="x",outcome="ok"} 1.0',
        "workflow_kit_memory_operations_total",
        "workflow_kit_breaker_state",
    ):
        assert name in text


async def test_a_workflow_counts_agents_memory_ops_and_cost(kit):
    m = Metrics()

    async def audit(diff: str) -> dict:
        await kit.search("prior findings " + diff, limit=3)  # a read, counted under the agent
        charge(tokens=1200, cost=0.012)
        return {"issues": 0}

    security = Agent("security", audit)

    async def fetch(ctx):
        return "+1 -1"

    async def review(ctx):
        return await security(ctx.outputs["fetch"])

    await run_workflow(kit, "metrics-1", [fetch, review], metrics=m, trace=False)
    snap = m.snapshot()
    assert snap["security"]["invocations"] == 1 and snap["security"]["memory_reads"] == 1
    assert snap["security"]["memory_writes"] == 0
    assert snap["security"]["cost_per_execution"] == pytest.approx(0.012) and snap["security"]["tokens"] == 1200
    assert snap["step:review"]["memory_writes"] == 1  # its checkpoint
    assert snap["step:fetch"]["invocations"] == 1
    assert (
        m.registry.get_sample_value(
            "workflow_kit_workflow_runs_total", {"workflow": "metrics-1", "status": "completed"}
        )
        == 1
    )
    assert m.registry.get_sample_value("workflow_kit_workflow_cost_sum", {"workflow": "metrics-1"}) == pytest.approx(
        0.012
    )

    report = m.report()
    lines = report.splitlines()
    assert lines[0].split()[:3] == ["agent", "calls", "err%"]
    row = next(line for line in lines if line.startswith("security"))
    assert row.split()[1] == "1" and row.split()[-1] == "0.0120"
