"""Metrics: what the seed's deployment checklist asks to watch, per agent, in Prometheus form and as a report.

    metrics = Metrics()                      # its own CollectorRegistry: never clashes with the service's
    run = await run_workflow(client, "pr-42", steps, metrics=metrics)
    print(metrics.report())                  # p50/p95/p99, invocations, error rate, memory ops, cost per call
    metrics.exposition()                     # Prometheus text, for a /metrics endpoint or a push gateway

Per agent (an `Agent` call, or a workflow step as `step:<name>`): execution time (a histogram for Prometheus,
exact p50/p95/p99 over the last `window` calls for the report), invocations by outcome (ok, error, rejected by
an open circuit), memory reads and writes made while it ran, tokens and cost. Per workflow: runs by status,
duration and cost per execution. Circuit breakers report their state and transitions, rate limits their waits.

Which agent a memory call belongs to travels in a contextvar (`acting_as`), so calls made inside an agent are
counted under it. `current()` is the Metrics of the running workflow, else the process default. This module
only counts; breaker.py, limits.py, agents.py, durable.py and client.py call it.
"""

from __future__ import annotations

import contextvars
import math
import threading
from collections import defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics", "acting", "acting_as", "current", "default", "spend", "tally", "using"]

# Memory calls by kind; anything else the client sends counts as a read.
WRITES = frozenset(
    {
        "ingest",
        "ingest_batch",
        "update",
        "delete",
        "delete_where",
        "claim",
        "release",
        "ingest_conversation",
        "delete_conversation",
        "revert",
        "restore",
    }
)
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}
_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
NO_AGENT = "(runner)"  # memory calls the runner makes outside any step or agent

_agent: contextvars.ContextVar[str] = contextvars.ContextVar("workflow_kit_agent", default=NO_AGENT)
_metrics: contextvars.ContextVar[Metrics | None] = contextvars.ContextVar("workflow_kit_metrics", default=None)
_spent: contextvars.ContextVar[tuple[list[float], ...]] = contextvars.ContextVar("workflow_kit_spent", default=())
_default: Metrics | None = None
_default_lock = threading.Lock()


def _quantile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank quantile: the smallest value with at least q of the values at or below it."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


