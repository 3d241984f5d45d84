"""MemorySpineStore: LangGraph's long-term memory `BaseStore` (what LangMem and LangGraph agents use) over Memory Spine.

    from workflow_kit.langgraph_store import MemorySpineStore
    store = MemorySpineStore("http://127.0.0.1:8788")          # token= or MEMORY_SPINE_TOKEN
    store.put(("users", "42", "memories"), "m1", {"text": "prefers dark mode"}, ttl=60 * 24)   # minutes
    store.search(("users", "42"), query="what theme does the user like?", filter={"kind": "pref"}, limit=5)
    graph = builder.compile(store=store)                        # or create_react_agent(..., store=store)

Needs the `langgraph` extra (`langgraph-checkpoint`). Everything LangGraph's store API offers is here: put / get /
search / delete / list_namespaces, batch / abatch, filters, semantic `search(query=...)`, TTL in minutes with
refresh on read. The service embeds with its own model, so the store takes no `embed` function: `index=` only
names the fields of a value to embed (LangGraph's `fields` paths, default `["$"]`, the whole value as JSON), and
`put(..., index=False)` stores an item that semantic search does not rank (it is listed after the ranked ones,
with score None, as in LangGraph's InMemoryStore).

One item is one record (`_Layout` below is the only place that knows how):

    key         {prefix}:{label}/{label}/.../:{item key}     (labels and key percent-encoded, long ones hashed)
    id          lgs-{sha256(key)[:40]}                        (so a put replaces the item and keeps created_at)
    metadata    {"namespace": [...], "key": ..., "value": {...}, "ttl_minutes": m}
    content     the text at the index fields (what the service embeds)
    tags        ["langgraph", "langgraph:store"] (+ "langgraph:unindexed")

A LangGraph namespace is a key prefix in the service's `default` namespace (mapping it onto service namespaces
would need a list over a subtree, which the service offers only in a search): `search(("users", "42"))` lists keys
starting with `{prefix}:users/42/`, which never matches namespace ("users", "420"). Filters follow LangGraph's
meaning (equality, `$eq $ne $gt $gte $lt $lte` on top-level fields; a range compares numbers with numbers and
strings with strings, as the service's `where` does); in a query search the simple ones are also sent to the
service as `where` (`value.{field}`), so the service ranks only matching items. Listing without a query and
`list_namespaces` page through the namespace's records (cost grows with the namespace, not the service).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import operator
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Any

import httpx
from langgraph.store.base import (
    BaseStore,
    GetOp,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
    get_text_at_path,
    tokenize_path,
)
from langgraph.store.memory import _compare_values, _does_match

from ._bridge import Bridge
from .client import MemoryClient
from .errors import NotFound
from .langgraph import _part

__all__ = ["MemorySpineStore"]

TAG = "langgraph"
STORE_TAG = "langgraph:store"
UNINDEXED_TAG = "langgraph:unindexed"
_BATCH = 100  # items per /ingest/batch
_PAGE = 200  # records per listing page
_MAX_CONTENT = 10_000  # characters of index text sent to be embedded (the model reads far fewer)
_MAX_RANKED = 100  # the service's largest search limit: offset + limit of a query search
_RANGES = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}
_OPS = ("$eq", "$ne", *_RANGES)


class _Layout:
    """Where a namespaced item lives in the service: the one place that maps LangGraph namespaces onto records.

    A namespace is a key prefix. Mapping it onto service namespaces (issue 18) would change `item_key`,
    `prefix_key` and `record` (and listing a subtree), not the store above them.
    """

    def __init__(self, prefix: str) -> None:
        if not prefix or any(ch in prefix for ch in ":/") or any(ch.isspace() for ch in prefix):
            raise ValueError("prefix must be non-empty, without ':', '/' or whitespace")
        self.prefix = prefix

    def prefix_key(self, namespace: tuple[str, ...]) -> str:
        """The key prefix every item in `namespace` or below it starts with."""
        return f"{self.prefix}:" + "".join(f"{_part(label)}/" for label in namespace)

    def item_key(self, namespace: tuple[str, ...], key: str) -> str:
        return f"{self.prefix_key(namespace)}:{_part(key)}"

    @staticmethod
    def record_id(item_key: str) -> str:
        return "lgs-" + hashlib.sha256(item_key.encode("utf-8", "surrogatepass")).hexdigest()[:40]

    def record(self, op: PutOp, text: str | None, ttl_minutes: float | None) -> dict[str, Any]:
        key = self.item_key(op.namespace, op.key)
        meta: dict[str, Any] = {"namespace": list(op.namespace), "key": op.key, "value": dict(op.value or {})}
        body: dict[str, Any] = {
            "id": self.record_id(key),
            "key": key,
            "content": text or f"langgraph store item {op.key[:200]}",
            "tags": [TAG, STORE_TAG] if text else [TAG, STORE_TAG, UNINDEXED_TAG],
            "importance": "low",
            "metadata": meta,
        }
        if ttl_minutes is not None:
            meta["ttl_minutes"] = ttl_minutes
            body["ttl_seconds"] = ttl_minutes * 60
        return body

    @staticmethod
    def item(rec: dict[str, Any], score: float | None = None, scored: bool = False) -> Item:
        m = rec["metadata"]
        fields = {
            "namespace": tuple(m["namespace"]),
            "key": m["key"],
            "value": m["value"],
            "created_at": datetime.fromisoformat(rec["created_at"]),
            "updated_at": datetime.fromisoformat(rec["updated_at"]),
        }
        return SearchItem(**fields, score=score) if scored else Item(**fields)


def _where(filter: dict[str, Any] | None) -> dict[str, Any] | None:
    """The part of a LangGraph filter the service's `where` says the same way: scalars and comparison operators
    on plain top-level fields. The rest is left to the check after the search (so nothing is lost, only unranked)."""
    out: dict[str, Any] = {}
    for field, cond in (filter or {}).items():
        if not isinstance(field, str) or not field or any(ch in field for ch in '.$"'):
            continue
        if isinstance(cond, str | int | float | bool) or cond is None:
            out[f"value.{field}"] = cond
        elif isinstance(cond, dict) and cond and all(op in _OPS and _scalar(v) for op, v in cond.items()):
            out[f"value.{field}"] = dict(cond)
    return out or None


def _scalar(v: Any) -> bool:
    return isinstance(v, str | int | float | bool) and not (isinstance(v, float) and v != v)


def _check_filter(filter: dict[str, Any] | None) -> None:
    """Refuse an operator LangGraph's filters do not have, before anything is asked of the service."""
    for field, cond in (filter or {}).items():
        if isinstance(cond, dict) and any(k.startswith("$") for k in cond):
            for op in cond:
                if op not in _OPS:
                    raise ValueError(f"filter {field!r}: unsupported operator {op!r}; use one of {', '.join(_OPS)}")


