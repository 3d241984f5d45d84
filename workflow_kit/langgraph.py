"""MemorySpineSaver: a LangGraph checkpointer (`BaseCheckpointSaver`) that keeps its state in Memory Spine.

    from workflow_kit.langgraph import MemorySpineSaver
    saver = MemorySpineSaver("http://127.0.0.1:8788")        # token= or MEMORY_SPINE_TOKEN
    graph = builder.compile(checkpointer=saver)              # invoke/ainvoke with {"configurable": {"thread_id"}}

Needs the `langgraph` extra (`langgraph-checkpoint`). Everything is stored as ordinary records under exact keys,
read back by key (`GET /keys/{key}`) or by key prefix (`GET /memories?key_prefix=`, newest write first), never by
similarity. Every part of a key is percent-encoded (a long one is hashed), so `:` only ever separates parts and
the prefix of thread `a` never matches thread `a:b`:

    {prefix}:{thread}:{ns}:c:{checkpoint_id}                 a checkpoint and its LangGraph metadata
    {prefix}:{thread}:{ns}:w:{checkpoint_id}:{task_id}:{idx}  one pending write
    {prefix}:{thread}:{ns}:p:{digest}:{n}                    part n of a value too big for one record

Values go through the saver's serde (`serde.dumps_typed` -> (type, bytes)) and sit base64-encoded in the record's
metadata. The service caps metadata at 64 KiB by default, so a value over `max_inline` characters is cut into
parts stored first and the owning record last, in one batch per 100 records: a checkpoint is visible only once
all of its parts are. Record ids are derived from keys, so a retried put rewrites the same records instead of
adding twins, and re-putting an unchanged record costs no embedding. Records carry the tag `langgraph` (leave
them out of searches with `tags_none: ["langgraph"]`) and short content, since the service embeds every write.

Every record also carries the thread, namespace and checkpoint id it belongs to, so the extended capabilities
(`adelete_for_runs`, `aprune`) delete a checkpoint with its writes and parts in one filtered request per namespace,
and `acopy_thread` rewrites a thread's records under the target's keys.

Order: LangGraph orders checkpoints by id, and its ids (uuid6) grow with time; the saver lists them in the order
they were first written, which is the same order for checkpoints LangGraph writes, and filters `before` by id.

The async methods run on the caller's event loop, with one `MemoryClient` per loop. The sync ones (what
`graph.invoke` calls) run the async ones on a private event-loop thread, so they work from any thread, with or
without a running loop (but not from inside that private loop).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import threading
import weakref
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from .client import MemoryClient

__all__ = ["MemorySpineSaver"]

T = TypeVar("T")

TAG = "langgraph"
_KIND_TAGS = {"c": "langgraph:checkpoint", "w": "langgraph:write", "p": "langgraph:part"}
_BATCH = 100  # records per /ingest/batch: 100 parts of 40,000 characters stay far below the 16 MiB body cap
_PAGE = 100


def _part(value: Any) -> str:
    """One key part: percent-encoded (so it holds no ':'), or hashed behind '=' (which encoding never yields)."""
    text = str(value)
    encoded = quote(text, safe="")
    if len(encoded) <= 120:
        return encoded
    return "=" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def _record_id(key: str) -> str:
    return "lg-" + hashlib.sha256(key.encode()).hexdigest()[:40]


def _scalars(metadata: CheckpointMetadata) -> dict[str, Any]:
    # Plain copies of LangGraph's own scalar metadata, for people (and `where` filters) reading the records.
    return {k: v for k, v in metadata.items() if k in ("source", "step", "run_id") and isinstance(v, str | int)}


class _LoopThread:
    """A private event loop on a daemon thread, for the sync methods."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="memory-spine-saver", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            coro.close()
            raise RuntimeError(
                "MemorySpineSaver: a sync method was called from the saver's own loop; await the a-method"
            )
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


