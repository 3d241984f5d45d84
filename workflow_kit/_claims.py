"""Claim mechanics shared by idempotency.py (one claim per dedup key) and durable.py (one per workflow id):
take a claim or wait for it with backoff, keep it alive while working, give it back.

The service does the atomic part (POST /claims answers 409 while another live holder has the key) and hands
out a `Lease`: the claim's fence (a number that only grows) and its secret lease token. Renewing and releasing
present the token; every write made under the claim carries the fence (`Lease.fence_ref()`), so once another
worker has taken the key over, the service refuses our writes (409 stale_fence). A renewal that finds the
lease gone marks it `lost`; the work checks `Lease.check()` before each next step and stops with LeaseLost.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from .client import MemoryClient
from .errors import ClaimTimeout, Conflict, LeaseLost, LeaseRejected, NotFound, StaleFence, WorkflowKitError

log = logging.getLogger("workflow_kit.claims")

MISSING = object()


@dataclass
class Lease:
    """A claim this worker holds: what renewing, releasing and fenced writes need."""

    key: str
    holder: str
    lease_seconds: float
    token: str | None  # the secret lease token (None from a service without them)
    fence: int | None
    lost: str | None = None  # why the lease is gone, once a renewal found out
    # With a journal, an unreachable service is no reason to stop (the run goes on degraded; its journaled
    # writes carry the fence and are refused on delivery if another worker took the claim meanwhile).
    tolerate_outage: bool = False

    def fence_ref(self) -> dict[str, Any] | None:
        """The `fence` field of a write made under this claim."""
        return {"key": self.key, "token": self.fence} if self.fence is not None else None

    def check(self) -> None:
        """Raise LeaseLost if a renewal found the lease gone."""
        if self.lost is not None:
            raise LeaseLost(self.key, self.holder, self.lost)

    def fenced_out(self, exc: StaleFence) -> LeaseLost:
        """The LeaseLost to raise for a write the service refused as fenced out."""
        self.lost = f"the service refused a write as fenced out ({exc.message})"
        return LeaseLost(self.key, self.holder, self.lost)


def _is_async(fn: Any) -> bool:
    while isinstance(fn, functools.partial):
        fn = fn.func
    call_method = None if inspect.isroutine(fn) else inspect.getattr_static(type(fn), "__call__", None)
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call_method)


async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a step or an action: a coroutine function on the event loop, anything else in a worker thread
    (`asyncio.to_thread`, context variables carried over) so a blocking call never starves the task that
    renews the claim. An awaitable it returns is awaited on the loop."""
    if _is_async(fn):
        value = fn(*args, **kwargs)
    else:
        value = await asyncio.to_thread(fn, *args, **kwargs)
    if inspect.isawaitable(value):
        value = await value
    return value


def default_holder() -> str:
    """A holder name unique to this call: host, pid, random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def acquire(
    client: MemoryClient,
    key: str,
    holder: str,
    lease_seconds: float,
    wait_timeout: float,
    probe: Callable[[], Awaitable[Any]] | None = None,
) -> Any:
    """Take the claim on `key`, waiting (polling with backoff) while another live holder has it.

    `probe`, if given, runs before each attempt; a result other than `MISSING` ends the wait without
    claiming and is returned (e.g. the record the other holder wrote). Returns `MISSING` once claimed.
    Raises ClaimTimeout after `wait_timeout` seconds.
    """
    started = time.monotonic()
    delay = 0.02
    while True:
        if probe is not None:
            found = await probe()
            if found is not MISSING:
                return found
        try:
            got = await client.claim(key, holder=holder, lease_seconds=lease_seconds)
            return Lease(key, holder, lease_seconds, got.get("lease_token"), got.get("fence"))
        except Conflict as exc:
            other = (exc.claim or {}).get("holder")
            if delay == 0.02:
                log.info(
                    "waiting for a claim",
                    extra={"key": key, "holder": other, "until": (exc.claim or {}).get("expires_at")},
                )
            waited = time.monotonic() - started
            if waited >= wait_timeout:
                raise ClaimTimeout(key, other, waited) from None
            await asyncio.sleep(min(delay, wait_timeout - waited))
            delay = min(delay * 1.5, 0.5)


async def _renew(client: MemoryClient, lease: Lease) -> None:
    every = max(lease.lease_seconds / 3, 0.05)
    renewed = time.monotonic()
    while True:
        await asyncio.sleep(every)
        try:
            await client.claim(lease.key, lease_seconds=lease.lease_seconds, lease_token=lease.token)
            renewed = time.monotonic()
        except Conflict as exc:
            lease.lost = f"renewal refused: {exc.message}"
            log.error(
                "lost a claim while working; stopping before the next step",
                extra={"key": lease.key, "holder": lease.holder, "other": (exc.claim or {}).get("holder")},
            )
            return
        except WorkflowKitError as exc:
            log.warning("could not renew a claim", extra={"key": lease.key, "error": str(exc)})
            if not lease.tolerate_outage and time.monotonic() - renewed >= lease.lease_seconds:
                # Not renewed for a whole lease: another worker may hold the key by now. Stop before the next
                # step; if nobody took it over, the next run (or this holder's next call) takes it again.
                lease.lost = f"not renewed for {lease.lease_seconds:g}s ({exc.message})"
                return


@asynccontextmanager
async def kept_alive(client: MemoryClient, lease: Lease) -> AsyncIterator[Lease]:
    """Renew the claim every third of its lease while the block runs, so only a dead (or frozen) holder loses
    it; the block checks `lease.check()` between steps."""
    task = asyncio.create_task(_renew(client, lease))
    try:
        yield lease
    finally:
        task.cancel()


async def release(client: MemoryClient, lease: Lease) -> None:
    """Give the claim back; never raises (an unreturned claim expires after its lease anyway)."""
    if lease.token is None:
        return  # a service without lease tokens: the claim expires
    try:
        await client.release(lease.key, lease_token=lease.token)
    except (NotFound, LeaseRejected, Conflict):
        pass  # expired, or already someone else's: nothing of ours to give back
    except WorkflowKitError as exc:
        log.warning("could not release a claim; it will expire", extra={"key": lease.key, "error": str(exc)})
