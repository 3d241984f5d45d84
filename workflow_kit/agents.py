"""Agent: one call of an agent (or tool) with every guard of the kit around it.

    security = Agent("security", audit, breaker=CircuitBreaker("security"), rate=RateLimit(5), timeout=20)
    findings = await security(diff)

    @agent("style", timeout=5)
    async def style(diff: str) -> dict: ...

A call, in order: the scope must allow the tool (`autonomy.check_scope(tool=name)`), the agent's own rate limit
then the workflow's, one step against the budget ceiling, the circuit breaker (`CircuitOpen` if it refuses),
then the function under its timeout budget (`DeadlineExceeded`). It runs as an OpenTelemetry span of kind
`agent` (inputs and outputs recorded), memory calls inside it are counted under its name, and its time,
outcome, tokens and cost (what it reported with `autonomy.charge`) go to the metrics. With `autonomy=`,
`max_failures` failures in a row escalate (default handler: the workflow pauses). Fallbacks, fan-out and
routing take Agents like any other async callable.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any

from . import autonomy as _autonomy
from . import budget, limits, tracing
from . import metrics as _metrics
from .breaker import CircuitBreaker
from .errors import CircuitOpen, WorkflowPaused

__all__ = ["Agent", "agent"]


class Agent:
    """An agent function with its name, breaker, rate limit and timeout; call it like the function."""

    def __init__(
        self,
        name: str,
        fn: Callable[..., Any],
        *,
        breaker: CircuitBreaker | None = None,
        rate: limits.RateLimit | None = None,
        timeout: float | None = None,
        tool: str | None = None,
        metrics: _metrics.Metrics | None = None,
        record_io: bool = True,
    ) -> None:
        self.name = name
        self.fn = fn
        self.breaker = breaker
        self.rate = rate
        self.timeout = timeout
        self.tool = tool or name
        self.metrics = metrics
        self.record_io = record_io
        self.__name__ = name

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        guard = _autonomy.current_guard()
        if guard is not None:
            guard.check(tool=self.tool)
        m = self.metrics or _metrics.current()
        inputs = {"args": list(args), "kwargs": kwargs} if self.record_io and (args or kwargs) else None
        with (
            tracing.span(self.name, kind="agent", inputs=inputs) as span,
            _metrics.acting_as(self.name),
            _metrics.tally() as spent,
        ):
            if self.rate is not None:
                await self.rate.acquire(metrics=m)
            shared = limits.current_workflow_limit()
            if shared is not None:
                await shared.acquire(metrics=m)
            if guard is not None:
                guard.count_step()
            started = time.perf_counter()
            if self.breaker is not None:
                try:
                    self.breaker.before()
                except CircuitOpen:
                    m.observe_agent(self.name, 0.0, "rejected")
                    span.set_attribute("workflow_kit.breaker", self.breaker.state)
                    raise
            try:
                async with budget.deadline(self.timeout, name=f"agent {self.name}"):
                    result = self.fn(*args, **kwargs)
                    if inspect.isawaitable(result):
                        result = await result
            except BaseException as exc:
                if self.breaker is not None:
                    self.breaker.settle(exc)
                if isinstance(exc, Exception):
                    m.observe_agent(self.name, time.perf_counter() - started, "error", tokens=spent[0], cost=spent[1])
                    if guard is not None and guard.failed(self.name):
                        esc = await guard.escalate(
                            "repeated_failure",
                            f"agent {self.name!r} failed {guard.failures[self.name]} times in a row: "
                            f"{type(exc).__name__}: {exc}",
                            {"agent": self.name},
                        )
                        if not esc.detail["go_on"]:
                            raise WorkflowPaused(guard.workflow_id, esc) from exc
                raise
            if self.breaker is not None:
                self.breaker.settle(None)
            m.observe_agent(self.name, time.perf_counter() - started, "ok", tokens=spent[0], cost=spent[1])
            if guard is not None:
                guard.succeeded(self.name)
            if self.record_io:
                tracing.record(outputs=result, on=span)
            return result

    def __repr__(self) -> str:
        return f"Agent({self.name!r})"


def agent(name: str | None = None, **options: Any) -> Callable[[Callable[..., Any]], Agent]:
    """Decorator form: `@agent("security", breaker=..., rate=..., timeout=...)`."""

    def wrap(fn: Callable[..., Any]) -> Agent:
        return Agent(name or fn.__name__, fn, **options)

    return wrap