class MemorySpineSaver(BaseCheckpointSaver[int]):
    """A LangGraph checkpointer storing checkpoints and pending writes in Memory Spine under exact keys.

    Args:
        base_url: the service (default MEMORY_SPINE_URL, else http://127.0.0.1:8788).
        token: its bearer token (default MEMORY_SPINE_TOKEN).
        prefix: first part of every key, to keep several apps apart in one service (default "lg").
        timeout: seconds per request; connection errors and 5xx are retried by the kit's client.
        max_inline: the longest base64 value kept in a record's own metadata; longer ones are cut into parts of
            this size. Keep it well under the service's MEMORY_SPINE_MAX_METADATA_BYTES (64 KiB by default).
        transport: an httpx transport (e.g. `httpx.ASGITransport(app=create_app(service))` in-process).
        serde: LangGraph's serializer (default JsonPlusSerializer).
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        token: str | None = None,
        prefix: str = "lg",
        timeout: float = 10.0,
        max_inline: int = 40_000,
        transport: httpx.AsyncBaseTransport | None = None,
        serde: SerializerProtocol | None = None,
    ) -> None:
        super().__init__(serde=serde)
        if not prefix or ":" in prefix or any(ch.isspace() for ch in prefix):
            raise ValueError("prefix must be non-empty, without ':' or whitespace")
        if max_inline < 1000:
            raise ValueError("max_inline must be at least 1000 characters")
        self.base_url = base_url
        self.prefix = prefix
        self.max_inline = max_inline
        self._token = token
        self._timeout = timeout
        self._transport = transport
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, MemoryClient] = weakref.WeakKeyDictionary()
        self._clients_lock = threading.Lock()
        self._loop_thread: _LoopThread | None = None

    # -- life ------------------------------------------------------------------------------------------------

    def _client(self) -> MemoryClient:
        """The MemoryClient of the running event loop (an httpx pool belongs to one loop), addressed to the kit's
        namespace (`_kit/default`): graph checkpoints are the kit's records, out of users' searches."""
        loop = asyncio.get_running_loop()
        with self._clients_lock:
            client = self._clients.get(loop)
            if client is None:
                client = MemoryClient(
                    self.base_url, token=self._token, timeout=self._timeout, transport=self._transport
                )
                self._clients[loop] = client
            return client.kit

    def _sync(self, coro: Coroutine[Any, Any, T]) -> T:
        with self._clients_lock:
            if self._loop_thread is None:
                self._loop_thread = _LoopThread()
            runner = self._loop_thread
        return runner.run(coro)

    async def aclose(self) -> None:
        """Close the connection pool of the running loop, and the private loop of the sync methods."""
        loop = asyncio.get_running_loop()
        with self._clients_lock:
            client = self._clients.pop(loop, None)
        if client is not None:
            await client.aclose()
        await asyncio.to_thread(self._close_loop_thread)

    def close(self) -> None:
        """Close the private loop of the sync methods (and its connection pool)."""
        self._close_loop_thread()

    def _close_loop_thread(self) -> None:
        with self._clients_lock:
            runner, self._loop_thread = self._loop_thread, None
        if runner is None:
            return
        client = self._clients.pop(runner.loop, None)
        if client is not None:
            runner.run(client.aclose())
        runner.stop()

    async def __aenter__(self) -> MemorySpineSaver:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __enter__(self) -> MemorySpineSaver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- keys ------------------------------------------------------------------------------------------------

    def _thread_prefix(self, thread_id: Any) -> str:
        return f"{self.prefix}:{_part(thread_id)}:"

    def _ns_prefix(self, thread_id: Any, ns: str) -> str:
        return f"{self._thread_prefix(thread_id)}{_part(ns)}:"

    def _checkpoint_key(self, thread_id: Any, ns: str, checkpoint_id: str) -> str:
        return f"{self._ns_prefix(thread_id, ns)}c:{_part(checkpoint_id)}"

    def _writes_prefix(self, thread_id: Any, ns: str, checkpoint_id: str) -> str:
        return f"{self._ns_prefix(thread_id, ns)}w:{_part(checkpoint_id)}:"

    # -- values ------------------------------------------------------------------------------------------------

    def _record(self, kind: str, key: str, thread_id: Any, metadata: dict[str, Any]) -> dict[str, Any]:
        names = {"c": "checkpoint", "w": "write", "p": "part"}
        return {
            "id": _record_id(key),
            "key": key,
            "content": f"langgraph {names[kind]} of thread {str(thread_id)[:80]}",
            "tags": [TAG, _KIND_TAGS[kind]],
            "importance": "low",
            "metadata": metadata,
        }

    def _pack(
        self, value: Any, owner_key: str, thread_id: Any, ns: str, checkpoint_id: str
    ) -> tuple[dict[str, Any], list[dict]]:
        """`value` as {type, data} (inline), or {type, parts, parts_prefix} plus the part records to store first."""
        type_, data = self.serde.dumps_typed(value)
        text = base64.b64encode(data).decode("ascii")
        if len(text) <= self.max_inline:
            return {"type": type_, "data": text}, []
        digest = hashlib.sha256(owner_key.encode()).hexdigest()[:32]
        parts_prefix = f"{self._ns_prefix(thread_id, ns)}p:{digest}:"
        chunks = [text[i : i + self.max_inline] for i in range(0, len(text), self.max_inline)]
        owner = {"thread_id": str(thread_id), "checkpoint_ns": ns, "checkpoint_id": checkpoint_id}
        parts = [
            self._record("p", f"{parts_prefix}{n:06d}", thread_id, {**owner, "part": n, "data": chunk})
            for n, chunk in enumerate(chunks)
        ]
        return {"type": type_, "parts": len(chunks), "parts_prefix": parts_prefix}, parts

    async def _unpack(self, client: MemoryClient, packed: dict[str, Any]) -> Any:
        if "data" in packed:
            text = packed["data"]
        else:
            chunks: dict[int, str] = {}
            async for rec in self._scan(client, packed["parts_prefix"], order="oldest"):
                chunks[int(rec["metadata"]["part"])] = rec["metadata"]["data"]
            if len(chunks) != packed["parts"]:
                raise RuntimeError(
                    f"MemorySpineSaver: {packed['parts_prefix']} holds {len(chunks)} of {packed['parts']} parts"
                )
            text = "".join(chunks[n] for n in range(packed["parts"]))
        return self.serde.loads_typed((packed["type"], base64.b64decode(text)))

    # -- service calls -------------------------------------------------------------------------------------------

    async def _scan(
        self, client: MemoryClient, prefix: str, *, tag: str | None = None, order: str = "newest", page: int = _PAGE
    ) -> AsyncIterator[dict[str, Any]]:
        """Every record whose key starts with `prefix`, page by page (newest or oldest write first)."""
        cursor: str | None = None
        while True:
            found = await client.list(
                key_prefix=prefix, tags=[tag] if tag else None, limit=page, cursor=cursor, order=order
            )
            for rec in found.get("results") or []:
                yield rec
            cursor = found.get("next_cursor")
            if not cursor:
                return

    async def _store(self, client: MemoryClient, records: list[dict[str, Any]]) -> None:
        # Parts come before their owner, so a reader that finds the owner finds every part.
        for i in range(0, len(records), _BATCH):
            await client.ingest_batch(records[i : i + _BATCH])

    async def _writes(self, client: MemoryClient, thread_id: Any, ns: str, checkpoint_id: str) -> list[Any]:
        rows = []
        async for rec in self._scan(client, self._writes_prefix(thread_id, ns, checkpoint_id), order="oldest"):
            m = rec["metadata"]
            rows.append((m.get("task_path", ""), m["task_id"], int(m["idx"]), m["channel"], m["value"]))
        rows.sort(key=lambda r: (r[0], r[1], r[2]))  # LangGraph's writes_sort_key: (task_path, task_id, idx)
        return [(task_id, channel, await self._unpack(client, value)) for _, task_id, _, channel, value in rows]

    async def _tuple(
        self, client: MemoryClient, rec: dict[str, Any], metadata: CheckpointMetadata | None = None
    ) -> CheckpointTuple:
        m = rec["metadata"]
        thread_id, ns, checkpoint_id = m["thread_id"], m["checkpoint_ns"], m["checkpoint_id"]
        parent = m.get("parent_checkpoint_id")
        return CheckpointTuple(
            config={"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint_id}},
            checkpoint=await self._unpack(client, m["checkpoint"]),
            metadata=metadata if metadata is not None else await self._unpack(client, m["metadata"]),
            parent_config=(
                {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": parent}}
                if parent
                else None
            ),
            pending_writes=await self._writes(client, thread_id, ns, checkpoint_id),
        )

    # -- BaseCheckpointSaver, async ------------------------------------------------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint named by `config` (its `checkpoint_id`), or the thread's newest one; None if none."""
        client = self._client()
        conf = config["configurable"]
        thread_id, ns = conf["thread_id"], conf.get("checkpoint_ns", "")
        checkpoint_id = get_checkpoint_id(config)
        if checkpoint_id:
            rec = await client.find_key(self._checkpoint_key(thread_id, ns, checkpoint_id))
        else:
            newest = await client.list(key_prefix=f"{self._ns_prefix(thread_id, ns)}c:", limit=1)
            rec = (newest.get("results") or [None])[0]
        return None if rec is None else await self._tuple(client, rec)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Checkpoints newest first: of one thread (and namespace, when the config names one), or of all threads.

        `filter` keeps those whose metadata has every given key equal to the given value; `before` keeps those
        with a smaller checkpoint id than its `checkpoint_id`; `limit` caps how many are yielded.
        """
        client = self._client()
        conf = (config or {}).get("configurable") or {}
        if "thread_id" not in conf:
            prefix = f"{self.prefix}:"
        elif conf.get("checkpoint_ns") is None:
            prefix = self._thread_prefix(conf["thread_id"])
        else:
            prefix = f"{self._ns_prefix(conf['thread_id'], conf['checkpoint_ns'])}c:"
        only_id = conf.get("checkpoint_id")
        before_id = get_checkpoint_id(before) if before else None
        if limit is not None and limit <= 0:
            return
        yielded = 0
        async for rec in self._scan(client, prefix, tag=_KIND_TAGS["c"]):
            m = rec["metadata"]
            if only_id and m["checkpoint_id"] != only_id:
                continue
            if before_id and m["checkpoint_id"] >= before_id:
                continue
            metadata = await self._unpack(client, m["metadata"])
            if filter and not all(metadata.get(k) == v for k, v in filter.items()):
                continue
            yield await self._tuple(client, rec, metadata)
            yielded += 1
            if limit is not None and yielded >= limit:
                return

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint (with all its channel values) and return the config that names it."""
        client = self._client()
        conf = config["configurable"]
        thread_id, ns = conf["thread_id"], conf.get("checkpoint_ns", "")
        checkpoint_id = checkpoint["id"]
        key = self._checkpoint_key(thread_id, ns, checkpoint_id)
        full_metadata = get_checkpoint_metadata(config, metadata)
        packed_checkpoint, parts = self._pack(checkpoint, key, thread_id, ns, checkpoint_id)
        packed_metadata, more_parts = self._pack(full_metadata, key + ":metadata", thread_id, ns, checkpoint_id)
        record = self._record(
            "c",
            key,
            thread_id,
            {
                "thread_id": str(thread_id),
                "checkpoint_ns": ns,
                "checkpoint_id": checkpoint_id,
                "parent_checkpoint_id": conf.get("checkpoint_id"),
                **_scalars(full_metadata),
                "checkpoint": packed_checkpoint,
                "metadata": packed_metadata,
            },
        )
        await self._store(client, [*parts, *more_parts, record])
        return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint_id}}

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's writes against a checkpoint.

        As in LangGraph's own savers, a regular write already stored for (task_id, idx) is kept, and the special
        channels (error, interrupt, ...) replace theirs.
        """
        if not writes:
            return
        client = self._client()
        conf = config["configurable"]
        thread_id, ns, checkpoint_id = conf["thread_id"], conf.get("checkpoint_ns", ""), conf["checkpoint_id"]
        task_prefix = f"{self._writes_prefix(thread_id, ns, checkpoint_id)}{_part(task_id)}:"
        indexed = [(WRITES_IDX_MAP.get(channel, idx), channel, value) for idx, (channel, value) in enumerate(writes)]
        stored: set[int] = set()
        if any(idx >= 0 for idx, _, _ in indexed):
            stored = {int(rec["metadata"]["idx"]) async for rec in self._scan(client, task_prefix, order="oldest")}
        records: list[dict[str, Any]] = []
        for idx, channel, value in indexed:
            if idx >= 0 and idx in stored:
                continue
            key = f"{task_prefix}{idx}"
            packed, parts = self._pack(value, key, thread_id, ns, checkpoint_id)
            records += parts
            records.append(
                self._record(
                    "w",
                    key,
                    thread_id,
                    {
                        "thread_id": str(thread_id),
                        "checkpoint_ns": ns,
                        "checkpoint_id": checkpoint_id,
                        "task_id": task_id,
                        "task_path": task_path,
                        "idx": idx,
                        "channel": channel,
                        "value": packed,
                    },
                )
            )
        if records:
            await self._store(client, records)

    async def adelete_thread(self, thread_id: str) -> None:
        """Delete every checkpoint, write and part of a thread (all namespaces), in one request."""
        await self._client().delete_where(key_prefix=self._thread_prefix(thread_id))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints written by any of `run_ids` (in every thread), with their writes and parts.

        Reads every checkpoint record under the saver's prefix to find the runs' ones (the service cannot filter
        a listing by metadata), then deletes them per namespace, each namespace in one request. A checkpoint
        whose parent was deleted keeps its `parent_config`, which then names no stored checkpoint.
        """
        wanted = {str(run_id) for run_id in run_ids}
        if not wanted:
            return
        client = self._client()
        doomed: dict[tuple[str, str], list[str]] = {}
        async for rec in self._scan(client, f"{self.prefix}:", tag=_KIND_TAGS["c"]):
            m = rec["metadata"]
            if m.get("run_id") is not None and str(m["run_id"]) in wanted:
                doomed.setdefault((m["thread_id"], m["checkpoint_ns"]), []).append(m["checkpoint_id"])
        for (thread_id, ns), checkpoint_ids in doomed.items():
            await self._delete_checkpoints(client, thread_id, ns, checkpoint_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint (all namespaces, the whole parent chain), write and part of a thread to another.

        Records are rewritten under the target's keys in the order they were first written, so the target lists
        its checkpoints in the source's order; checkpoint ids and metadata are kept. Not atomic: a copy cut short
        leaves part of the thread copied, and running it again completes it (the target's record ids derive from
        their keys, so nothing is doubled). A missing source copies nothing.
        """
        client = self._client()
        source, target = self._thread_prefix(source_thread_id), self._thread_prefix(target_thread_id)
        if source == target:
            return
        by_kind: dict[str, list[dict[str, Any]]] = {"p": [], "w": [], "c": []}
        async for rec in self._scan(client, source, order="oldest"):
            kind = next((k for k, tag in _KIND_TAGS.items() if tag in rec.get("tags", ())), None)
            if kind is None:
                continue
            metadata = {**rec["metadata"], "thread_id": str(target_thread_id)}
            for field in ("checkpoint", "metadata", "value"):
                packed = metadata.get(field)
                if isinstance(packed, dict) and "parts_prefix" in packed:
                    metadata[field] = {**packed, "parts_prefix": target + packed["parts_prefix"][len(source) :]}
            key = target + rec["key"][len(source) :]
            by_kind[kind].append(self._record(kind, key, target_thread_id, metadata))
        # Parts before the writes and checkpoints that name them, so whatever is visible is whole.
        await self._store(client, [*by_kind["p"], *by_kind["w"], *by_kind["c"]])

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Prune threads: `keep_latest` keeps each namespace's newest checkpoint, `delete` deletes the threads.

        `keep_latest` also keeps the ancestors the newest checkpoint's delta channels are rebuilt from (LangGraph's
        `DeltaChannel` stores only what changed since its last snapshot): walking up the parent chain, every
        checkpoint until each channel counted in the newest one's `counters_since_delta_snapshot` has a stored
        value. The deleted checkpoints go with their writes and parts, each namespace in one request.

        Raises:
            ValueError: an unknown strategy.
        """
        if strategy not in ("keep_latest", "delete"):
            raise ValueError(f"unknown prune strategy {strategy!r}: use 'keep_latest' or 'delete'")
        if strategy == "delete":
            for thread_id in dict.fromkeys(thread_ids):
                await self.adelete_thread(thread_id)
            return
        client = self._client()
        for thread_id in dict.fromkeys(thread_ids):
            namespaces: dict[str, list[dict[str, Any]]] = {}  # newest checkpoint first
            async for rec in self._scan(client, self._thread_prefix(thread_id), tag=_KIND_TAGS["c"]):
                namespaces.setdefault(rec["metadata"]["checkpoint_ns"], []).append(rec)
            for ns, records in namespaces.items():
                keep = await self._needed_chain(client, records)
                doomed = [r["metadata"]["checkpoint_id"] for r in records if r["metadata"]["checkpoint_id"] not in keep]
                await self._delete_checkpoints(client, thread_id, ns, doomed)

    async def _needed_chain(self, client: MemoryClient, records: list[dict[str, Any]]) -> set[str]:
        """The ids of the newest checkpoint and of the ancestors its delta channels are rebuilt from."""
        by_id = {r["metadata"]["checkpoint_id"]: r for r in records}
        newest = records[0]["metadata"]
        keep = {newest["checkpoint_id"]}
        counters = (await self._unpack(client, newest["metadata"])).get("counters_since_delta_snapshot") or {}
        missing = set(counters)
        current = newest
        while missing:
            missing -= set((await self._unpack(client, current["checkpoint"]))["channel_values"])
            parent = by_id.get(current.get("parent_checkpoint_id") or "")
            if not missing or parent is None:
                break
            current = parent["metadata"]
            keep.add(current["checkpoint_id"])
        return keep

    async def _delete_checkpoints(self, client: MemoryClient, thread_id: Any, ns: str, ids: list[str]) -> None:
        # Every record of a checkpoint (itself, its writes, their parts) carries its checkpoint_id.
        for i in range(0, len(ids), _PAGE):
            await client.delete_where(
                key_prefix=self._ns_prefix(thread_id, ns), where={"checkpoint_id": {"$in": ids[i : i + _PAGE]}}
            )

    # -- BaseCheckpointSaver, sync: the async methods on the private loop ---------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Sync `aget_tuple`."""
        return self._sync(self.aget_tuple(config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Sync `alist`, fetching lazily page by page."""
        agen = self.alist(config, filter=filter, before=before, limit=limit)

        async def step() -> CheckpointTuple:
            return await agen.__anext__()

        async def close() -> None:
            await agen.aclose()

        try:
            while True:
                try:
                    item = self._sync(step())
                except StopAsyncIteration:
                    return
                yield item
        finally:
            self._sync(close())

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Sync `aput`."""
        return self._sync(self.aput(config, checkpoint, metadata, new_versions))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Sync `aput_writes`."""
        self._sync(self.aput_writes(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        """Sync `adelete_thread`."""
        self._sync(self.adelete_thread(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Sync `adelete_for_runs`."""
        self._sync(self.adelete_for_runs(run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Sync `acopy_thread`."""
        self._sync(self.acopy_thread(source_thread_id, target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Sync `aprune`."""
        self._sync(self.aprune(thread_ids, strategy=strategy))
