"""HTTP routes: each validates its input (pydantic), calls `MemoryService` once, returns JSON.

Most routes are plain `def`, so Starlette runs them in its thread pool and the event loop never waits on the
model, hnswlib or a write. A few are `async` because a trip through the thread pool costs more than their
work (measured: /health 0.28 ms async against 0.50 ms through the pool): /health, a repeated search answered
from the result cache, and point reads by key or id when storage is the local SQLite file (an indexed
lookup of tens of microseconds; with PostgreSQL they go through the pool). No logic lives here beyond
reading parameters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import PlainTextResponse, Response

from .. import __version__
from ..errors import NotReady
from ..models import (
    BatchIn,
    BatchResponse,
    Claim,
    ClaimIn,
    DeleteWhere,
    Filter,
    HealthResponse,
    IngestResponse,
    ListResponse,
    Memory,
    MemoryIn,
    MemoryPatch,
    SearchQuery,
    SearchResponse,
)
from ..service import MemoryService
from .responses import JSON

router = APIRouter()
log = logging.getLogger("memory_spine.api")

_ERR = {
    401: {"description": "Missing or wrong bearer token"},
    413: {"description": "Request body over the configured limit"},
    422: {"description": "Invalid input; the body names the field"},
    503: {"description": "Service still loading, or storage unavailable"},
}


async def service(request: Request) -> MemoryService:
    # async: a plain-def dependency would cost every request one more trip through the thread pool.
    svc = request.app.state.service
    if svc is None:
        raise NotReady("the service is still loading")
    return svc


Svc = Annotated[MemoryService, Depends(service)]


async def _read(svc: MemoryService, fn: Callable[..., Any], *args: Any) -> Any:
    """A cheap read: inline on the event loop when storage is a local file, else through the thread pool."""
    if svc.reads_are_local:
        return fn(*args)
    return await run_in_threadpool(fn, *args)


@router.get("/health", response_model=HealthResponse, responses={503: {"description": "Still loading"}})
async def health(request: Request) -> Response:
    """200 once ready to serve, 503 while the index or model is still loading or the database is unreachable."""
    state = request.app.state
    if state.service is None:
        body: dict[str, Any] = {"status": "loading" if state.load_error is None else "failed", "version": __version__}
        if state.load_error is not None:
            body["error"] = state.load_error
        return JSON(body, status_code=503)
    # Unauthenticated: the backend and whether it answers, never its address or the error's text (logged instead).
    db = await _read(state.service, state.service.health)
    database = {"backend": db["backend"], "status": db["status"]}
    if db["status"] != "ok":
        log.warning("database unavailable: %s", db.get("error"), extra={"event": "health_database"})
        return JSON({"status": "unavailable", "version": __version__, "database": database}, status_code=503)
    return JSON({"status": "ok", "version": __version__, "database": database})


@router.post("/ingest", response_model=IngestResponse, responses=_ERR)
def ingest(item: MemoryIn, svc: Svc) -> Response:
    """Store one memory (upsert by `id`). A 200 means committed to disk."""
    return JSON(svc.ingest(item))


@router.post("/ingest/batch", response_model=BatchResponse, responses=_ERR)
def ingest_batch(batch: BatchIn, svc: Svc) -> Response:
    """Store up to 1,000 memories in one transaction, embedded as one batch: all or nothing."""
    return JSON(svc.ingest_batch(batch.records))


@router.post("/search", response_model=SearchResponse, responses=_ERR)
async def search(q: SearchQuery, svc: Svc) -> Response:
    """Search by exact key, meaning, keywords or both, with filters. See the README for the rules."""
    cached = svc.cached_search(q)  # the same search since the last write: no thread, no model, no index
    return JSON(cached if cached is not None else await run_in_threadpool(svc.search_uncached, q))


@router.get("/memories", response_model=ListResponse, responses=_ERR)
def list_memories(
    svc: Svc,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: str | None = None,
    order: Annotated[str, Query(pattern="^(newest|oldest)$")] = "newest",
    tags: Annotated[list[str] | None, Query()] = None,
    key_prefix: str | None = None,
) -> Response:
    """List memories newest (or oldest) first; pass `next_cursor` back as `cursor` for the next page."""
    flt = Filter(tags=tags, key_prefix=key_prefix or None)
    return JSON(svc.list(flt, limit=limit, cursor=cursor, order=order))


@router.delete("/memories", responses=_ERR)
def delete_where(req: Annotated[DeleteWhere, Body()], svc: Svc) -> Response:
    """Delete every memory matching a filter (`dry_run: true` only counts). An empty filter is refused."""
    return JSON(svc.delete_where(req))


@router.get("/memories/{id:path}", response_model=Memory, responses={**_ERR, 404: {"description": "No such memory"}})
async def get_memory(id: str, svc: Svc) -> Response:
    return JSON(await _read(svc, svc.get, id))


@router.patch("/memories/{id:path}", response_model=Memory, responses={**_ERR, 404: {"description": "No such memory"}})
def patch_memory(id: str, patch: MemoryPatch, svc: Svc) -> Response:
    """Change part of a memory: content re-embeds, metadata merges (null removes a key), tags replace."""
    return JSON(svc.update(id, patch))


@router.delete("/memories/{id:path}", responses={**_ERR, 404: {"description": "No such memory"}})
def delete_memory(id: str, svc: Svc) -> Response:
    return JSON(svc.delete(id))


@router.get("/keys", responses=_ERR)
def list_keys(
    svc: Svc, prefix: Annotated[str, Query(min_length=1)], limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> Response:
    """Memories whose exact key starts with `prefix`, newest first."""
    return JSON(svc.list_keys(prefix, limit))


@router.get("/keys/{key:path}", response_model=Memory, responses={**_ERR, 404: {"description": "No such key"}})
async def get_key(key: str, svc: Svc) -> Response:
    """The newest memory holding exactly this key."""
    return JSON(await _read(svc, svc.get_key, key))


@router.post(
    "/claims",
    status_code=201,
    response_model=Claim,
    responses={**_ERR, 409: {"description": "Held by another live holder"}},
)
def claim(req: ClaimIn, svc: Svc) -> Response:
    """Claim a key for a lease if no live claim holds it (atomic): the answer carries a `fence` and a secret
    `lease_token`. With `lease_token` in the body, renew that claim instead (409 lease_lost if it is gone)."""
    return JSON(svc.claim(req), status_code=201)


@router.get("/claims/{key:path}", response_model=Claim, responses={**_ERR, 404: {"description": "No live claim"}})
def get_claim(key: str, svc: Svc) -> Response:
    return JSON(svc.get_claim(key))


@router.delete(
    "/claims/{key:path}",
    responses={
        **_ERR,
        403: {"description": "No lease_token given"},
        404: {"description": "No live claim"},
        409: {"description": "Held under another lease (lease_lost)"},
    },
)
def release_claim(
    key: str,
    svc: Svc,
    x_lease_token: Annotated[str | None, Header(description="The lease_token the claim returned.")] = None,
    lease_token: Annotated[
        str | None, Query(description="Same as X-Lease-Token; the header keeps it out of access logs.")
    ] = None,
) -> Response:
    """Release a claim: needs the `lease_token` its acquisition returned (X-Lease-Token header or ?lease_token=)."""
    return JSON(svc.release(key, x_lease_token or lease_token))


@router.get("/stats", responses=_ERR)
def stats(svc: Svc) -> Response:
    """Counts, index, embedder, database size, uptime, query-cache hit rate."""
    return JSON(svc.stats())


@router.get("/metrics", response_class=PlainTextResponse, responses=_ERR)
def metrics(request: Request, svc: Svc) -> Response:
    """Prometheus text format."""
    return Response(request.app.state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
