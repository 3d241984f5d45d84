"""Rate limits per agent and per workflow, on aiolimiter's leaky bucket.

    llm_limit = RateLimit(60, per=60.0, name="llm")            # 60 calls a minute, bursts of up to 60
    reviewer = Agent("security", review, rate=RateLimit(5))    # this agent: 5 calls a second
    await run_workflow(client, "pr-42", steps, rate_limit=RateLimit(20, per=1.0))   # every agent call in it

`async with limit:` waits (never raises) until the bucket has room; the wait is recorded in the metric
`workflow_kit_rate_limit_wait_seconds{limit}` and, when there was one, as an event on the current span. An
`Agent` call takes its own limit and then the running workflow's (`current_workflow_limit()`); a recursive
loop calling an LLM at every turn is slowed down, not failed. The hard cap on total spend is the budget
ceiling in autonomy.py.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

from aiolimiter import AsyncLimiter
from opentelemetry import trace

from . import metrics as _metrics
from . import records
from .errors import InvalidInput

__all__ = ["RateLimit", "current_workflow_limit", "workflow_limit"]

_workflow: contextvars.ContextVar[RateLimit | None] = contextvars.ContextVar("workflow_kit_rate_limit", default=None)


class RateLimit:
    """At most `rate` acquisitions per `per` seconds (a leaky bucket holding up to `rate`)."""

    def __init__(self, rate: float, per: float = 1.0, *, name: str = "rate-limit") -> None:
        if rate <= 0 or per <= 0:
            raise InvalidInput("rate", f"{name}: rate and per must be > 0 (got {rate} per {per}s)")
        self.rate = rate
        self.per = per
        self.name = name
        self._limiter = AsyncLimiter(rate, per)
        self.waited = 0.0  # total seconds callers spent waiting here

    def has_capacity(self, amount: float = 1) -> bool:
        """Whether `amount` could be taken now without waiting."""
        return self._limiter.has_capacity(amount)

    async def acquire(self, amount: float = 1, *, metrics: _metrics.Metrics | None = None) -> float:
        """Wait until `amount` fits in the bucket; returns the seconds waited (counted in `metrics`, default
        the current ones)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        await self._limiter.acquire(amount)
        waited = loop.time() - started
        if waited > 0.0005:
            self.waited += waited
            (metrics or _metrics.current()).waited(self.name, waited)
            span = trace.get_current_span()
            if span.is_recording():
                span.add_event(records.EVENT_RATE_LIMIT, {"limit": self.name, "seconds": round(waited, 4)})
        return waited

    async def __aenter__(self) -> RateLimit:
        await self.acquire()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def __repr__(self) -> str:
        return f"RateLimit({self.rate:g}, per={self.per:g}, name={self.name!r})"


def current_workflow_limit() -> RateLimit | None:
    """The rate limit of the running workflow, if it has one."""
    return _workflow.get()


@contextmanager
def workflow_limit(limit: RateLimit | None) -> Iterator[None]:
    """Make `limit` the running workflow's rate limit for the block (run_workflow does this)."""
    token = _workflow.set(limit)
    try:
        yield
    finally:
        _workflow.reset(token)
