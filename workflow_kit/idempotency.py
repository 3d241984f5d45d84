"""Exactly-once side effects: dedup keys (the seed's formula), claims so racing workers run an action once,
and optional time windows ("at most once per hour").

    result = await idempotent(client, "send_slack", {"channel": "#ops", "text": "deployed"}, send)

    @idempotent("create_issue", window_seconds=3600)
    async def create_issue(repo: str, title: str) -> dict: ...

**Key.** `dedup_key(action, params)` is the seed's, bit for bit:
`sha256(f"{action}:{json.dumps(params, sort_keys=True)}".encode()).hexdigest()[:16]`, so the seed's
`idempotent_action` and the kit find each other's records. With `window_seconds=W` the key source gets a
suffix:
`f"{action}:{json.dumps(params, sort_keys=True)}|window={W:g}:{floor(now / W)}"` (`now` = epoch seconds from
`clock`), so the key, and with it the dedup, changes when the window does; W is in the source so an hourly and
a daily window never share a key.

**Record** (the seed's): content `f"dedup:{key} action={action}"`, key `dedup:{key}`,
metadata `{"dedup_key", "action", "result", ...}`, tags `["dedup", "idempotency", action]`.

**Race.** Before running, a worker takes the service claim `dedup:{key}` (POST /claims, a lease renewed while
the action runs; a sync `fn` runs in a worker thread so a blocking call cannot starve the renewal, and is
called as `fn(params)`; the decorator form calls the function with its own arguments). The record is written
with the claim's fencing token: a holder whose lease another has taken cannot write it (LeaseLost). The one
that gets it runs the action, writes the record, then releases; the others poll the record with backoff
(bounded by `wait_timeout`) and return its result. If the holder dies, its lease expires and the next caller
runs the action. If the action raises, the claim is released, a `dedup-error` record is written, and the error
re-raised; the next call tries again.

One gap stays, as for any side effect outside the store: a holder that dies (or loses the service) after the
action ran but before its record is written leaves a claim that expires, and the next caller runs the action
again. Pass `current_key()` on to systems that take one (an Idempotency-Key header) to close it. Workflow steps
are durable.py's job.

**Degraded** (inside `run_workflow(journal=...)`): the journal is looked at first (a record written while the
service was out counts), the record is written through it, and when the service cannot be reached to claim,
the action runs under the journal's local lock: exactly once on this host, not across hosts, until the
service is back. **Scope**: with `autonomy=`, an action the scope does not list raises ScopeViolation.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import inspect
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from . import _claims, _json, records, tracing
from .autonomy import check_scope
from .breaker import OPEN
from .client import MemoryClient, current_client, new_id
from .errors import ClaimTimeout as ClaimTimeout  # re-exported for `except idempotency.ClaimTimeout`
from .errors import (
    InvalidInput,
    NotJSON,
    PayloadTooLarge,
    ServiceError,
    ServiceUnavailable,
    StaleFence,
    WorkflowKitError,
)
from .journal import Journal, current_journal

log = logging.getLogger("workflow_kit.idempotency")

Clock = Callable[[], float]

_key: contextvars.ContextVar[str | None] = contextvars.ContextVar("workflow_kit_dedup_key", default=None)


def current_key() -> str | None:
    """Inside an action run by `idempotent`: its dedup key, to hand on as an external idempotency key."""
    return _key.get()


def dedup_key(
    action: str, params: Mapping[str, Any], *, window_seconds: float | None = None, now: float | None = None
) -> str:
    """The 16-hex-digit dedup key of `action` with `params`; see the module docstring for the window form."""
    try:
        source = f"{action}:{json.dumps(params, sort_keys=True)}"
    except (TypeError, ValueError) as exc:
        raise NotJSON(f"params of action {action!r}", str(exc)) from None
    if window_seconds is not None:
        if window_seconds <= 0:
            raise InvalidInput("window_seconds", "must be > 0")
        index = math.floor((time.time() if now is None else now) / window_seconds)
        source += f"|window={window_seconds:g}:{index}"
    return hashlib.sha256(source.encode()).hexdigest()[:16]


async def run_idempotent(
    client: MemoryClient,
    action: str,
    params: Mapping[str, Any],
    fn: Callable[[Any], Awaitable[Any] | Any],
    *,
    window_seconds: float | None = None,
    clock: Clock = time.time,
    lease_seconds: float = 60.0,
    wait_timeout: float = 120.0,
    holder: str | None = None,
) -> Any:
    """Run `fn(params)` at most once per dedup key; every caller gets the one result.

    Args:
        action, params: what identifies the side effect (the seed's `idempotent_action` arguments).
        fn: the side effect; called as `fn(params)`, may be async. Its result must be JSON.
        window_seconds, clock: an optional time window and the clock that says which window we are in.
        lease_seconds: how long a crashed holder blocks others; renewed while `fn` runs.
        wait_timeout: how long to wait for another holder before giving up.
        holder: the claim holder's name (default: host:pid:random).

    Raises:
        ClaimTimeout: another holder kept the claim past `wait_timeout`.
        NotJSON: params, or the result, are not JSON (the result case is raised after recording null).
        Whatever `fn` raises, after the claim is released and a dedup-error record written.
    """
    if not isinstance(action, str) or not action or len(action) > 120:
        raise InvalidInput("action", "must be a non-empty string of at most 120 characters (a tag)")
    key = dedup_key(action, params, window_seconds=window_seconds, now=clock() if window_seconds is not None else None)
    record_key = records.dedup_key(key)
    holder = holder or _claims.default_holder()

    # Dedup records and claims live in the kit's namespace; a record from before namespaces (or the seed's own
    # idempotent_action) is still found in the caller's, so an action done then is not done again.
    user, client = client.user, client.kit

    async def recorded() -> Any:
        found = await client.find_key(record_key) or await user.find_key(record_key)
        return _claims.MISSING if found is None else _result_of(found)

    check_scope(action=action)
    bound = current_journal()
    store = _storer(client, bound)

    with tracing.span(f"idempotent {action}", kind="tool", inputs=params, **{records.ATTR_DEDUP_KEY: key}) as span:
        if bound is not None:
            local = bound[0].find_key(bound[1], record_key)  # run before, maybe not yet delivered
            if local is not None:
                span.set_attribute(records.ATTR_DEDUP, "cached")
                return _result_of(local)
        try:
            if bound is not None and bound[0].breaker.state == OPEN:
                raise ServiceUnavailable("the memory-spine breaker is open")
            got = await _claims.acquire(client, record_key, holder, lease_seconds, wait_timeout, probe=recorded)
        except ServiceError as exc:
            if bound is None:
                raise
            # Degraded: no claim to take. The run holds its journal's lock, so on this host it is still once.
            log.warning(
                "memory service unavailable: running the action under the journal's local lock",
                extra={"action": action, "key": key, "error": str(exc)},
            )
            span.set_attribute(records.ATTR_DEDUP, "executed-degraded")
            return await _execute(client, action, params, fn, key, holder, window_seconds, clock, store)
        if not isinstance(got, _claims.Lease):
            span.set_attribute(records.ATTR_DEDUP, "cached")
            return got
        lease = got
        try:
            # The previous holder may have written the record and released between our look and our claim.
            cached = await recorded()
            if cached is not _claims.MISSING:
                span.set_attribute(records.ATTR_DEDUP, "cached")
                return cached
            span.set_attribute(records.ATTR_DEDUP, "executed")
            async with _claims.kept_alive(client, lease):
                fenced = _fenced(store, lease)
                return await _execute(client, action, params, fn, key, holder, window_seconds, clock, fenced)
        finally:
            await _claims.release(client, lease)


def _storer(client: MemoryClient, bound: tuple[Journal, str] | None) -> Callable[[dict[str, Any]], Awaitable[Any]]:
    """How the dedup record is written: straight to the service, or through the running workflow's journal."""
    if bound is None:
        return lambda body: client.ingest(**body)
    journal, workflow_id = bound
    return lambda body: journal.write(client, workflow_id, {**body, "id": new_id()})


def _fenced(
    store: Callable[[dict[str, Any]], Awaitable[Any]], lease: _claims.Lease
) -> Callable[[dict[str, Any]], Awaitable[Any]]:
    """The dedup record goes in under the claim's fence: refused (LeaseLost) once another holder took it."""

    async def write(body: dict[str, Any]) -> Any:
        fence = lease.fence_ref()
        try:
            return await store({**body, "fence": fence} if fence is not None else body)
        except StaleFence as exc:
            raise lease.fenced_out(exc) from None

    return write


def _result_of(record: Mapping[str, Any]) -> Any:
    return (record.get("metadata") or {}).get("result")


async def _execute(
    client: MemoryClient,
    action: str,
    params: Mapping[str, Any],
    fn: Callable[[Any], Any],
    key: str,
    holder: str,
    window_seconds: float | None,
    clock: Clock,
    store: Callable[[dict[str, Any]], Awaitable[Any]],
) -> Any:
    token = _key.set(key)
    try:
        result = await _claims.call(fn, params)  # a sync fn in a worker thread: the renewal keeps running
    except Exception as exc:
        await _record_error(client, action, key, holder, exc)
        raise
    finally:
        _key.reset(token)
    metadata: dict[str, Any] = {
        records.FIELD_DEDUP_KEY: key,
        "action": action,
        "holder": holder,
        "executed_at": clock(),
    }
    if window_seconds is not None:
        metadata["window_seconds"] = window_seconds
    problem = None
    try:
        metadata["result"] = _json.roundtrip(result, f"result of action {action!r}")
    except NotJSON as exc:
        problem = exc
        metadata["result"] = None
        metadata["result_error"] = str(exc)
    body = {
        "content": f"{records.dedup_key(key)} action={action}",
        "metadata": metadata,
        "tags": records.dedup_tags(action),
        "key": records.dedup_key(key),
    }
    try:
        await store(body)
    except (PayloadTooLarge, InvalidInput) as exc:
        # The action ran: record that much, or the next caller would run it again.
        metadata.update(result=None, result_error=f"result not stored: {exc}")
        await store(body)
        problem = problem or exc
    if problem is not None:
        raise problem
    return metadata["result"]


async def _record_error(client: MemoryClient, action: str, key: str, holder: str, exc: BaseException) -> None:
    try:
        await client.ingest(
            f"{records.DEDUP_ERROR}{key} action={action} error={type(exc).__name__}",
            metadata={
                records.FIELD_DEDUP_KEY: key,
                "action": action,
                "holder": holder,
                "error_type": type(exc).__name__,
                "error": str(exc)[:2000],
            },
            tags=records.dedup_error_tags(action),
        )
    except WorkflowKitError as store_exc:  # never hide the action's own error behind this one
        log.error("could not record the failed action", extra={"key": key, "error": str(store_exc)})


def _decorate(
    fn: Callable[..., Any],
    action: str | None,
    *,
    client: MemoryClient | None = None,
    exclude: Sequence[str] = (),
    **options: Any,
) -> Callable[..., Awaitable[Any]]:
    sig = inspect.signature(fn)
    name = action or fn.__name__

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        params = {k: v for k, v in bound.arguments.items() if k not in exclude}
        memory = client or current_client()
        if memory is None:
            raise WorkflowKitError(
                f"@idempotent {name!r}: no MemoryClient; pass client=, or call it inside "
                "run_workflow or `async with MemoryClient()`"
            )

        async def execute(_params: Any) -> Any:
            return await _claims.call(fn, *args, **kwargs)

        return await run_idempotent(memory, name, params, execute, **options)

    return wrapper


def idempotent(*args: Any, **kwargs: Any) -> Any:
    """Exactly-once, as a function or a decorator.

    - `await idempotent(client, action, params, fn, **options)`: the seed's `idempotent_action`, plus a
      client.
    - `@idempotent` / `@idempotent("action")` / `@idempotent(action=..., window_seconds=..., client=...,
      exclude=("arg",))`: the function's bound arguments (minus `exclude`) are the params; its name the
      default action; the client defaults to `current_client()`.

    Options: window_seconds, clock, lease_seconds, wait_timeout, holder (see `run_idempotent`).
    """
    if args and isinstance(args[0], MemoryClient):
        return run_idempotent(*args, **kwargs)
    if args and callable(args[0]) and not isinstance(args[0], str):
        if len(args) > 1:
            raise TypeError("@idempotent takes the function alone; options go by keyword")
        return _decorate(args[0], kwargs.pop("action", None), **kwargs)
    if len(args) > 1:
        raise TypeError(
            "idempotent(action, ...) as a decorator takes options by keyword; the function form "
            "is idempotent(client, action, params, fn)"
        )
    action = args[0] if args else kwargs.pop("action", None)
    return lambda fn: _decorate(fn, action, **kwargs)
