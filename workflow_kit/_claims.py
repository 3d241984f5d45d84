"""Claim mechanics shared by idempotency.py (one claim per dedup key) and durable.py (one per workflow id):
take a claim or wait for it with backoff, keep it alive while working, give it back.

The service does the atomic part (POST /claims answers 409 while another live holder has the key); this
module only decides how long to wait and how often to renew.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from .client import MemoryClient
from .errors import ClaimTimeout, Conflict, NotFound, WorkflowKitError

log = logging.getLogger("workflow_kit.claims")

MISSING = object()


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
            await client.claim(key, holder=holder, lease_seconds=lease_seconds)
            return MISSING
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


async def _renew(client: MemoryClient, key: str, holder: str, lease_seconds: float) -> None:
    while True:
        await asyncio.sleep(max(lease_seconds / 3, 0.05))
        try:
            await client.claim(key, holder=holder, lease_seconds=lease_seconds)
        except Conflict as exc:
            log.error(
                "lost a claim while working; another worker may do the same work",
                extra={"key": key, "holder": holder, "other": (exc.claim or {}).get("holder")},
            )
            return
        except WorkflowKitError as exc:
            log.warning("could not renew a claim", extra={"key": key, "error": str(exc)})


@asynccontextmanager
async def kept_alive(client: MemoryClient, key: str, holder: str, lease_seconds: float) -> AsyncIterator[None]:
    """Renew the claim every third of its lease while the block runs, so only a dead holder loses it."""
    task = asyncio.create_task(_renew(client, key, holder, lease_seconds))
    try:
        yield
    finally:
        task.cancel()


async def release(client: MemoryClient, key: str, holder: str) -> None:
    """Give the claim back; never raises (an unreturned claim expires after its lease anyway)."""
    try:
        await client.release(key, holder=holder)
    except (NotFound, Conflict):
        pass  # expired, or already someone else's: nothing of ours to give back
    except WorkflowKitError as exc:
        log.warning("could not release a claim; it will expire", extra={"key": key, "error": str(exc)})
