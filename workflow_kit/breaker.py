"""Circuit breakers: stop calling a dependency that keeps failing, try it again after a cooldown.

    llm = CircuitBreaker("llm-api", failure_threshold=3, cooldown=30.0)
    async with llm:                      # CircuitOpen while open: the call is not made
        answer = await call_llm(prompt)
    answer = await llm.call(call_llm, prompt)

States: **closed** (calls pass; `failure_threshold` consecutive failures open it) -> **open** (calls are refused
with `CircuitOpen` until `cooldown` seconds have passed) -> **half_open** (one trial call passes, others are
refused; its success closes the breaker, its failure opens it for another cooldown). Every transition is a
warning log line, an event `circuit_breaker.state_change` on the current span, and the metrics
`workflow_kit_breaker_state` / `workflow_kit_breaker_transitions_total`.

What counts as a failure: any exception except the service's answers (InvalidInput, NotFound, Conflict,
Unauthorized, PayloadTooLarge: the dependency is up and said no) and autonomy's refusals; `is_failure=` changes
that. Cancellation counts as nothing. The clock is injectable (`clock=`), so tests move time by hand.

Why not a library: pybreaker is built around threads (its async path goes through Tornado), and the asyncio
ones (aiobreaker, purgatory) would be a dependency for what is forty lines here, without our span events,
metrics or injectable clock. The state machine is plain code, single-threaded like the event loop, so it needs
no lock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar

from opentelemetry import trace

from . import metrics as _metrics
from . import records
from .errors import (
    CircuitOpen,
    Conflict,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)

__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "CircuitBreaker", "CircuitOpen"]

log = logging.getLogger("workflow_kit.breaker")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
T = TypeVar("T")

# Answers, not outages: the dependency is up and refused this request.
_NOT_FAILURES: tuple[type[BaseException], ...] = (
    InvalidInput,
    NotFound,
    Conflict,
    Unauthorized,
    PayloadTooLarge,
)


def _default_is_failure(exc: BaseException) -> bool:
    return isinstance(exc, Exception) and not isinstance(exc, _NOT_FAILURES)


class CircuitBreaker:
    """One breaker per agent or dependency. See the module docstring for the state machine."""

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 3,
        cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        is_failure: Callable[[BaseException], bool] = _default_is_failure,
        metrics: _metrics.Metrics | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise InvalidInput("failure_threshold", "must be >= 1")
        if cooldown < 0:
            raise InvalidInput("cooldown", "must be >= 0")
        self.name = name
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self.clock = clock
        self.is_failure = is_failure
        self._metrics = metrics
        self._state = CLOSED
        self.failures = 0  # consecutive failures while closed
        self.opened_at: float | None = None
        self._trial = False  # the half-open trial call is out
        self.transitions: list[tuple[str, str, float]] = []  # (from, to, clock()) for tests and reports
        self._report(transition=False)

    # -- state ---------------------------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """closed | open | half_open; an open breaker whose cooldown passed turns half-open when read."""
        if self._state == OPEN and self.opened_at is not None and self.clock() - self.opened_at >= self.cooldown:
            self._move(HALF_OPEN, "cooldown over")
        return self._state

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a trial through (0 when it would now)."""
        if self._state != OPEN or self.opened_at is None:
            return 0.0
        return max(0.0, self.opened_at + self.cooldown - self.clock())

    def _report(self, transition: bool) -> None:
        (self._metrics or _metrics.current()).breaker(self.name, self._state, transition)

    def _move(self, to: str, why: str) -> None:
        before = self._state
        if before == to:
            return
        self._state = to
        now = self.clock()
        self.transitions.append((before, to, now))
        if to == OPEN:
            self.opened_at = now
        if to != HALF_OPEN:
            self._trial = False
        if to == CLOSED:
            self.failures = 0
            self.opened_at = None
        attrs = {"breaker": self.name, "from": before, "to": to, "reason": why, "failures": self.failures}
        level = logging.INFO if to == CLOSED else logging.WARNING
        log.log(level, "circuit breaker %s: %s -> %s (%s)", self.name, before, to, why, extra=attrs)
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(records.EVENT_BREAKER, attrs)
        self._report(transition=True)

    # -- calls ---------------------------------------------------------------------------------------------

    def before(self) -> None:
        """Ask to make a call: raises CircuitOpen if the breaker refuses it. Pair with `success`/`failure`."""
        state = self.state
        if state == OPEN:
            raise CircuitOpen(self.name, self.retry_in(), OPEN)
        if state == HALF_OPEN:
            if self._trial:
                raise CircuitOpen(self.name, 0.0, "half_open (its trial call is out)")
            self._trial = True

    def success(self) -> None:
        """The call worked: a half-open breaker closes, a closed one forgets earlier failures."""
        if self._state == HALF_OPEN:
            self._move(CLOSED, "trial call succeeded")
        self.failures = 0

    def failure(self, exc: BaseException | None = None) -> None:
        """The call failed: a half-open breaker reopens; a closed one opens at the threshold."""
        why = f"{type(exc).__name__}: {exc}" if exc is not None else "failure"
        if self._state == HALF_OPEN:
            self._move(OPEN, f"trial call failed ({why})")
            return
        self.failures += 1
        if self._state == CLOSED and self.failures >= self.failure_threshold:
            self._move(OPEN, f"{self.failures} consecutive failures, last {why}")

    def abandon(self) -> None:
        """The call ended without a verdict (cancelled): a half-open breaker may try again."""
        if self._state == HALF_OPEN:
            self._trial = False

    def settle(self, exc: BaseException | None) -> None:
        """Record how a call ended (None: it worked)."""
        if exc is None:
            self.success()
        elif not isinstance(exc, Exception):
            self.abandon()
        elif self.is_failure(exc):
            self.failure(exc)
        else:
            self.success()  # the dependency answered; the answer was no

    async def __aenter__(self) -> CircuitBreaker:
        self.before()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.settle(exc)

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """`await fn(*args, **kwargs)` through the breaker."""
        async with self:
            return await fn(*args, **kwargs)

    def reset(self) -> None:
        """Close the breaker by hand."""
        self._move(CLOSED, "reset")

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self._state!r}, failures={self.failures})"
