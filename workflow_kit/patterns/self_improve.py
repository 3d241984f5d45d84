"""Recursive self-improvement: generate, evaluate, try again with the feedback, within hard bounds.

    async def generate(attempt: Attempt) -> str:       # attempt.strategy, attempt.feedback, attempt.number
        return await coder(task, strategy=attempt.strategy, hint=attempt.feedback)

    async def evaluate(code: str) -> tuple[bool, str]:  # (accepted, feedback for the next attempt)
        result = await run_tests(code)
        return result.passed, result.failures

    done = await self_improve(generate, evaluate, strategies=["patch", "rewrite"])

The seed's rule, as defaults: at most `max_attempts=3`, and after `switch_after=2` failures with one strategy
the next strategy takes over (attempts 1-2 "patch", attempt 3 "rewrite"). Each attempt is a span with its
strategy, output and verdict. When every attempt failed, the loop **escalates** (`autonomy.escalate`,
kind `repeated_failure`): inside a workflow with `autonomy=` the default handler stores an `escalation` memory
and the workflow pauses (`WorkflowPaused`); a handler that lets it go on, or no workflow at all, gets
`AttemptsExhausted` with every attempt's record. `evaluate` may return a bool or `(bool, feedback)`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .. import autonomy, records, tracing
from ..errors import AttemptsExhausted, InvalidInput

__all__ = ["Attempt", "Improved", "self_improve"]


@dataclass
class Attempt:
    """What `generate` gets: which attempt (1-based), which strategy, the feedback of the last evaluation."""

    number: int
    strategy: str
    feedback: Any = None
    previous: Any = None


@dataclass
class Improved:
    """The accepted result and how it was reached."""

    result: Any
    attempts: int
    strategy: str
    history: list[dict[str, Any]]


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    value = fn(*args)
    return await value if inspect.isawaitable(value) else value


async def self_improve(
    generate: Callable[[Attempt], Any],
    evaluate: Callable[[Any], Any],
    *,
    strategies: Sequence[str] = ("primary", "alternative"),
    max_attempts: int = 3,
    switch_after: int = 2,
    name: str = "self-improve",
) -> Improved:
    """Loop generate -> evaluate until accepted, within the bounds in the module docstring.

    Raises:
        WorkflowPaused: every attempt failed and the escalation paused the workflow.
        AttemptsExhausted: every attempt failed and the escalation did not pause it (or there is no workflow).
    """
    if max_attempts < 1 or switch_after < 1 or not strategies:
        raise InvalidInput("max_attempts", "max_attempts and switch_after must be >= 1, with at least one strategy")
    history: list[dict[str, Any]] = []
    feedback: Any = None
    previous: Any = None
    strategy_index = 0
    failures_here = 0  # failures with the current strategy
    with tracing.span(f"self-improve {name}", kind="pattern", max_attempts=max_attempts) as outer:
        for number in range(1, max_attempts + 1):
            if failures_here >= switch_after and strategy_index + 1 < len(strategies):
                strategy_index += 1
                failures_here = 0
                outer.add_event(records.EVENT_SWITCH_STRATEGY, {"to": strategies[strategy_index], "attempt": number})
            strategy = strategies[strategy_index]
            attempt = Attempt(number, strategy, feedback, previous)
            with tracing.span(f"attempt {number}", kind="attempt", strategy=strategy) as span:
                try:
                    output = await _call(generate, attempt)
                    verdict = await _call(evaluate, output)
                except Exception as exc:  # a crashing attempt is a failed attempt, with the error as feedback
                    output, verdict = None, (False, f"{type(exc).__name__}: {exc}")
                accepted, feedback = verdict if isinstance(verdict, tuple) else (bool(verdict), None)
                span.set_attribute("workflow_kit.accepted", bool(accepted))
                tracing.record(outputs=output, reasoning={"accepted": bool(accepted), "feedback": feedback}, on=span)
            history.append({"attempt": number, "strategy": strategy, "accepted": bool(accepted), "feedback": feedback})
            if accepted:
                outer.set_attribute(records.ATTR_ATTEMPTS, number)
                return Improved(output, number, strategy, history)
            failures_here += 1
            previous = output
        outer.set_attribute(records.ATTR_ATTEMPTS, max_attempts)
        await autonomy.escalate(  # pauses the workflow (raises) unless a handler lets it go on
            "repeated_failure",
            f"{name}: no acceptable result after {max_attempts} attempts (last feedback: {str(feedback)[:200]})",
            {"attempts": history},
        )
        raise AttemptsExhausted(history)