class Metrics:
    """Per-agent and per-workflow metrics on one prometheus-client registry (a fresh one unless given)."""

    def __init__(self, registry: CollectorRegistry | None = None, *, window: int = 1000) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.agent_seconds = Histogram(
            "workflow_kit_agent_seconds", "Agent execution time", ["agent"], registry=r, buckets=_BUCKETS
        )
        self.invocations = Counter(
            "workflow_kit_agent_invocations",
            "Agent invocations by outcome (ok, error, rejected)",
            ["agent", "outcome"],
            registry=r,
        )
        self.memory_ops = Counter(
            "workflow_kit_memory_operations",
            "Memory Spine calls by agent and kind (read, write)",
            ["agent", "kind"],
            registry=r,
        )
        self.tokens = Counter("workflow_kit_agent_tokens", "Tokens an agent reported", ["agent"], registry=r)
        self.cost = Counter("workflow_kit_agent_cost", "Cost an agent reported (money)", ["agent"], registry=r)
        self.workflow_runs = Counter(
            "workflow_kit_workflow_runs", "Workflow runs by final status", ["workflow", "status"], registry=r
        )
        self.workflow_seconds = Histogram(
            "workflow_kit_workflow_seconds", "Workflow run time", ["workflow"], registry=r, buckets=_BUCKETS
        )
        self.workflow_cost = Histogram(
            "workflow_kit_workflow_cost",
            "Cost per workflow execution",
            ["workflow"],
            registry=r,
            buckets=(0.0001, 0.001, 0.01, 0.1, 1.0, 10.0, 100.0),
        )
        self.breaker_state = Gauge(
            "workflow_kit_breaker_state",
            "Circuit breaker state (0 closed, 1 half-open, 2 open)",
            ["breaker"],
            registry=r,
        )
        self.breaker_transitions = Counter(
            "workflow_kit_breaker_transitions", "Circuit breaker transitions", ["breaker", "to"], registry=r
        )
        self.journal_pending = Gauge(
            "workflow_kit_journal_pending",
            "Records waiting in a local journal for the memory service (0: all delivered)",
            ["workflow"],
            registry=r,
        )
        self.rate_limit_wait = Histogram(
            "workflow_kit_rate_limit_wait_seconds", "Time spent waiting for a rate limit", ["limit"], registry=r
        )
        self.window = window
        self._lock = threading.Lock()
        self._durations: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=self.window))
        self._counts: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))

    # -- recording ---------------------------------------------------------------------------------------------

    def observe_agent(
        self, agent: str, seconds: float, outcome: str = "ok", *, tokens: float = 0, cost: float = 0.0
    ) -> None:
        """One finished agent call: its time, outcome (ok | error | rejected), and what it spent."""
        self.invocations.labels(agent, outcome).inc()
        if outcome != "rejected":  # a call the breaker refused did not execute: no execution time
            self.agent_seconds.labels(agent).observe(seconds)
        if tokens:
            self.tokens.labels(agent).inc(tokens)
        if cost:
            self.cost.labels(agent).inc(cost)
        with self._lock:
            if outcome != "rejected":
                self._durations[agent].append(seconds)
            c = self._counts[agent]
            c[outcome] += 1
            c["tokens"] += tokens
            c["cost"] += cost

    def memory_op(self, op: str, agent: str | None = None) -> None:
        """One Memory Spine call (client.py calls this), counted under the agent acting now."""
        kind = "write" if op in WRITES else "read"
        who = agent or _agent.get()
        self.memory_ops.labels(who, kind).inc()
        with self._lock:
            self._counts[who][kind] += 1

    def observe_workflow(self, workflow: str, seconds: float, status: str, cost: float = 0.0) -> None:
        """One finished (or stopped, paused, failed) workflow run."""
        self.workflow_runs.labels(workflow, status).inc()
        self.workflow_seconds.labels(workflow).observe(seconds)
        self.workflow_cost.labels(workflow).observe(cost)

    def breaker(self, name: str, state: str, transition: bool = True) -> None:
        """A circuit breaker is now in `state`."""
        self.breaker_state.labels(name).set(BREAKER_STATES.get(state, -1))
        if transition:
            self.breaker_transitions.labels(name, state).inc()

    def waited(self, limit: str, seconds: float) -> None:
        """Time spent waiting on the rate limit `limit`."""
        self.rate_limit_wait.labels(limit).observe(seconds)

    # -- reading -----------------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Per agent: invocations, errors, rejected, error_rate, p50/p95/p99 (s), memory reads/writes, tokens,
        cost, cost_per_execution."""
        out: dict[str, dict[str, Any]] = {}
        with self._lock:
            agents = sorted(set(self._counts) | set(self._durations))
            for agent in agents:
                c = self._counts.get(agent, {})
                values = sorted(self._durations.get(agent, ()))
                executed = c.get("ok", 0) + c.get("error", 0)
                out[agent] = {
                    "invocations": int(executed + c.get("rejected", 0)),
                    "errors": int(c.get("error", 0)),
                    "rejected": int(c.get("rejected", 0)),
                    "error_rate": (c.get("error", 0) + c.get("rejected", 0)) / (executed + c.get("rejected", 0))
                    if executed + c.get("rejected", 0)
                    else 0.0,
                    "p50": _quantile(values, 0.50),
                    "p95": _quantile(values, 0.95),
                    "p99": _quantile(values, 0.99),
                    "memory_reads": int(c.get("read", 0)),
                    "memory_writes": int(c.get("write", 0)),
                    "tokens": c.get("tokens", 0),
                    "cost": c.get("cost", 0.0),
                    "cost_per_execution": c.get("cost", 0.0) / executed if executed else 0.0,
                }
        return out

    def report(self) -> str:
        """The snapshot as a fixed-width table, one agent a line."""
        head = (
            f"{'agent':<28} {'calls':>6} {'err%':>6} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9} "
            f"{'mem r':>6} {'mem w':>6} {'cost/exec':>10}"
        )
        lines = [head, "-" * len(head)]

        def ms(v: float) -> str:
            return "-" if math.isnan(v) else f"{v * 1000:.1f}"

        for agent, s in self.snapshot().items():
            lines.append(
                f"{agent[:28]:<28} {s['invocations']:>6} {s['error_rate'] * 100:>5.1f}% {ms(s['p50']):>9} "
                f"{ms(s['p95']):>9} {ms(s['p99']):>9} {s['memory_reads']:>6} {s['memory_writes']:>6} "
                f"{s['cost_per_execution']:>10.4f}"
            )
        return "\n".join(lines)

    def exposition(self) -> bytes:
        """Prometheus text format of this registry."""
        return generate_latest(self.registry)


def default() -> Metrics:
    """The process-wide Metrics, made on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Metrics()
        return _default


def current() -> Metrics:
    """The Metrics of the running workflow (`run_workflow(metrics=...)`), else the process default."""
    return _metrics.get() or default()


@contextmanager
def using(metrics: Metrics | None) -> Iterator[Metrics]:
    """Make `metrics` current for the block (None: keep the current one)."""
    if metrics is None:
        yield current()
        return
    token = _metrics.set(metrics)
    try:
        yield metrics
    finally:
        _metrics.reset(token)


@contextmanager
def acting_as(agent: str) -> Iterator[None]:
    """Count the memory calls made in the block under `agent`."""
    token = _agent.set(agent)
    try:
        yield
    finally:
        _agent.reset(token)


def acting() -> str:
    """The agent memory calls are counted under right now."""
    return _agent.get()


@contextmanager
def tally() -> Iterator[list[float]]:
    """Collect `[tokens, cost]` spent (see `spend`) inside the block; tallies nest, each sees its own part."""
    acc = [0.0, 0.0]
    token = _spent.set((*_spent.get(), acc))
    try:
        yield acc
    finally:
        _spent.reset(token)


def spend(tokens: float = 0, cost: float = 0.0) -> None:
    """Add what an agent spent to every tally open around the caller (its agent call, its workflow run)."""
    for acc in _spent.get():
        acc[0] += tokens
        acc[1] += cost
