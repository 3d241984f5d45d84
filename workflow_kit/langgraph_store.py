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

One item is one record, in the service namespace of its LangGraph namespace (`_Layout` below is the only place that
knows how):

    namespace   {prefix}/{label}/{label}/...                 (("users", "42") -> lgs/users/42; see _Layout)
    id          lgs-{sha256(item key)[:40]}                  (so a put replaces the item and keeps created_at)
    key         the item key, percent-encoded (long ones hashed): key_get finds it in that namespace
    metadata    {"namespace": [...], "key": ..., "value": {...}, "ttl_minutes": m}
    content     the text at the index fields (what the service embeds)
    tags        ["langgraph", "langgraph:store"] (+ "langgraph:unindexed")

So the service's namespaces, scoped tokens and tools see LangGraph's: an MCP agent reading `lgs/users/42` reads
user 42's memories. `search(("users",))` is a search of the service's subtree `lgs/users/` (which never reaches
("users2",)); listing without a query reads each namespace of the subtree (GET /namespaces) newest first and
merges them; `list_namespaces` decodes GET /namespaces. Filters follow LangGraph's meaning (equality, `$eq $ne
$gt $gte $lt $lte` on top-level fields; a range compares numbers with numbers and strings with strings, as the
service's `where` does); in a query search the simple ones are also sent to the service as `where`
(`value.{field}`), so the service ranks only matching items. Items an earlier version wrote as key prefixes in
`default` are moved into their namespaces by `migrate_legacy()`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import operator
import re
import string
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import unquote

import httpx
from langgraph.store.base import (
    BaseStore,
    GetOp,
    InvalidNamespaceError,
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
_PLAIN = frozenset(string.ascii_letters + string.digits + "_-:")  # kept as they are in a namespace segment
_SEGMENT = re.compile(r"[A-Za-z0-9_\-.:]{1,64}")  # the service's namespace segment
_MAX_SEGMENT = 64
_MAX_NAMESPACE = 255
_FANOUT = 16  # namespaces read at once
T = TypeVar("T")
R = TypeVar("R")
DEFAULT_NAMESPACE = "default"


class _Layout:
    """Where a namespaced item lives in the service: the one place that maps LangGraph namespaces onto records.

    A LangGraph namespace is a service namespace under the store's root: `("users", "42")` -> `lgs/users/42`.
    Each label is one segment, written in the segment alphabet (letters, digits, `_ - :`; any other character,
    `.` included, as `.XX` per UTF-8 byte, so `/` never splits a label and the mapping is one-to-one); a label
    whose segment would pass 64 characters becomes `..` + 40 hex digits of its SHA-256 (escapes never yield
    `..`). A namespace is under another exactly when its service namespace is, segment by segment, so the
    service's subtree selector (`lgs/users/`) reaches exactly LangGraph's namespace prefix.
    """

    def __init__(self, prefix: str) -> None:
        if not _SEGMENT.fullmatch(prefix or "") or prefix in (".", ".."):
            raise ValueError("prefix must be 1-64 letters, digits, '_', '-', '.' or ':' (one namespace segment)")
        self.prefix = prefix

    @staticmethod
    def segment(label: str) -> str:
        out = "".join(
            ch if ch in _PLAIN else "".join(f".{b:02X}" for b in ch.encode("utf-8", "surrogatepass")) for ch in label
        )
        if len(out) <= _MAX_SEGMENT:
            return out
        return ".." + hashlib.sha256(label.encode("utf-8", "surrogatepass")).hexdigest()[:40]

    @staticmethod
    def label(segment: str) -> str | None:
        """The label a segment spells, or None for a hashed one (its record's metadata names it)."""
        if segment.startswith(".."):
            return None
        return unquote(segment.replace(".", "%"), errors="surrogatepass")

    def namespace(self, namespace: tuple[str, ...]) -> str:
        """The service namespace of a LangGraph namespace; InvalidNamespaceError past the service's 255 characters."""
        name = "/".join([self.prefix, *(self.segment(str(label)) for label in namespace)])
        if len(name) > _MAX_NAMESPACE:
            raise InvalidNamespaceError(
                f"namespace {namespace!r} maps to a service namespace of {len(name)} characters; the service's"
                f" limit is {_MAX_NAMESPACE} (fewer or shorter labels)"
            )
        return name

    def subtree(self, namespace: tuple[str, ...]) -> str:
        """The service's selector of `namespace` and everything under it (`lgs/users/`)."""
        return self.namespace(namespace) + "/"

    def labels(self, name: str) -> tuple[str | None, ...] | None:
        """The labels of a service namespace under the root (None for each hashed one), or None if not under it."""
        if not name.startswith(self.prefix + "/"):
            return None
        return tuple(self.label(seg) for seg in name[len(self.prefix) + 1 :].split("/"))

    @staticmethod
    def record_id(key: str) -> str:
        return "lgs-" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:40]

    def record(self, op: PutOp, text: str | None, ttl_minutes: float | None) -> dict[str, Any]:
        meta: dict[str, Any] = {"namespace": list(op.namespace), "key": op.key, "value": dict(op.value or {})}
        body: dict[str, Any] = {
            "id": self.record_id(op.key),
            "namespace": self.namespace(op.namespace),
            "key": _part(op.key),
            "content": text or f"langgraph store item {op.key[:200]}",
            "tags": [TAG, STORE_TAG] if text else [TAG, STORE_TAG, UNINDEXED_TAG],
            "importance": "low",
            "metadata": meta,
        }
        if ttl_minutes is not None:
            meta["ttl_minutes"] = ttl_minutes
            body["ttl_seconds"] = ttl_minutes * 60
        return body

    def owns(self, rec: dict[str, Any]) -> bool:
        """Whether a record is this store's item where it lies (not another store's, nor a record of anyone else's
        that happens to sit in the store's namespaces)."""
        m = rec.get("metadata") or {}
        if STORE_TAG not in (rec.get("tags") or []) or not isinstance(m.get("namespace"), list) or "key" not in m:
            return False
        try:
            return self.namespace(tuple(m["namespace"])) == rec.get("namespace", DEFAULT_NAMESPACE)
        except InvalidNamespaceError:
            return False

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

    # -- items written before namespaces ------------------------------------------------------------------------

    async def amigrate_legacy(self) -> int:
        """Move the items an earlier version of this store wrote as key prefixes in the service's `default`
        namespace (keys `{prefix}:...`) into their namespaces; returns how many moved. Each keeps its value, index
        text and expiry (created_at becomes now); an item put since under the namespaces wins over its old copy.
        The old record is deleted only after the new one is written, so running it again after an interruption
        completes it."""
        client = self._bridge.client()
        home = client.in_namespace(DEFAULT_NAMESPACE)
        moved = 0
        cursor: str | None = None
        while True:  # newest first, by cursor: deleting what a page moved does not shift the next page
            page = await home.list(key_prefix=f"{self._layout.prefix}:", tags=[STORE_TAG], limit=_BATCH, cursor=cursor)
            bodies, done = [], []
            for rec in page.get("results") or []:
                m = rec.get("metadata") or {}
                if not isinstance(m.get("namespace"), list) or "key" not in m or not isinstance(m.get("value"), dict):
                    continue  # not an item of this store: left where it is
                op = PutOp(tuple(m["namespace"]), m["key"], m["value"])
                try:
                    current = await self._current(client, op)
                except InvalidNamespaceError:  # past the service's namespace length: left in `default`
                    continue
                if current is None:
                    body = self._layout.record(op, None if UNINDEXED_TAG in rec["tags"] else rec["content"], None)
                    body["metadata"].update({k: m[k] for k in ("ttl_minutes",) if k in m})
                    if rec.get("expires_at"):
                        body["expires_at"] = rec["expires_at"]
                    bodies.append(body)
                done.append(rec["id"])
            if bodies:
                await client.ingest_batch(bodies)
            await asyncio.gather(*(self._delete_old(home, rid) for rid in done))
            moved += len(bodies)
            cursor = page.get("next_cursor")
            if not cursor:
                return moved

    @staticmethod
    async def _delete_old(home: MemoryClient, rid: str) -> None:
        try:
            await home.delete(rid)
        except NotFound:
            pass

    def migrate_legacy(self) -> int:
        """Sync `amigrate_legacy`, on the private loop thread."""
        return self._bridge.run(self.amigrate_legacy())

    async def _current(self, client: MemoryClient, op: PutOp) -> dict[str, Any] | None:
        try:
            return await client.in_namespace(self._layout.namespace(op.namespace)).get(self._layout.record_id(op.key))
        except NotFound:
            return None

    # -- batch: reads first (they see the store as it was), then TTL refreshes, then writes ------------------------

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """Run LangGraph store operations: every read sees the store as it was before this batch's writes.

        Puts of one (namespace, key) collapse to the last; writes go in batches of 100, each all or nothing.
        """
        ops = list(ops)
        client = self._bridge.client()
        results: list[Result] = [None] * len(ops)
        refresh: dict[tuple[str, str], float] = {}  # (namespace, id) -> ttl minutes, for reads with refresh_ttl
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
        await asyncio.gather(*(self._refresh(client, where, minutes) for where, minutes in refresh.items()))
        await self._write(client, [op for op in ops if isinstance(op, PutOp)])
        return results

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Sync `abatch`, on the private loop thread."""
        return self._bridge.run(self.abatch(list(ops)))

    @staticmethod
    async def _refresh(client: MemoryClient, where: tuple[str, str], minutes: float) -> None:
        name, rid = where
        try:
            await client.in_namespace(name).update(rid, ttl_seconds=minutes * 60)
        except NotFound:  # expired (or deleted) since it was read: nothing to keep alive
            pass

    # -- reads -------------------------------------------------------------------------------------------------

    def _note_refresh(self, rec: dict[str, Any], wanted: bool, refresh: dict[tuple[str, str], float]) -> None:
        minutes = rec["metadata"].get("ttl_minutes")
        if wanted and minutes is not None:
            refresh[(rec["namespace"], rec["id"])] = minutes

    async def _get(
        self, client: MemoryClient, i: int, op: GetOp, results: list[Result], refresh: dict[tuple[str, str], float]
    ) -> None:
        try:
            rec = await client.in_namespace(self._layout.namespace(op.namespace)).get(self._layout.record_id(op.key))
        except (NotFound, InvalidNamespaceError):
            return
        if not self._layout.owns(rec) or rec["metadata"]["key"] != op.key:
            return
        self._note_refresh(rec, op.refresh_ttl, refresh)
        results[i] = self._layout.item(rec)

    async def _names(self, client: MemoryClient, prefix: tuple[str, ...]) -> list[str]:
        """The service namespaces of `prefix` and everything under it that hold records (GET /namespaces)."""
        try:
            root = self._layout.namespace(prefix)
        except InvalidNamespaceError:  # longer than any namespace can be: nothing is under it
            return []
        every = (await client.namespaces())["namespaces"]
        return [n["namespace"] for n in every if n["namespace"] == root or n["namespace"].startswith(root + "/")]

    async def _scan(self, client: MemoryClient, tags: list[str]) -> AsyncIterator[dict[str, Any]]:
        cursor: str | None = None
        while True:
            page = await client.list(tags=tags, limit=_PAGE, cursor=cursor)
            for rec in page.get("results") or []:
                yield rec
            cursor = page.get("next_cursor")
            if not cursor:
                return

    async def _listed(
        self, client: MemoryClient, op: SearchOp, tags: list[str], skip: int, take: int
    ) -> list[dict[str, Any]]:
        """Items under the namespace prefix whose value passes the filter, newest write first: `take` after `skip`.

        Each namespace of the subtree gives its newest `skip + take` matching items (all the merge can need)."""
        if take <= 0:
            return []
        want = skip + take

        async def newest(name: str) -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = []
            async for rec in self._scan(client.in_namespace(name), tags):
                if self._layout.owns(rec) and _matches(op.filter, rec["metadata"]["value"]):
                    found.append(rec)
                    if len(found) >= want:
                        break
            return found

        names = await self._names(client, op.namespace_prefix)
        recs = [rec for part in await _fan_out(newest, names) for rec in part]
        recs.sort(key=lambda r: (datetime.fromisoformat(r["updated_at"]), r["namespace"], r["id"]), reverse=True)
        return recs[skip:want]

    async def _search(
        self,
        client: MemoryClient,
        i: int,
        op: SearchOp,
        results: list[Result],
        refresh: dict[tuple[str, str], float],
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
        try:
            subtree = self._layout.subtree(op.namespace_prefix)
        except InvalidNamespaceError:
            results[i] = []
            return
        found = await client.search(
            op.query,
            limit=op.offset + op.limit,
            mode="semantic",
            namespace=[subtree],
            tags=[STORE_TAG],
            tags_none=[UNINDEXED_TAG],
            where=_where(op.filter),
        )
        hits = [
            h
            for h in found.get("results") or []
            if self._layout.owns(h) and _matches(op.filter, h["metadata"]["value"])
        ]
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

    def _remember(self, recs: list[dict[str, Any]], op: SearchOp, refresh: dict[tuple[str, str], float]) -> None:
        for rec in recs:
            self._note_refresh(rec, op.refresh_ttl, refresh)

    async def _list_namespaces(self, client: MemoryClient, i: int, op: ListNamespacesOp, results: list[Result]) -> None:
        """The store's namespaces from the service's list of namespaces (GET /namespaces): each name under the
        root is decoded, matched, grouped by `max_depth` and sorted; a group is listed once one of its service
        namespaces is confirmed to hold an item of this store (one request each, in order, only as far as
        `offset + limit` needs). A name with a hashed label is decoded from one of its items."""
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

        async def owner(name: str) -> tuple[str, ...] | None:
            page = await client.in_namespace(name).list(tags=[STORE_TAG], limit=5)
            for rec in page.get("results") or []:
                if self._layout.owns(rec):
                    return tuple(rec["metadata"]["namespace"])
            return None

        names = await self._names(client, fixed)
        decoded = {name: self._layout.labels(name) for name in names}
        hashed = [name for name, labels in decoded.items() if labels is not None and None in labels]
        known = dict(zip(hashed, await _fan_out(owner, hashed), strict=True))  # confirmed (or None: not ours)
        groups: dict[tuple[str, ...], list[str]] = {}
        for name, labels in decoded.items():
            ns = known[name] if name in known else labels
            if ns is None or not all(_does_match(cond, ns) for cond in conditions):  # type: ignore[arg-type]
                continue
            group = ns[: op.max_depth] if op.max_depth is not None else ns
            groups.setdefault(group, []).append(name)  # type: ignore[arg-type]

        async def confirmed(group: tuple[str, ...]) -> bool:
            for name in groups[group]:
                if name in known or await owner(name) is not None:
                    return True
            return False

        listed: list[tuple[str, ...]] = []
        ordered = sorted(groups)
        want = op.offset + op.limit
        for start in range(0, len(ordered), _FANOUT):
            if len(listed) >= want:
                break
            chunk = ordered[start : start + _FANOUT]
            listed += [g for g, ok in zip(chunk, await _fan_out(confirmed, chunk), strict=True) if ok]
        results[i] = listed[op.offset : want]

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
        deletes: list[tuple[str, str]] = []
        for op in last.values():
            if op.value is None:
                deletes.append((self._layout.namespace(op.namespace), self._layout.record_id(op.key)))
                continue
            if not isinstance(op.value, dict):
                raise ValueError(f"a store value must be a dict, not {type(op.value).__name__} (key {op.key!r})")
            json.dumps(op.value)  # a value that is not JSON fails here, naming its type, before anything is sent
            bodies.append(self._layout.record(op, self._text(op), op.ttl))

        async def delete(where: tuple[str, str]) -> None:
            try:
                await client.in_namespace(where[0]).delete(where[1])
            except NotFound:
                pass

        for start in range(0, len(bodies), _BATCH):
            await client.ingest_batch(bodies[start : start + _BATCH])
        await asyncio.gather(*(delete(where) for where in deletes))


async def _fan_out(fn: Callable[[T], Awaitable[R]], args: list[T]) -> list[R]:
    """`fn` over `args`, at most _FANOUT at once, results in order."""
    gate = asyncio.Semaphore(_FANOUT)

    async def one(arg: T) -> R:
        async with gate:
            return await fn(arg)

    return list(await asyncio.gather(*(one(a) for a in args)))
