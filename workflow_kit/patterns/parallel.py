"""Parallel fan-out / fan-in: the same input to several agents at once, each with its own timeout budget.

    out = await fan_out({"security": security, "style": style, "logic": logic}, diff, timeout=30)
    out.results   # {"security": {...}, "logic": {...}}             the branches that answered
    out.failed    # {"style": BranchFailure("timeout", "DeadlineExceeded: branch style: ...")}
    merged = summarise(out.results) if out.ok else ...

Every branch runs as its own task and span, under `deadline(timeout)` (`timeouts={"name": s}` per branch). A
branch that raises or runs out of time does not take the others down: the call returns what did answer and,
for each branch that did not, why (`"timeout"`, `"error"` or `"rejected"` by an open circuit, with the
message). `required=n` raises `AllFailed` when fewer than n branches answered. Control-flow signals (a paused
workflow, a scope or budget refusal, cancellation of the caller) cancel the other branches and propagate.
`FanOut.to_dict()` is JSON, ready to be a step's output.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import budget, records, tracing
from ..errors import AllFailed, CircuitOpen

__all__ = ["BranchFailure", "FanOut", "fan_out"]


@dataclass
class BranchFailure:
    """Why a branch gave no result: kind is timeout | error | rejected."""

    kind: str
    error: str
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "error": self.error}


@dataclass
class FanOut:
    """What the branches gave: `results` of those that answered, `failed` (name -> BranchFailure) of the rest."""

    results: dict[str, Any]
    failed: dict[str, BranchFailure]
    order: list[str]

    @property
    def ok(self) -> bool:
        """Every branch answered."""
        return not self.failed

    @property
    def partial(self) -> bool:
        """Some, not all, branches answered."""
        return bool(self.failed) and bool(self.results)

    def to_dict(self) -> dict[str, Any]:
        return {
            "results": self.results,
            "failed": {k: v.to_dict() for k, v in self.failed.items()},
            "partial": self.partial,
        }


async def _branch(name: str, fn: Callable[..., Any], seconds: float | None, args: Any, kwargs: Any) -> Any:
    with tracing.span(f"branch {name}", kind="branch", timeout=seconds if seconds is not None else -1):
        async with budget.deadline(seconds, name=f"branch {name}"):
            value = fn(*args, **kwargs)
            if inspect.isawaitable(value):
                value = await value
            return value


async def fan_out(
    branches: Mapping[str, Callable[..., Any]],
    *args: Any,
    timeout: float | None = None,
    timeouts: Mapping[str, float] | None = None,
    required: int = 0,
    name: str = "fan-out",
    **kwargs: Any,
) -> FanOut:
    """Run every branch with `*args, **kwargs` concurrently; see the module docstring.

    Raises:
        AllFailed: fewer than `required` branches answered.
    """
    order = list(branches)
    with tracing.span(f"fan-out {name}", kind="pattern", branches=order) as span:
        tasks = {
            b: asyncio.ensure_future(_branch(b, fn, (timeouts or {}).get(b, timeout), args, kwargs))
            for b, fn in branches.items()
        }
        try:
            await asyncio.wait(tasks.values())
        finally:
            for t in tasks.values():  # the caller was cancelled: take the branches down with it
                t.cancel()
        results: dict[str, Any] = {}
        failed: dict[str, BranchFailure] = {}
        for b in order:
            task = tasks[b]
            if task.cancelled():
                failed[b] = BranchFailure("error", "CancelledError: branch cancelled")
                continue
            exc = task.exception()
            if exc is None:
                results[b] = task.result()
            elif not isinstance(exc, Exception):  # a WorkflowSignal (pause, stop, lost lease): the run stops
                raise exc
            elif isinstance(exc, TimeoutError):
                failed[b] = BranchFailure("timeout", f"{type(exc).__name__}: {exc}", exc)
            elif isinstance(exc, CircuitOpen):
                failed[b] = BranchFailure("rejected", f"{type(exc).__name__}: {exc}", exc)
            else:
                failed[b] = BranchFailure("error", f"{type(exc).__name__}: {exc}", exc)
        span.set_attribute("workflow_kit.fan_out.answered", sorted(results))
        span.set_attribute("workflow_kit.fan_out.failed", sorted(failed))
        for b, f in failed.items():
            span.add_event(records.EVENT_BRANCH_FAILED, {"branch": b, "kind": f.kind, "error": f.error[:500]})
        if len(results) < required:
            raise AllFailed([(b, f.exception or RuntimeError(f.error)) for b, f in failed.items()])
        return FanOut(results, failed, order)
