"""Graceful shutdown: on SIGTERM, finish the step in flight (within a deadline), checkpoint it, stop cleanly.

    async with graceful_shutdown(deadline=20.0) as stop:       # SIGTERM and SIGINT handlers on the loop
        try:
            run = await run_workflow(client, "pr-42", steps, shutdown=stop)
        except WorkflowStopped as exc:                           # exit 0: the next run resumes at exc.next
            print(f"stopped after {exc.after}")

The runner looks at `stop.requested` between steps: once a signal came, the step running then is allowed to
finish and is checkpointed as usual, and the run raises `WorkflowStopped` instead of starting the next one
(after the last step it simply completes). A step still running `deadline` seconds after the signal is
cancelled (so the process does not outlive its container's grace period); it has no checkpoint and runs again
on the next start, which is why its side effects belong in `idempotent`. Never kill a write to Memory Spine
half-way: the cancel lands on the step, and the client's write either completed or is repeated (ids upsert).

`Shutdown.request()` does the same without a signal (tests, or an orchestrator's own stop).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

__all__ = ["Shutdown", "graceful_shutdown"]

log = logging.getLogger("workflow_kit.shutdown")


class Shutdown:
    """A stop request shared by the signal handler and the runner."""

    def __init__(self, deadline: float = 30.0) -> None:
        self.deadline = deadline
        self.requested = False
        self.reason: str | None = None
        self._timers: set[asyncio.Timeout] = set()
        self._event = asyncio.Event()

    def request(self, reason: str = "requested") -> None:
        """Ask the running workflow to stop after its current step; cut that step off after `deadline`."""
        if self.requested:
            return
        self.requested = True
        self.reason = reason
        self._event.set()
        log.warning(
            "shutdown requested: finishing the current step", extra={"reason": reason, "deadline": self.deadline}
        )
        try:
            when = asyncio.get_running_loop().time() + self.deadline
        except RuntimeError:
            return
        for timer in list(self._timers):
            if timer.when() is None or timer.when() > when:
                timer.reschedule(when)

    async def wait(self) -> None:
        """Until a stop is requested."""
        await self._event.wait()

    @asynccontextmanager
    async def step_window(self) -> AsyncIterator[asyncio.Timeout]:
        """Run one step so a stop request can cut it off at the deadline (the runner wraps each step in it)."""
        timer = asyncio.timeout(None)
        async with timer:
            self._timers.add(timer)
            if self.requested:
                timer.reschedule(asyncio.get_running_loop().time() + self.deadline)
            try:
                yield timer
            finally:
                self._timers.discard(timer)


@asynccontextmanager
async def graceful_shutdown(
    deadline: float = 30.0, signals: Iterable[signal.Signals] = (signal.SIGTERM, signal.SIGINT)
) -> AsyncIterator[Shutdown]:
    """Install handlers for `signals` on the running loop for the block; yields the `Shutdown` they trip."""
    stop = Shutdown(deadline)
    loop = asyncio.get_running_loop()
    installed = []
    for sig in signals:
        try:
            loop.add_signal_handler(sig, stop.request, sig.name)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no such signal here
            log.warning("cannot handle a signal here", extra={"signal": sig.name})
    try:
        yield stop
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
