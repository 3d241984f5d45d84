"""Timeout budgets: a deadline per workflow, per step, per branch or per call, and what is left of it.

    async with deadline(60, name="workflow pr-42"):          # the whole run
        async with deadline(10, name="step review"):         # one step: ends at min(10 s, what is left)
            await llm(prompt, timeout=remaining())           # hand the rest to a client that takes a timeout

`deadline` is `asyncio.timeout_at` plus a contextvar: everything awaited inside (memory calls, agents, tasks
gathered inside) is bounded by the innermost budget, and `remaining()` tells nested code how many seconds are
left, for APIs that want a number. When a budget runs out, the block that owns it raises `DeadlineExceeded`
naming it (an outer budget running out is reported by the outer block, not the inner one). DeadlineExceeded
is a TimeoutError, so code that catches TimeoutError keeps working.

Budgets run on the event loop's clock; the ceilings of bounded autonomy (tokens, cost, steps, wall clock over a
whole workflow) are autonomy.py's.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from .errors import DeadlineExceeded, InvalidInput

__all__ = ["DeadlineExceeded", "deadline", "remaining"]

# (absolute loop time, name) of the innermost budget in force, or None.
_current: contextvars.ContextVar[tuple[float, str] | None] = contextvars.ContextVar(
    "workflow_kit_deadline", default=None
)


def remaining() -> float | None:
    """Seconds left of the innermost budget in force (never below 0), or None when there is none."""
    cur = _current.get()
    if cur is None:
        return None
    return max(0.0, cur[0] - asyncio.get_running_loop().time())


def current_name() -> str | None:
    """The name of the budget that ends first, or None."""
    cur = _current.get()
    return cur[1] if cur else None


@asynccontextmanager
async def deadline(seconds: float | None, *, name: str = "budget") -> AsyncIterator[None]:
    """Bound the block by `seconds` (None: no budget of its own, the enclosing ones still apply).

    Raises:
        DeadlineExceeded: this block's own budget ran out (the block was cancelled at that moment).
    """
    if seconds is None:
        yield
        return
    if seconds < 0:
        raise InvalidInput("timeout", f"{name}: a budget must be >= 0 seconds, got {seconds}")
    loop = asyncio.get_running_loop()
    when = loop.time() + seconds
    parent = _current.get()
    effective = (when, name) if parent is None or when < parent[0] else parent
    token = _current.set(effective)
    timer = asyncio.timeout_at(when)
    try:
        async with timer:
            yield
    except TimeoutError as exc:
        if timer.expired() and not isinstance(exc, DeadlineExceeded):
            raise DeadlineExceeded(name, seconds) from None
        raise
    finally:
        _current.reset(token)
