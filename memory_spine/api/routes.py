"""HTTP routes: each validates its input (pydantic), calls `MemoryService` once, returns JSON.

Most routes are plain `def`, so Starlette runs them in its thread pool and the event loop never waits on the
model, hnswlib or a write. A few are `async` because a trip through the thread pool costs more than their
work (measured: /health 0.28 ms async against 0.50 ms through the pool): /health, a repeated search answered
from the result cache, and point reads by key or id when storage is the local SQLite file (an indexed
lookup of tens of microseconds; with PostgreSQL they go through the pool). `/search` and `/ingest` await the
model on the event loop (the service's model thread batches concurrent callers) instead of holding a pool
thread each while it runs; `/ingest` awaits its (group) commit the same way, and `/search` takes the pool
only for the index and the database. No logic lives here beyond reading parameters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import PlainTextResponse, Response

from .. import namespaces as ns_
from .._version import __version__
from ..errors import InvalidInput, NotReady
from ..models import (
    BatchIn,
    BatchResponse,
    Claim,
    ClaimIn,
    ConversationIn,
    DeleteWhere,
    Filter,
    HealthResponse,
    IngestResponse,
    ListResponse,
    Memory,
    MemoryIn,
    MemoryPatch,
    RestoreIn,
    RevertIn,
    SearchQuery,
    SearchResponse,
)
from ..service import MemoryService
from .auth import authorize, requested, visible
from .errors import etag
from .responses import JSON

router = APIRouter()
log = logging.getLogger("memory_spine.api")

_ERR = {
    401: {"description": "Missing or wrong bearer token"},
    413: {"description": "Request body over the configured limit"},
    422: {"description": "Invalid input; the body names the field"},
    503: {"description": "Service still loading, or storage unavailable"},
}
# Writes that may carry a `fence` (a claim's fencing token) are refused when a newer holder took the claim.
_FENCED = {409: {"description": "stale_fence: the write's fence is no longer the claim's (the writer lost its lease)"}}


async def service(request: Request) -> MemoryService:
    # async: a plain-def dependency would cost every request one more trip through the thread pool.
    svc = request.app.state.service
    if svc is None:
        raise NotReady("the service is still loading")
    return svc


Svc = Annotated[MemoryService, Depends(service)]


async def namespace(
    namespace: Annotated[
        str | None,
        Query(description="The namespace (e.g. team/agent-7); a body's `namespace` wins over it. Default: default."),
    ] = None,
    x_memory_namespace: Annotated[
        str | None, Header(alias=ns_.HEADER, description="The namespace, for clients that set it once.")
    ] = None,
) -> str | None:
    """The request's namespace outside its body: `?namespace=`, else the X-Memory-Namespace header, else None.

    The body's `namespace` (where a route takes a body) wins over both; the service resolves and validates."""
    return namespace if namespace is not None else x_memory_namespace


Ns = Annotated[str | None, Depends(namespace)]


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


@router.post("/ingest", response_model=IngestResponse, responses={**_ERR, **_FENCED})
async def ingest(item: MemoryIn, svc: Svc, ns: Ns, request: Request) -> Response:
    """Store one memory (upsert by `id` within its namespace). A 200 means committed to disk."""
    authorize(request, ns_.resolve(item.namespace, ns))
    return JSON(await svc.ingest_async(item, ns))


@router.post("/ingest/batch", response_model=BatchResponse, responses={**_ERR, **_FENCED})
def ingest_batch(batch: BatchIn, svc: Svc, ns: Ns, request: Request) -> Response:
    """Store up to 1,000 memories in one transaction, embedded as one batch: all or nothing."""
    authorize(request, {ns_.resolve(r.namespace, batch.namespace, ns) for r in batch.records})
    return JSON(svc.ingest_batch(batch.records, batch.namespace if batch.namespace is not None else ns))


@router.post("/conversations", responses=_ERR)
def ingest_conversation(conv: ConversationIn, svc: Svc, ns: Ns, request: Request) -> Response:
    """Store a conversation turn by turn (plus window and session records for context); again = rewrite."""
    authorize(request, ns_.resolve(conv.namespace, ns))
    return JSON(svc.ingest_conversation(conv, ns))


