"""MemoryClient: the kit's one way to talk to Memory Spine, over HTTP or in-process.

One pooled `httpx.AsyncClient` per MemoryClient; `transport=httpx.ASGITransport(app=...)` runs it against
an in-process app. Every call has a timeout; connection errors, timeouts and 5xx answers are retried with
exponential backoff and jitter (tenacity), 4xx never. Errors come out as the `errors.py` tree. Methods mirror
docs/http-api.md one to one and return the decoded JSON (plain dicts). Writes without an `id` get one made
here, so a retried ingest upserts instead of duplicating.

Checkpoint records are built here (`checkpoint`, `latest_checkpoint`) because the seed's formats are part of
the wire contract; running workflows is durable.py's job, dedup idempotency.py's.

**Namespaces.** `MemoryClient(namespace="team/a")` sends every request with the `X-Memory-Namespace` header (a
request's own `namespace` argument wins); without it the service's `default` applies. The kit's own records
(checkpoints, dedup, runs, escalations, traces, routing outcomes) go through `client.kit`, the same connection
pool addressed to the system namespace `_kit/<namespace>`, so users' searches and lists never meet them.
"""

from __future__ import annotations

import contextvars
import os
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random

from . import metrics as _metrics
from . import records, spans
from .errors import InvalidInput, ReadOnly, ServiceError, ServiceUnavailable, StorageFull, from_response
from .records import KIT_PREFIX

DEFAULT_URL = "http://127.0.0.1:8788"
NAMESPACE_HEADER = "X-Memory-Namespace"
DEFAULT_NAMESPACE = "default"

_current: contextvars.ContextVar[MemoryClient | None] = contextvars.ContextVar("workflow_kit_client", default=None)


def current_client() -> MemoryClient | None:
    """The MemoryClient of the enclosing `async with MemoryClient()` block or running workflow, if any."""
    return _current.get()


# 50 ms, 100 ms, 200 ms ... capped at 2 s, plus up to 20 ms of jitter so racing workers spread out.
_BACKOFF = wait_exponential(multiplier=0.05, max=2.0) + wait_random(0, 0.02)


def _retryable(exc: BaseException) -> bool:
    # 5xx and no-answer failures may pass; a full disk or a read-only store will not fix itself in a second.
    return isinstance(exc, ServiceError) and not isinstance(exc, StorageFull | ReadOnly)