def _matches(filter: dict[str, Any] | None, value: dict[str, Any]) -> bool:
    """Whether an item's value passes a LangGraph filter, with the service's `where` rules where they differ from
    InMemoryStore's: a range compares numbers only with numbers and strings only with strings (InMemoryStore
    calls float() on both sides, so "5" > 3 holds there and a missing field raises TypeError). So a filter sent
    to the service as `where` and the same filter checked here always agree."""
    for field, cond in (filter or {}).items():
        actual = value.get(field)
        if isinstance(cond, dict) and any(k.startswith("$") for k in cond):
            if not all(_holds(actual, op, v) for op, v in cond.items()):
                return False
        elif not _compare_values(actual, cond):  # LangGraph's equality: nested dicts as subsets, lists exactly
            return False
    return True


def _holds(actual: Any, op: str, expected: Any) -> bool:
    if op == "$eq":
        return _compare_values(actual, expected)
    if op == "$ne":
        return not _compare_values(actual, expected)
    if isinstance(expected, str):
        comparable = isinstance(actual, str)
    else:
        comparable = _number(actual) and (_number(expected) or isinstance(expected, bool))
    return comparable and _RANGES[op](actual, expected)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


class MemorySpineStore(BaseStore):
    """LangGraph's BaseStore over Memory Spine, sync and async.

    Args:
        base_url: the service (default MEMORY_SPINE_URL, else http://127.0.0.1:8788).
        token: its bearer token (default MEMORY_SPINE_TOKEN).
        prefix: first part of every key, to keep several stores apart in one service (default "lgs").
        index: `{"fields": [...]}`: the paths of a value to embed (default `["$"]`, the whole value).
        ttl: LangGraph's TTLConfig: `default_ttl` (minutes) and `refresh_on_read` (default True). Expired items
            vanish at once from every read; the service purges them (so `sweep_interval_minutes` is not needed).
        timeout, transport: as for `MemoryClient`.
    """

    supports_ttl = True

    def __init__(
        self,
        base_url: str | None = None,
        *,
        token: str | None = None,
        prefix: str = "lgs",
        index: dict[str, Any] | None = None,
        ttl: TTLConfig | None = None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._layout = _Layout(prefix)
        fields = list((index or {}).get("fields") or ["$"])
        self._fields = [(f, f if f == "$" else tokenize_path(f)) for f in fields]
        self.ttl_config = ttl
        self._bridge = Bridge(base_url, token=token, timeout=timeout, transport=transport, name="memory-spine-store")

    async def aclose(self) -> None:
        """Close the running loop's connection pool and the sync methods' loop thread."""
        await self._bridge.aclose()

    def close(self) -> None:
        """Close the sync methods' loop thread."""
        self._bridge.close()

    async def __aenter__(self) -> MemorySpineStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __enter__(self) -> MemorySpineStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- batch: reads first (they see the store as it was), then TTL refreshes, then writes ------------------------

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """Run LangGraph store operations: every read sees the store as it was before this batch's writes.

        Puts of one (namespace, key) collapse to the last; writes go in batches of 100, each all or nothing.
        """
        ops = list(ops)
        client = self._bridge.client()
        results: list[Result] = [None] * len(ops)
        refresh: dict[str, float] = {}  # record id -> ttl minutes, for items read with refresh_ttl
        reads = []
        for i, op in enumerate(ops):
            if isinstance(op, GetOp):
                reads.append(self._get(client, i, op, results, refresh))
            elif isinstance(op, SearchOp):
                reads.append(self._search(client, i, op, results, refresh))
            elif isinstance(op, ListNamespacesOp):
                reads.append(self._list_namespaces(client, i, op, results))
            elif not isinstance(op, PutOp):
                raise ValueError(f"unknown store operation: {type(op).__name__}")
        await asyncio.gather(*reads)
        await asyncio.gather(*(self._refresh(client, rid, minutes) for rid, minutes in refresh.items()))
        await self._write(client, [op for op in ops if isinstance(op, PutOp)])
        return results

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Sync `abatch`, on the private loop thread."""
        return self._bridge.run(self.abatch(list(ops)))

    @staticmethod
    async def _refresh(client: MemoryClient, rid: str, minutes: float) -> None:
        try:
            await client.update(rid, ttl_seconds=minutes * 60)
        except NotFound:  # expired (or deleted) since it was read: nothing to keep alive
            pass

    # -- reads -------------------------------------------------------------------------------------------------

    def _note_refresh(self, rec: dict[str, Any], wanted: bool, refresh: dict[str, float]) -> None:
        minutes = rec["metadata"].get("ttl_minutes")
        if wanted and minutes is not None:
            refresh[rec["id"]] = minutes

    async def _get(
        self, client: MemoryClient, i: int, op: GetOp, results: list[Result], refresh: dict[str, float]
    ) -> None:
        rid = self._layout.record_id(self._layout.item_key(op.namespace, op.key))
        try:
            rec = await client.get(rid)
        except NotFound:
            return
        self._note_refresh(rec, op.refresh_ttl, refresh)
        results[i] = self._layout.item(rec)

    async def _scan(self, client: MemoryClient, prefix: str, tags: list[str]) -> AsyncIterator[dict[str, Any]]:
        cursor: str | None = None
        while True:
            page = await client.list(key_prefix=prefix, tags=tags, limit=_PAGE, cursor=cursor)
            for rec in page.get("results") or []:
                yield rec
            cursor = page.get("next_cursor")
            if not cursor:
                return

    async def _listed(
        self, client: MemoryClient, op: SearchOp, tags: list[str], skip: int, take: int
    ) -> list[dict[str, Any]]:
        """Records of the namespace (newest write first) whose value passes the filter: `take` after `skip`."""
        found: list[dict[str, Any]] = []
        if take <= 0:
            return found
        async for rec in self._scan(client, self._layout.prefix_key(op.namespace_prefix), tags):
            if not _matches(op.filter, rec["metadata"]["value"]):
                continue
            if skip > 0:
                skip -= 1
                continue
            found.append(rec)
            if len(found) >= take:
                break
        return found

    async def _search(
        self, client: MemoryClient, i: int, op: SearchOp, results: list[Result], refresh: dict[str, float]
    ) -> None:
        _check_filter(op.filter)
        if op.limit <= 0:
            results[i] = []
            return
        if not op.query:
            recs = await self._listed(client, op, [STORE_TAG], op.offset, op.limit)
            self._remember(recs, op, refresh)
            results[i] = [self._layout.item(rec, scored=True) for rec in recs]
            return
        if op.offset + op.limit > _MAX_RANKED:
            raise ValueError(f"a query search ranks at most {_MAX_RANKED} items: offset + limit is too large")
        found = await client.search(
            op.query,
            limit=op.offset + op.limit,
            mode="semantic",
            key_prefix=self._layout.prefix_key(op.namespace_prefix),
            tags=[STORE_TAG],
            tags_none=[UNINDEXED_TAG],
            where=_where(op.filter),
        )
        hits = [h for h in found.get("results") or [] if _matches(op.filter, h["metadata"]["value"])]
        ranked = hits[op.offset :]
        ranked_total = len(hits)
        # As LangGraph's InMemoryStore does: when fewer items are ranked than asked for, the unindexed ones follow.
        unranked: list[dict[str, Any]] = []
        if len(ranked) < op.limit:
            skip = max(0, op.offset - ranked_total)
            unranked = await self._listed(client, op, [UNINDEXED_TAG], skip, op.limit - len(ranked))
        self._remember([*ranked, *unranked], op, refresh)
        results[i] = [self._layout.item(h, float(h["score"]), scored=True) for h in ranked] + [
            self._layout.item(rec, scored=True) for rec in unranked
        ]

    def _remember(self, recs: list[dict[str, Any]], op: SearchOp, refresh: dict[str, float]) -> None:
        for rec in recs:
            self._note_refresh(rec, op.refresh_ttl, refresh)

    async def _list_namespaces(self, client: MemoryClient, i: int, op: ListNamespacesOp, results: list[Result]) -> None:
        conditions = op.match_conditions or ()
        fixed: tuple[str, ...] = ()
        for cond in conditions:
            if cond.match_type == "prefix":
                lead = []
                for label in cond.path:
                    if label == "*":
                        break
                    lead.append(label)
                if len(lead) > len(fixed):
                    fixed = tuple(lead)
        seen: set[tuple[str, ...]] = set()
        async for rec in self._scan(client, self._layout.prefix_key(fixed), [STORE_TAG]):
            ns = tuple(rec["metadata"]["namespace"])
            if all(_does_match(cond, ns) for cond in conditions):
                seen.add(ns[: op.max_depth] if op.max_depth is not None else ns)
        results[i] = sorted(seen)[op.offset : op.offset + op.limit]

    # -- writes ------------------------------------------------------------------------------------------------

    def _text(self, op: PutOp) -> str | None:
        """What the service embeds for this item: the text at its index fields, or None (not ranked)."""
        if op.index is False or op.value is None:
            return None
        paths = self._fields if op.index is None else [(f, f if f == "$" else tokenize_path(f)) for f in op.index]
        texts: list[str] = []
        for _, path in paths:
            texts += [t for t in get_text_at_path(op.value, path) if t.strip()]
        text = "\n".join(texts)[:_MAX_CONTENT]
        return text if text.strip() else None

    async def _write(self, client: MemoryClient, puts: list[PutOp]) -> None:
        last: dict[tuple[tuple[str, ...], str], PutOp] = {}
        for op in puts:
            last[(tuple(op.namespace), op.key)] = op
        bodies: list[dict[str, Any]] = []
        deletes: list[str] = []
        for op in last.values():
            if op.value is None:
                deletes.append(self._layout.record_id(self._layout.item_key(op.namespace, op.key)))
                continue
            if not isinstance(op.value, dict):
                raise ValueError(f"a store value must be a dict, not {type(op.value).__name__} (key {op.key!r})")
            json.dumps(op.value)  # a value that is not JSON fails here, naming its type, before anything is sent
            bodies.append(self._layout.record(op, self._text(op), op.ttl))

        async def delete(rid: str) -> None:
            try:
                await client.delete(rid)
            except NotFound:
                pass

        for start in range(0, len(bodies), _BATCH):
            await client.ingest_batch(bodies[start : start + _BATCH])
        await asyncio.gather(*(delete(rid) for rid in deletes))