@router.delete("/conversations/{id:path}", responses={**_ERR, 404: {"description": "No such conversation"}})
def delete_conversation(id: str, svc: Svc, ns: Ns, request: Request) -> Response:
    """Delete a conversation's turns and every record derived from them."""
    authorize(request, ns_.resolve(ns))
    return JSON(svc.delete_conversation(id, ns))


@router.post("/search", response_model=SearchResponse, responses=_ERR)
async def search(q: SearchQuery, svc: Svc, ns: Ns, request: Request) -> Response:
    """Search by exact key, meaning, keywords or both, with filters, in one namespace or several (`namespace`:
    a name, `team/` for a subtree, or a list). Each hit says its `namespace`. See the README for the rules.

    Each hit has `score`, the cosine similarity of query and record (null where no vector was scored: keyword
    mode without `min_score`, exact key answers), and `rank_score`, what the results are ordered by."""
    q = q.model_copy(update={"namespace": q.namespace if q.namespace is not None else ns_.resolve(ns)})
    authorize(request, ns_.selector(q.namespace))
    cached = svc.cached_search(q)  # the same search since the last write: no thread, no model, no index
    if cached is not None:
        return JSON(cached)
    vector = await svc.query_vector(q)  # no pool thread waits for the model
    return JSON(await run_in_threadpool(svc.search_uncached, q, vector))


@router.get("/memories", response_model=ListResponse, responses=_ERR)
def list_memories(
    svc: Svc,
    ns: Ns,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: str | None = None,
    order: Annotated[str, Query(pattern="^(newest|oldest)$")] = "newest",
    tags: Annotated[list[str] | None, Query()] = None,
    key_prefix: str | None = None,
) -> Response:
    """List memories newest (or oldest) first; pass `next_cursor` back as `cursor` for the next page."""
    authorize(request, ns_.resolve(ns))
    flt = Filter(tags=tags, key_prefix=key_prefix or None)
    return JSON(svc.list(flt, limit=limit, cursor=cursor, order=order, namespace=ns))


@router.delete("/memories", responses=_ERR)
def delete_where(req: Annotated[DeleteWhere, Body()], svc: Svc, ns: Ns, request: Request) -> Response:
    """Delete every memory of one namespace matching a filter (`dry_run: true` only counts). An empty filter is
    refused."""
    authorize(request, requested(req.namespace, ns))
    return JSON(svc.delete_where(req, ns))


_ETAG = {
    "ETag": {"description": 'The memory\'s version as a strong entity tag: "<version>"', "schema": {"type": "string"}}
}
_412 = {412: {"description": "If-Match / if_version names a version the memory no longer has", "headers": _ETAG}}
_200 = {200: {"description": "The memory, with its version", "headers": _ETAG}}
IfMatch = Annotated[
    str | None, Header(description='The ETag of a GET ("<version>") to write only if unchanged since; * = exists.')
]
IfVersion = Annotated[
    int | None, Query(ge=0, le=2**63 - 1, description="The `version` of a GET; as If-Match. 412 when it changed.")
]


def _with_etag(record: dict[str, Any]) -> Response:
    return JSON(record, headers={"ETag": etag(record["version"])})


def _condition(if_match: str | None, *given: int | None) -> tuple[int | None, str]:
    """The version a write is conditional on (None: unconditional) and the field to name if it fails.

    `If-Match` is one strong entity tag or `*` (the record must exist: true of every PATCH and DELETE of an id
    anyway). A tag this service never issued (a weak one, or not a version) matches no version: 412.
    """
    versions = {v for v in given if v is not None}
    if len(versions) > 1:
        raise InvalidInput("if_version", "is given twice with different values")
    version = versions.pop() if versions else None
    if if_match is None or if_match.strip() == "*":
        return version, "if_version"
    tag = if_match.strip()
    if len(tag) < 2 or tag[-1] != '"' or not tag.removeprefix("W/").startswith('"'):
        raise InvalidInput("If-Match", 'must be an entity tag as the ETag header gives it ("<version>"), or *')
    inner = tag.removeprefix("W/")[1:-1]
    if '"' in inner:
        raise InvalidInput("If-Match", "must be one entity tag (this service compares one version)")
    # Strong comparison (RFC 9110 13.1.1): a weak tag, or one that is not a version of ours, matches nothing.
    strong = not tag.startswith("W/") and inner.isascii() and inner.isdigit() and len(inner) <= 18
    tagged = int(inner) if strong else 0
    if version is not None and version != tagged:
        raise InvalidInput("if_version", "disagrees with the If-Match header")
    return tagged, "If-Match"