def _clean(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def _key_path(key: str) -> str:
    if not key:
        raise InvalidInput("key", "must not be empty")
    return quote(key, safe=":")


class MemoryClient:
    """Async client for every endpoint of the service, plus checkpoint helpers.

    Use as `async with MemoryClient() as client:` (or call `aclose()`). Inside the block it is also the
    `current_client()`, which `@idempotent` functions fall back to.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
        namespace: str | None = None,
    ) -> None:
        self.base_url = (base_url or os.environ.get("MEMORY_SPINE_URL") or DEFAULT_URL).rstrip("/")
        # None: send no header (the service's `default`); the kit's own records go to kit_namespace(...).
        self.namespace = namespace
        self._kit: MemoryClient | None = None
        token = token if token is not None else os.environ.get("MEMORY_SPINE_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.retries = max(0, retries)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=httpx.Timeout(timeout), transport=transport
        )
        # Tests replace this to check the backoff without waiting for it.
        self._sleep: Callable[[float], Awaitable[None]] | None = None
        self._tokens: list[contextvars.Token[MemoryClient | None]] = []

    async def __aenter__(self) -> MemoryClient:
        self._tokens.append(_current.set(self))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._tokens:
            token = self._tokens.pop()
            try:
                _current.reset(token)
            except ValueError:  # exited in another context than entered (e.g. a pytest fixture): just clear
                _current.set(None)
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    @property
    def kit(self) -> MemoryClient:
        """This client addressed to `_kit/<namespace>`, where the kit keeps its own records (same pool)."""
        if self._kit is None:
            kit = _View(self, KIT_PREFIX + (self.namespace or DEFAULT_NAMESPACE), user=self)
            kit._kit = kit
            self._kit = kit
        return self._kit

    @property
    def user(self) -> MemoryClient:
        """The client addressed to the caller's namespace (itself; for `client.kit`, the client it came from)."""
        return self

    def in_namespace(self, namespace: str) -> MemoryClient:
        """This client (same pool) addressed to `namespace`: its `.kit` is `_kit/<namespace>`."""
        return _View(self, namespace)

    def _namespaced(self, headers: Any) -> Any:
        if self.namespace is None:
            return headers
        return {NAMESPACE_HEADER: self.namespace, **(headers or {})}

    # -- the one place requests are sent ---------------------------------------------------------------------

    async def _send(
        self, method: str, path: str, *, json: Any = None, params: Any = None, headers: Any = None
    ) -> httpx.Response:
        try:
            resp = await self._http.request(method, path, json=json, params=params, headers=self._namespaced(headers))
        except httpx.TimeoutException as exc:
            raise ServiceUnavailable(f"{method} {path}: timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise ServiceUnavailable(f"{method} {path}: cannot reach {self.base_url}: {exc!r}") from exc
        if resp.status_code >= 400:
            try:
                body = resp.json()
            except ValueError:
                body = None
            raise from_response(resp.status_code, body, resp.text)
        return resp

    async def _request(
        self, op: str, method: str, path: str, *, json: Any = None, params: Any = None, headers: Any = None
    ) -> Any:
        _metrics.current().memory_op(op)
        with spans.memory_span(op, method, path) as span:
            kwargs: dict[str, Any] = {}
            if self._sleep is not None:
                kwargs["sleep"] = self._sleep
            retrying = AsyncRetrying(
                stop=stop_after_attempt(self.retries + 1),
                wait=_BACKOFF,
                retry=retry_if_exception(_retryable),
                reraise=True,
                **kwargs,
            )
            attempts = 0
            try:
                async for attempt in retrying:
                    with attempt:
                        attempts += 1
                        resp = await self._send(method, path, json=json, params=params, headers=headers)
            finally:
                if span is not None:
                    span.set_attribute(records.ATTR_ATTEMPTS, attempts)
            if span is not None:
                span.set_attribute("http.response.status_code", resp.status_code)
            if resp.headers.get("content-type", "").startswith("application/json"):
                return resp.json()
            return resp.text

    # -- records ---------------------------------------------------------------------------------------------

    def _ingest_body(self, content: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        body = _clean({"content": content, **fields})
        body.setdefault("id", new_id())  # a retried write upserts this id instead of adding a twin
        return body

    async def ingest(
        self,
        content: str,
        *,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        id: str | None = None,
        importance: str | None = None,
        key: str | None = None,
        ttl_seconds: float | None = None,
        expires_at: str | float | None = None,
        fence: Mapping[str, Any] | None = None,
        namespace: str | None = None,
    ) -> dict[str, Any]:
        """Store one memory; returns `{"id", "key", "created"}`. An existing `id` (in its namespace) is upserted.

        `fence` ({"key", "token"}: a claim's key and fence) makes it a write under that claim: refused with
        StaleFence once another holder has taken the key over."""
        body = self._ingest_body(
            content,
            {
                "tags": list(tags) if tags is not None else None,
                "metadata": metadata,
                "id": id,
                "importance": importance,
                "key": key,
                "ttl_seconds": ttl_seconds,
                "expires_at": expires_at,
                "fence": dict(fence) if fence is not None else None,
                "namespace": namespace,
            },
        )
        return await self._request("ingest", "POST", "/ingest", json=body)

    async def ingest_batch(self, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Store up to 1000 ingest bodies at once, all or nothing; returns `{"ids", "created"}`."""
        bodies = [self._ingest_body(r["content"], {k: v for k, v in r.items() if k != "content"}) for r in records]
        return await self._request("ingest_batch", "POST", "/ingest/batch", json={"records": bodies})

    async def search(
        self,
        query: str,
        *,
        limit: int | None = None,
        mode: str | None = None,
        tags: Sequence[str] | None = None,
        tags_all: Sequence[str] | None = None,
        tags_none: Sequence[str] | None = None,
        where: Mapping[str, Any] | None = None,
        created_after: str | float | None = None,
        created_before: str | float | None = None,
        importance: str | Sequence[str] | None = None,
        min_score: float | None = None,
        key: str | None = None,
        key_prefix: str | None = None,
        explain: bool | None = None,
        namespace: str | Sequence[str] | None = None,
        occurred_after: str | float | None = None,
        occurred_before: str | float | None = None,
        when: str | None = None,
        as_of: str | float | None = None,
        conversation: str | None = None,
        granularity: str | None = None,
    ) -> dict[str, Any]:
        """Search; returns `{"results": [hit, ...], "plan"?: ...}` like the service (and the seed's mocks).

        `namespace`: one, several, or `team/` for a subtree (default: the client's). `when` ("last week", "in May
        2023") keeps records whose `occurred_at` falls in that range, read against `as_of` (default now); the
        answer's `time_range` says which. `conversation` searches one conversation's turns
        (`ingest_conversation`), each turn once."""
        body = _clean(
            {
                "query": query,
                "limit": limit,
                "mode": mode,
                "tags": tags,
                "tags_all": tags_all,
                "tags_none": tags_none,
                "where": where,
                "created_after": created_after,
                "created_before": created_before,
                "importance": importance,
                "min_score": min_score,
                "key": key,
                "key_prefix": key_prefix,
                "explain": explain,
                "namespace": namespace if isinstance(namespace, str | None) else list(namespace),
                "occurred_after": occurred_after,
                "occurred_before": occurred_before,
                "when": when,
                "as_of": as_of,
                "conversation": conversation,
                "granularity": granularity,
            }
        )
        return await self._request("search", "POST", "/search", json=body)

    async def ingest_conversation(self, conversation: Mapping[str, Any]) -> dict[str, Any]:
        """Store a conversation turn by turn: `{"id", "sessions": [{"id", "date", "turns": [{"id", "speaker",
        "text", "captions"}]}], "tags"}`. Ingesting it again rewrites it; returns `{"id", "turns", "records",
        "created", "deleted"}`."""
        return await self._request("ingest_conversation", "POST", "/conversations", json=dict(conversation))

    async def delete_conversation(self, conversation_id: str) -> dict[str, Any]:
        """Delete a conversation's turns and the records derived from them; raises NotFound."""
        path = f"/conversations/{quote(conversation_id, safe='')}"
        return await self._request("delete_conversation", "DELETE", path)

    async def get(self, memory_id: str, *, as_of: str | float | datetime | None = None) -> dict[str, Any]:
        """One memory by id, with its `version` (for `if_version`); raises NotFound.

        With `as_of` (a datetime, ISO 8601 text or epoch seconds), the version that was live then (NotFound if
        the memory did not exist then, or that version is past the history's retention)."""
        if isinstance(as_of, datetime):
            as_of = as_of.isoformat()
        params = _clean({"as_of": None if as_of is None else str(as_of)})
        return await self._request("get", "GET", f"/memories/{quote(memory_id, safe='')}", params=params or None)

    async def history(self, memory_id: str, *, limit: int | None = None) -> dict[str, Any]:
        """A memory's versions, newest first: `{"id", "current_version", "deleted_at", "versions": [...]}`, each
        version with `version`, `valid_from`, `valid_until`, `ended_by` and `changed`; raises NotFound."""
        params = _clean({"limit": limit})
        return await self._request(
            "history", "GET", f"/memories/{quote(memory_id, safe='')}/history", params=params or None
        )

    async def revert(
        self,
        memory_id: str,
        version: int,
        *,
        if_version: int | None = None,
        fence: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Make a new version of the memory equal to kept version `version`; returns the memory (new `version`).

        Raises NotFound (no such version), Conflict (the memory is deleted: `restore` it), PreconditionFailed
        (with `if_version`, when it changed), StaleFence (with a `fence` no longer the claim's)."""
        body = _clean({"version": version, "if_version": if_version, "fence": dict(fence) if fence else None})
        return await self._request("revert", "POST", f"/memories/{quote(memory_id, safe='')}/revert", json=body)

    async def restore(
        self, memory_id: str, *, version: int | None = None, fence: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Bring a deleted memory back (the version deleted, or `version`); returns it. Conflict while it is live,
        NotFound when nothing of it is kept."""
        body = _clean({"version": version, "fence": dict(fence) if fence else None})
        return await self._request("restore", "POST", f"/memories/{quote(memory_id, safe='')}/restore", json=body)

    async def deleted(self, *, limit: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        """Deleted memories still kept, newest deletion first: `{"results", "next_cursor"}`."""
        return await self._request("deleted", "GET", "/deleted", params=_clean({"limit": limit, "cursor": cursor}))

    async def update(self, memory_id: str, *, if_version: int | None = None, **fields: Any) -> dict[str, Any]:
        """PATCH a memory: content, tags (replace), metadata (merge; None removes a key), importance, key,
        ttl_seconds, expires_at. Returns the updated memory (with its new `version`).

        With `if_version` (the `version` of a `get`), only if nobody wrote it since: else PreconditionFailed,
        whose `.current_version` is the version now; read again and redo the change."""
        body = {**fields, **({"if_version": if_version} if if_version is not None else {})}
        return await self._request("update", "PATCH", f"/memories/{quote(memory_id, safe='')}", json=body)

    async def delete(self, memory_id: str, *, if_version: int | None = None) -> dict[str, Any]:
        """Delete one memory; returns `{"deleted": 1}`, raises NotFound. With `if_version`, only if it is still
        at that version: else PreconditionFailed."""
        params = _clean({"if_version": if_version})
        return await self._request("delete", "DELETE", f"/memories/{quote(memory_id, safe='')}", params=params or None)

    async def list(
        self,
        *,
        limit: int | None = None,
        cursor: str | None = None,
        tags: Sequence[str] | None = None,
        key_prefix: str | None = None,
        order: str | None = None,
    ) -> dict[str, Any]:
        """One page of memories: `{"results", "next_cursor"}`; pass `next_cursor` back for the next page."""
        params = _clean(
            {
                "limit": limit,
                "cursor": cursor,
                "tags": list(tags) if tags else None,
                "key_prefix": key_prefix,
                "order": order,
            }
        )
        return await self._request("list", "GET", "/memories", params=params)

    async def delete_where(self, *, dry_run: bool = False, **filters: Any) -> dict[str, Any]:
        """Delete every memory matching /search's filter fields; `{"deleted": n}` or `{"would_delete": n}`."""
        body = _clean({**filters, "dry_run": dry_run or None})
        return await self._request("delete_where", "DELETE", "/memories", json=body)

    async def get_key(self, key: str) -> dict[str, Any]:
        """The newest memory holding exactly `key`; raises NotFound."""
        return await self._request("get_key", "GET", f"/keys/{_key_path(key)}")

    async def find_key(self, key: str) -> dict[str, Any] | None:
        """Like `get_key`, but None when no memory holds the key."""
        from .errors import NotFound

        try:
            return await self.get_key(key)
        except NotFound:
            return None

    async def list_keys(self, prefix: str | None = None, *, limit: int | None = None) -> dict[str, Any]:
        """Memories with a key starting with `prefix`, newest first: `{"results": [...]}`."""
        return await self._request("list_keys", "GET", "/keys", params=_clean({"prefix": prefix, "limit": limit}))

    # -- claims ----------------------------------------------------------------------------------------------

    async def claim(
        self,
        key: str,
        *,
        holder: str | None = None,
        lease_seconds: float | None = None,
        lease_token: str | None = None,
    ) -> dict[str, Any]:
        """Take the claim on `key`; returns it with its `fence` and secret `lease_token` (keep both).

        With `lease_token`, renew that claim instead; raises LeaseLost if it is not the key's claim any more.
        Raises Conflict while another live claim holds the key; `exc.claim` names its holder.
        """
        body = _clean({"key": key, "holder": holder, "lease_seconds": lease_seconds, "lease_token": lease_token})
        return await self._request("claim", "POST", "/claims", json=body)

    async def get_claim(self, key: str) -> dict[str, Any]:
        """The live claim on `key`; raises NotFound when there is none (or it expired)."""
        return await self._request("get_claim", "GET", f"/claims/{_key_path(key)}")

    async def release(self, key: str, *, lease_token: str) -> dict[str, Any]:
        """Give up a claim, proving it is ours with the `lease_token` it returned; raises LeaseLost if the key's
        claim is another lease now, NotFound if nobody holds it."""
        return await self._request(
            "release", "DELETE", f"/claims/{_key_path(key)}", headers={"X-Lease-Token": lease_token}
        )

    # -- service ---------------------------------------------------------------------------------------------

    async def stats(self) -> dict[str, Any]:
        """Counts, tags, index and embedder facts."""
        return await self._request("stats", "GET", "/stats")

    async def namespaces(self) -> dict[str, Any]:
        """Every namespace holding live memories, with how many: `{"namespaces": [{"namespace", "memories"}]}`
        (sorted by name; whatever namespace this client is addressed to)."""
        return await self._request("namespaces", "GET", "/namespaces")

    async def health(self) -> dict[str, Any]:
        """`{"status": "ok", "version"}`; ServiceUnavailable while the service loads (after retries)."""
        return await self._request("health", "GET", "/health")

    async def metrics(self) -> str:
        """Prometheus text."""
        return await self._request("metrics", "GET", "/metrics")

    # -- checkpoints (the seed's records) --------------------------------------------------------------------

    async def checkpoint(
        self,
        workflow_id: str,
        step: str,
        data: Mapping[str, Any] | None = None,
        *,
        fence: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Store a checkpoint as the seed does: content `checkpoint:{workflow_id}:{step}`, metadata
        `{workflow_id, step, **data}`, tags `["checkpoint", "workflow", workflow_id]`; `fence` as for `ingest`.
        It goes to the kit's namespace (`client.kit`), out of users' searches."""
        body = checkpoint_body(workflow_id, step, data, fence=fence)
        return await self.kit.ingest(body.pop("content"), **body)

    async def latest_checkpoint(self, workflow_id: str, step: str | None = None) -> dict[str, Any] | None:
        """The newest checkpoint memory of the workflow (or of one step of it), or None.

        Returns the whole memory; its `metadata` is what the seed's `resume_from_checkpoint` returns. Read from
        the kit's namespace, else from this client's (checkpoints written before namespaces, or by the seed).
        """
        check_workflow_id(workflow_id)
        if step is not None:
            check_step_name(step)
            key = records.checkpoint_key(workflow_id, step)
            return await self.kit.find_key(key) or await self.user.find_key(key)
        for client in (self.kit, self.user):
            results = (await client.list_keys(records.checkpoint_prefix(workflow_id), limit=1)).get("results")
            if results:
                return results[0]
        return None


class _View(MemoryClient):
    """A MemoryClient addressed to another namespace: shares the pool, retries and sleep of the one it came from."""

    def __init__(self, parent: MemoryClient, namespace: str, user: MemoryClient | None = None) -> None:
        # No super().__init__: nothing of its own to open.
        self._root: MemoryClient = parent._root if isinstance(parent, _View) else parent
        self.namespace = namespace
        self._user = user or self
        self._kit = None
        self._tokens = []

    base_url = property(lambda self: self._root.base_url)  # type: ignore[assignment]
    retries = property(lambda self: self._root.retries)  # type: ignore[assignment]
    _http = property(lambda self: self._root._http)  # type: ignore[assignment]
    _sleep = property(lambda self: self._root._sleep)  # type: ignore[assignment]

    @property
    def user(self) -> MemoryClient:
        return self._user

    async def aclose(self) -> None:
        """Nothing: the pool is the parent client's."""


def new_id() -> str:
    """A fresh record id, shaped like the ones the service generates (a dashed UUID4), whoever writes the record."""
    return str(uuid.uuid4())


def checkpoint_body(
    workflow_id: str, step: str, data: Mapping[str, Any] | None = None, *, fence: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The ingest body of a seed-format checkpoint, with a fresh id (a journal replays it under that id)."""
    check_workflow_id(workflow_id)
    check_step_name(step)
    return _clean(
        {
            "fence": dict(fence) if fence is not None else None,
            "content": records.checkpoint_key(workflow_id, step),
            "metadata": {"workflow_id": workflow_id, "step": step, **(data or {})},
            "tags": records.checkpoint_tags(workflow_id),
            "key": records.checkpoint_key(workflow_id, step),
            "id": new_id(),
        }
    )


def check_workflow_id(workflow_id: str) -> None:
    """Workflow ids end up inside keys: no whitespace (the seed's key form) and no ':' (the key separator)."""
    if not isinstance(workflow_id, str) or not workflow_id:
        raise InvalidInput("workflow_id", "must be a non-empty string")
    if any(ch.isspace() for ch in workflow_id) or ":" in workflow_id:
        raise InvalidInput("workflow_id", f"{workflow_id!r} must not contain whitespace or ':'")


def check_step_name(step: str) -> None:
    """Step names are the last part of a checkpoint key: no whitespace, no ':'."""
    if not isinstance(step, str) or not step:
        raise InvalidInput("step", "must be a non-empty string")
    if any(ch.isspace() for ch in step) or ":" in step:
        raise InvalidInput("step", f"{step!r} must not contain whitespace or ':'")