AsOf = Annotated[
    str | None,
    Query(description="A time (ISO 8601 or epoch seconds): the memory as it was then (404 if it did not exist)."),
]


def _encoded_suffix(request: Request, suffix: str) -> bool:
    """True when the path's last `/<suffix>` came as `%2F<suffix>`: part of an id (`notes%2Fhistory` is the id
    `notes/history`), not a sub-resource. Clients that quote ids (the kit, the console) reach every id so."""
    raw = request.scope.get("raw_path") or b""
    return raw.split(b"?", 1)[0].lower().endswith(b"%2f" + suffix.encode())


_HISTORY = {
    404: {"description": "No such memory, nor a kept version of one; or (revert, restore) no such kept version"},
    409: {"description": "revert: the memory is deleted (restore it); restore: it is live, or would expire at once"},
}


@router.get("/memories/{id:path}/history", responses={**_ERR, **_HISTORY})
async def memory_history(
    id: str,
    request: Request,
    svc: Svc,
    ns: Ns,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    as_of: AsOf = None,
) -> Response:
    """A memory's versions, newest first: the live one and the kept prior ones (after PATCH, upsert, revert and
    delete), each with its `version`, `valid_from` / `valid_until`, `ended_by` and the fields `changed`."""
    authorize(request, ns_.resolve(ns))
    if _encoded_suffix(request, "history"):
        return await get_memory(f"{id}/history", svc, ns, request, as_of)
    # Through the pool even on SQLite: up to `limit` versions of up to 100k characters each is no point read.
    return JSON(await run_in_threadpool(svc.history, id, limit, ns))


@router.post(
    "/memories/{id:path}/revert",
    response_model=Memory,
    responses={**_ERR, **_200, **_412, **_FENCED, **_HISTORY},
)
def revert_memory(
    id: str,
    req: RevertIn,
    svc: Svc,
    ns: Ns,
    request: Request,
    if_match: IfMatch = None,
    if_version: IfVersion = None,
) -> Response:
    """Make a NEW version equal to kept version `version` (its stored vector: no re-embedding); the expiry stays.

    With `If-Match` or `if_version` (body or query), only if the memory is still at that version: else 412."""
    authorize(request, ns_.resolve(ns))
    version, field = _condition(if_match, if_version, req.if_version)
    return _with_etag(svc.revert(id, req, version, field=field, namespace=ns))


@router.post("/memories/{id:path}/restore", response_model=Memory, responses={**_ERR, **_200, **_FENCED, **_HISTORY})
def restore_memory(
    id: str, svc: Svc, ns: Ns, request: Request, req: Annotated[RestoreIn | None, Body()] = None
) -> Response:
    """Bring a deleted memory back (within the history's retention): the version deleted, or `version`."""
    authorize(request, ns_.resolve(ns))
    return _with_etag(svc.restore_deleted(id, req, ns))


@router.get("/deleted", responses=_ERR)
def deleted_memories(
    svc: Svc,
    ns: Ns,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: str | None = None,
) -> Response:
    """A namespace's memories deleted (by id or filter) and still kept, newest deletion first; restore one with
    POST /memories/{id}/restore."""
    authorize(request, ns_.resolve(ns))
    return JSON(svc.deleted(limit, cursor, ns))


@router.get(
    "/memories/{id:path}", response_model=Memory, responses={**_ERR, **_200, 404: {"description": "No such memory"}}
)
async def get_memory(id: str, svc: Svc, ns: Ns, request: Request, as_of: AsOf = None) -> Response:
    """One memory, with its `version` in the body and as the `ETag` header (for If-Match / if_version).

    With `as_of`, the version that was live at that time (no ETag: it may not be the current version)."""
    authorize(request, ns_.resolve(ns))
    if as_of is not None:
        return JSON(await _read(svc, svc.get, id, ns, as_of))
    return _with_etag(await _read(svc, svc.get, id, ns))


@router.patch(
    "/memories/{id:path}",
    response_model=Memory,
    responses={**_ERR, **_200, **_412, **_FENCED, 404: {"description": "No such memory"}},
)
def patch_memory(
    id: str,
    patch: MemoryPatch,
    svc: Svc,
    ns: Ns,
    request: Request,
    if_match: IfMatch = None,
    if_version: IfVersion = None,
) -> Response:
    """Change part of a memory: content re-embeds, metadata merges (null removes a key), tags replace.

    With `If-Match` or `if_version` (body or query), only if the memory is still at that version: else 412."""
    authorize(request, ns_.resolve(ns))
    version, field = _condition(if_match, if_version, patch.if_version)
    return _with_etag(svc.update(id, patch, version, field=field, namespace=ns))


@router.delete("/memories/{id:path}", responses={**_ERR, **_412, 404: {"description": "No such memory"}})
def delete_memory(
    id: str, svc: Svc, ns: Ns, request: Request, if_match: IfMatch = None, if_version: IfVersion = None
) -> Response:
    """Delete one memory; with `If-Match` or `?if_version=`, only if it is still at that version: else 412."""
    authorize(request, ns_.resolve(ns))
    version, field = _condition(if_match, if_version)
    return JSON(svc.delete(id, version, field=field, namespace=ns))


@router.get("/keys", responses=_ERR)
def list_keys(
    svc: Svc,
    ns: Ns,
    request: Request,
    prefix: Annotated[str, Query(min_length=1)],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """Memories whose exact key starts with `prefix`, newest first."""
    authorize(request, ns_.resolve(ns))
    return JSON(svc.list_keys(prefix, limit, namespace=ns))


@router.get("/keys/{key:path}", response_model=Memory, responses={**_ERR, 404: {"description": "No such key"}})
async def get_key(key: str, svc: Svc, ns: Ns, request: Request) -> Response:
    """The newest memory holding exactly this key."""
    authorize(request, ns_.resolve(ns))
    return JSON(await _read(svc, svc.get_key, key, ns))


@router.post(
    "/claims",
    status_code=201,
    response_model=Claim,
    responses={**_ERR, 409: {"description": "Held by another live holder"}},
)
def claim(req: ClaimIn, svc: Svc, ns: Ns, request: Request) -> Response:
    """Claim a key for a lease if no live claim holds it (atomic): the answer carries a `fence` and a secret
    `lease_token`. With `lease_token` in the body, renew that claim instead (409 lease_lost if it is gone)."""
    authorize(request, ns_.resolve(req.namespace, ns))
    return JSON(svc.claim(req, ns), status_code=201)


@router.get("/claims/{key:path}", response_model=Claim, responses={**_ERR, 404: {"description": "No live claim"}})
def get_claim(key: str, svc: Svc, ns: Ns, request: Request) -> Response:
    authorize(request, ns_.resolve(ns))
    return JSON(svc.get_claim(key, ns))


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
    ns: Ns,
    request: Request,
    x_lease_token: Annotated[str | None, Header(description="The lease_token the claim returned.")] = None,
    lease_token: Annotated[
        str | None, Query(description="Same as X-Lease-Token; the header keeps it out of access logs.")
    ] = None,
) -> Response:
    """Release a claim: needs the `lease_token` its acquisition returned (X-Lease-Token header or ?lease_token=)."""
    authorize(request, ns_.resolve(ns))
    return JSON(svc.release(key, x_lease_token or lease_token, ns))


@router.get("/stats", responses=_ERR)
def stats(svc: Svc, ns: Ns, request: Request) -> Response:
    """Counts and tags of one namespace (default `default`), each namespace's count, index, embedder, database
    size, uptime, query-cache hit rate. A scoped token sees the counts of its own namespaces only."""
    authorize(request, ns_.resolve(ns))
    out = svc.stats(ns)
    out["namespaces"] = {n: out["namespaces"][n] for n in visible(request, out["namespaces"])}
    return JSON(out)


@router.get("/namespaces", responses=_ERR)
def list_namespaces(svc: Svc, request: Request) -> Response:
    """Every namespace holding live records, with how many: `{"namespaces": [{"namespace", "memories"}]}`; a
    scoped token's own namespaces only."""
    found = svc.namespaces()["namespaces"]
    shown = set(visible(request, [n["namespace"] for n in found]))
    return JSON({"namespaces": [n for n in found if n["namespace"] in shown]})


@router.get("/metrics", response_class=PlainTextResponse, responses=_ERR)
def metrics(request: Request, svc: Svc) -> Response:
    """Prometheus text format."""
    return Response(request.app.state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
