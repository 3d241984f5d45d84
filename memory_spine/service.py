"""MemoryService: the core, usable in-process without HTTP. Ingest, search, records, keys, claims, stats.

It owns one `Storage` and one `VectorSearch` (storage/base.py), opened from the settings by `storage.open_storage` /
`open_search`, and one embedder. The embedded default is SQLite in a data directory (locked against a second
process) searched through the planner over a derived hnswlib index; PostgreSQL (`--database postgresql://...`) holds
the vectors itself and lets any number of replicas share it. Writes go storage-first: a call returns only after the
database committed, and a derived index is updated in commit order right after (see `SQLiteStorage._Tx`). A
background thread (upkeep.py) purges expired records and lets the search maintain itself (persisting the hnswlib
index now and then). Requests are checked by validation.py before storage sees them; every time the service reads is
its `clock` (time.time unless a test gives another). Every method is synchronous and thread-safe; the HTTP layer
runs them in a thread pool so the event loop never blocks on the database, numpy or the model. Two are for the event
loop itself, so that many concurrent clients do not each hold a worker thread while the model runs: `query_vector`
(a search's embedding, awaited; the rest of the search then runs in the pool) and `ingest_async` (embedding and
commit awaited; concurrent single-record ingests share model runs and one transaction).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import secrets
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from . import conversations, validation
from ._version import __version__
from .cache import LRU
from .coalesce import Coalescer
from .config import Settings
from .embedders import Embedder, create_embedder
from .embedders.batching import CoalescingEmbedder
from .errors import (
    Conflict,
    InvalidInput,
    MemorySpineError,
    NotFound,
    PreconditionFailed,
    StorageError,
)
from .keys import derive_key, key_parent, parse_key_query
from .models import (
    ClaimIn,
    ConversationIn,
    DeleteWhere,
    Filter,
    MemoryIn,
    MemoryPatch,
    MemoryRestore,
    RestoreIn,
    RevertIn,
    SearchQuery,
)
from .namespaces import DEFAULT, resolve, validate
from .storage import open_search, open_storage, redact
from .storage.base import ContentChanged, NewRecord, PutResult, RestoredRecord, Storage, VectorSearch, VersionChanged
from .storage.base import StaleFence as StaleFenceError
from .storage.budget import query_budget
from .storage.filters import Limits, check_text, check_time, parse_filter, to_epoch
from .storage.history import describe
from .storage.search import Plan, fuse_units
from .upkeep import Upkeep
from .when import parse_when

log = logging.getLogger("memory_spine.service")


def __getattr__(name: str) -> Any:
    """DB_FILE and LOCK_FILE, kept importable from here, read from the SQLite backend only when asked: the
    service itself depends on no backend module (storage/__init__.py opens the one the settings name)."""
    if name in ("DB_FILE", "LOCK_FILE"):
        from .storage import sqlite

        return getattr(sqlite, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class QueryCache(LRU):
    """Query text -> vector: agents and routers repeat their queries."""


def _token_hash(lease_token: str) -> str:
    """What the database keeps of a lease token: its sha256, so a copy of the database cannot renew or release."""
    return hashlib.sha256(lease_token.encode("utf-8", "surrogatepass")).hexdigest()


def _epoch(value: str | None) -> float | None:
    """A time as rows give it (ISO 8601 with Z) -> epoch seconds."""
    return None if value is None else datetime.fromisoformat(value).timestamp()


def _version_record(target: dict[str, Any], expires_at: float | None, now: float, **kw: Any) -> NewRecord:
    """A write of kept version `target` (a get_version row) as a new version: its fields and its stored vector."""
    return NewRecord(
        id=target["id"],
        content=target["content"],
        tags=target["tags"],
        metadata=target["metadata"],
        importance=target["importance"],
        key=target["key"],
        key_parent=key_parent(target["key"]),
        expires_at=expires_at,
        vector=target["vector"],
        now=now,
        namespace=target["namespace"],
        occurred_at=_epoch(target.get("occurred_at")),
        **kw,
    )


def _precondition(id: str, field: str, current: int) -> PreconditionFailed:
    return PreconditionFailed(
        f"{field}: memory {id!r} is now at version {current}, not the one given; read it again and redo the change",
        field=field,
        current_version=current,
    )


class ResultCache(LRU):
    """Search request -> answer, valid while storage's commit count is unchanged.

    Agents and routers repeat whole searches, not only query texts. An answer is kept with the commit count
    read before it was computed, so any write since (ingest, update, delete, purge, claim) makes it stale;
    answers holding a record that expires are not kept at all. Only for storage that counts its commits as
    the single writer (`Storage.commits`, the embedded default); elsewhere another process may write unseen.
    """

    def get(self, key: str, commits: int) -> dict[str, Any] | None:  # type: ignore[override]
        item = super().get(key, lambda it: it[0] == commits)
        return None if item is None else item[1]

    def put(self, key: str, commits: int, answer: dict[str, Any]) -> None:  # type: ignore[override]
        super().put(key, (commits, answer))


class MemoryService:
    """The memory service core. Build it with `MemoryService.open(settings)`; close it when done."""

    def __init__(
        self,
        settings: Settings,
        storage: Storage,
        planner: VectorSearch,
        embedder: Embedder,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        # Epoch seconds now: every expiry, version time and claim lease is read against it (tests move it).
        self.clock = clock
        self.storage = storage
        # Semantic/keyword/hybrid search: the planner over hnswlib (embedded default), or SQL (PostgreSQL).
        self.planner = planner
        self.index = planner.index  # the embedded default's hnswlib index; None elsewhere
        self.embedder = embedder
        self._lock = storage.lock  # the data dir's (embedded default); storage releases it
        self.query_cache = QueryCache(settings.query_cache_size, settings.query_cache_bytes)
        # Answers repeated searches between writes; None where storage cannot say whether anything changed.
        self.result_cache = (
            ResultCache(settings.result_cache_size, settings.result_cache_bytes)
            if storage.commits is not None
            else None
        )
        self.limits = Limits.of(settings)
        self.started_at = clock()
        self.opened_in: float = 0.0
        self._closed = False
        # Concurrent single-record ingests (ingest_async) committed together: one transaction, one index update.
        self._group_commit = Coalescer(self._commit_group, max_items=settings.max_batch, name="memory-spine-commit")
        self._upkeep = Upkeep(self._purge, self.planner.maintain, settings.purge_seconds)
        self._upkeep.start()

    # -- life -----------------------------------------------------------------------------------------
    @classmethod
    def open(
        cls, settings: Settings, embedder: Embedder | None = None, clock: Callable[[], float] = time.time
    ) -> MemoryService:
        """Load the embedder, open storage (`settings.database`, else SQLite in the data dir) and its search.

        Raises:
            DataDirLocked: another process serves this data dir (embedded default).
            ReadOnlyStorage / StorageError: the data dir or database cannot be used.
        """
        started = time.perf_counter()
        if embedder is None:
            embedder = create_embedder(
                settings.embedder, cache_dir=settings.model_cache, threads=settings.embed_threads
            )
        # Concurrent ingests and searches share model runs instead of queueing for them.
        embedder = CoalescingEmbedder(embedder)
        storage = open_storage(settings, embedder.dim)
        try:
            stored_model = storage.meta("embedder_model")
            if stored_model is None:
                storage.set_meta("embedder_model", embedder.model)
            elif stored_model != embedder.model:
                where = redact(settings.database) or Path(settings.data_dir).expanduser()
                raise StorageError(
                    f"{where} holds vectors of the model {stored_model!r}; this embedder makes"
                    f" {embedder.model!r}. Use the same --embedder or another database."
                )
            planner = open_search(settings, storage)
        except BaseException:
            storage.close()
            raise
        service = cls(settings, storage, planner, embedder, clock)
        service.opened_in = time.perf_counter() - started
        return service

    def close(self) -> None:
        """Stop housekeeping, persist the index, close storage (which releases the data dir)."""
        if self._closed:
            return
        self._closed = True
        self._upkeep.stop(timeout=30)
        self._group_commit.close()  # what is queued is committed (and answered) first
        self.planner.close()
        self.storage.close()
        self.embedder.close()

    def __enter__(self) -> MemoryService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def save_index(self) -> dict[str, Any] | None:
        """Persist the derived index now (embedded default; a no-op where the database holds the index)."""
        return self.planner.maintain(force=True)

    def _purge(self) -> None:
        """What the upkeep thread (upkeep.py) runs every `purge_seconds`."""
        self.purge_expired()
        self.prune_history()

    # -- index bookkeeping, called under storage's write lock after each commit ---------------------------
    def _after_put(self, records: Sequence[NewRecord], results: list[PutResult]) -> None:
        changed = [(r.seq, rec.vector) for rec, r in zip(records, results, strict=True) if r.vector_changed]
        seqs = np.array([s for s, _ in changed], dtype=np.int64)
        vectors = np.vstack([v for _, v in changed]) if changed else np.empty((0, self.embedder.dim), np.float32)
        self.planner.added(seqs, vectors)

    def _after_delete(self, seqs: list[int]) -> None:
        self.planner.removed(seqs)

    # -- embedding ------------------------------------------------------------------------------------
    observer: Any = None  # metrics hooks (observe_plan, observe_embed), bound by the HTTP layer

    def _embed(self, texts: list[str]) -> np.ndarray:
        started = time.perf_counter()
        vectors = self.embedder.embed(texts)
        if self.observer is not None:
            self.observer.observe_embed(time.perf_counter() - started)
        return vectors

    async def _embed_async(self, texts: list[str]) -> np.ndarray:
        """`_embed` awaited on the event loop: the model thread runs it (with whatever else is queued)."""
        started = time.perf_counter()
        submit = getattr(self.embedder, "submit", None)  # a CoalescingEmbedder's (MemoryService.open wraps)
        if submit is None:
            vectors = await asyncio.to_thread(self.embedder.embed, texts)
        else:
            vectors = await asyncio.wrap_future(submit(texts))
        if self.observer is not None:
            self.observer.observe_embed(time.perf_counter() - started)
        return vectors

    def embed_query(self, text: str) -> np.ndarray:
        vec = self.query_cache.get(text)
        if vec is None:
            vec = self._embed([text])[0]
            self.query_cache.put(text, vec)
        return vec

    # -- validation (validation.py) ------------------------------------------------------------------------
    def _budget(self) -> AbstractContextManager[None]:
        """The query budget for one filtered read or delete (storage/budget.py; `max_query_seconds`)."""
        return query_budget(self.settings.max_query_seconds)

    # -- writes ---------------------------------------------------------------------------------------
    def _put(self, records: list[NewRecord]) -> list[PutResult]:
        try:
            return self._put_fenced(records)
        except StaleFenceError as exc:
            from .errors import StaleFence

            current = "none (released or expired and purged)" if exc.current is None else exc.current
            raise StaleFence(
                f"fence {exc.token} on {exc.key!r} is stale: the claim's fence is now {current}; this writer lost its"
                " lease and must stop",
                detail={"fence": {"key": exc.key, "token": exc.token, "current": exc.current}},
            ) from None

    def _contents(self, records: Sequence[NewRecord]) -> dict[tuple[str, str], str]:
        """The stored content of each (namespace, id) of `records` that exists."""
        by_ns: dict[str, list[str]] = {}
        for r in records:
            by_ns.setdefault(r.namespace, []).append(r.id)
        return {
            (ns, id_): content
            for ns, ids in by_ns.items()
            for id_, content in self.storage.contents(ids, namespace=ns).items()
        }

    def _put_fenced(self, records: list[NewRecord]) -> list[PutResult]:
        known = self._contents(records)
        todo = [r for r in records if r.vector is None and known.get((r.namespace, r.id)) != r.content]
        if todo:
            vectors = self._embed([r.content for r in todo])
            for rec, vec in zip(todo, vectors, strict=True):
                rec.vector = vec
        try:
            return self.storage.put(records, on_commit=lambda res: self._after_put(records, res))
        except ContentChanged:
            # Another writer changed a record between our read and our write: embed everything, once.
            rest = [r for r in records if r.vector is None]
            for rec, vec in zip(rest, self._embed([r.content for r in rest]), strict=True):
                rec.vector = vec
            return self.storage.put(records, on_commit=lambda res: self._after_put(records, res))

    def ingest(self, item: MemoryIn, namespace: str | None = None) -> dict[str, Any]:
        """Store one record (upsert by (namespace, id)). Returns {id, key, created} once committed.

        The record's namespace is `item.namespace`, else `namespace` (the request's query or header), else
        `default`."""
        rec = validation.record(self.settings, item, self.clock(), namespace=namespace)
        result = self._put([rec])[0]
        return {"id": result.id, "key": rec.key, "created": result.created}

    async def ingest_async(self, item: MemoryIn, namespace: str | None = None) -> dict[str, Any]:
        """`ingest` for the event loop: the model and the commit are awaited, no thread is held meanwhile.

        Concurrent calls share model runs (the embedder's coalescer) and are committed together, one
        transaction for all queued (`_commit_group`): one commit and one index update instead of one per
        record. Returns, like `ingest`, only once the record is committed.
        """
        rec = validation.record(self.settings, item, self.clock(), namespace=namespace)
        if self.reads_are_local:  # an indexed lookup in the local file: cheaper than a thread hop
            known = self.storage.contents([rec.id], namespace=rec.namespace)
        else:
            known = await asyncio.to_thread(self.storage.contents, [rec.id], rec.namespace)
        if known.get(rec.id) != rec.content:  # unchanged content keeps its vector
            rec.vector = (await self._embed_async([rec.content]))[0]
        result = (await asyncio.wrap_future(self._group_commit.submit([rec])))[0]
        if isinstance(result, BaseException):
            raise result
        return {"id": result.id, "key": rec.key, "created": result.created}

    def _commit_group(self, records: list[NewRecord]) -> list[PutResult | BaseException]:
        """Single-record ingests queued together, in one transaction; on the commit coalescer's thread.

        If the group fails (a record's fence is stale, a write raced ours, the disk is full), each record is
        written again alone, so one record's error fails its own request only, as it would have without the
        group. Returns each record's result or its error, in order.
        """
        if len(records) > 1:
            try:
                return list(self._put(records))
            except Exception:  # noqa: BLE001 - the transaction rolled back; each record alone says what is wrong
                pass
        out: list[PutResult | BaseException] = []
        for rec in records:
            try:
                out.append(self._put([rec])[0])
            except Exception as exc:  # noqa: BLE001 - handed to that record's caller, raised there
                out.append(exc)
        return out

    def ingest_batch(self, items: Sequence[MemoryIn], namespace: str | None = None) -> dict[str, Any]:
        """Store many records in one transaction: all or nothing, embedded as one batch. A record naming no
        namespace lands in `namespace` (the batch's, else the request's), else `default`."""
        if not items:
            raise InvalidInput("records", "must hold at least one record")
        if len(items) > self.settings.max_batch:
            raise InvalidInput("records", f"holds {len(items)} records; the limit is {self.settings.max_batch}")
        now = self.clock()
        if namespace is not None:
            validate(namespace)
        records = [
            validation.record(self.settings, item, now, f"records[{i}].", namespace) for i, item in enumerate(items)
        ]
        seen: dict[tuple[str, str], int] = {}
        for i, rec in enumerate(records):
            if (rec.namespace, rec.id) in seen:
                raise InvalidInput(f"records[{i}].id", f"repeats the id of records[{seen[rec.namespace, rec.id]}]")
            seen[rec.namespace, rec.id] = i
        results = self._put(records)
        return {"ids": [r.id for r in results], "created": sum(r.created for r in results)}

    def restore(
        self,
        items: Sequence[MemoryRestore],
        vectors: Sequence[np.ndarray | None] | None = None,
        namespace: str | None = None,
    ) -> dict[str, Any]:
        """Write exported records back as they were (import): ids, timestamps and given vectors are kept.

        Ids already present in their namespace (or repeated in `items`) are skipped, not updated, so an
        interrupted import can run again; records already expired are not written. A record naming no namespace
        goes to `namespace`, else `default`. Records without a vector are embedded as one batch.
        One transaction, all or nothing. Returns {"ids": written ids, "skipped", "expired", "embedded"}.
        """
        vecs = list(vectors) if vectors is not None else [None] * len(items)
        if len(vecs) != len(items):
            raise ValueError("restore(): vectors must be None or one per item")
        now = self.clock()
        records: list[RestoredRecord] = []
        skipped = expired = 0
        bases = [
            validation.record(self.settings, item, now, f"records[{i}].", namespace) for i, item in enumerate(items)
        ]
        present = set(self._contents(bases))
        for i, (item, vec, base) in enumerate(zip(items, vecs, bases, strict=True)):
            field = f"records[{i}]."
            if (base.namespace, base.id) in present:
                skipped += 1
                continue
            if base.expires_at is not None and base.expires_at <= now:
                expired += 1
                continue
            present.add((base.namespace, base.id))
            created = to_epoch(item.created_at, f"{field}created_at")
            created = now if created is None else check_time(created, f"{field}created_at")
            updated = to_epoch(item.updated_at, f"{field}updated_at")
            if updated is not None:
                check_time(updated, f"{field}updated_at")
            rec = RestoredRecord(**vars(base), created_at=created, updated_at=created if updated is None else updated)
            if vec is not None:
                v = np.asarray(vec, dtype=np.float32).reshape(-1)
                norm = float(np.linalg.norm(v)) if v.shape == (self.embedder.dim,) else 0.0
                if not math.isfinite(norm) or norm == 0.0:
                    raise InvalidInput(f"{field}vector", f"must be {self.embedder.dim} finite floats, not all zero")
                # Kept bit for bit when already unit length (an export round trip changes nothing).
                rec.vector = v if abs(norm - 1.0) < 1e-4 else v / norm
            records.append(rec)
        todo = [r for r in records if r.vector is None]
        if todo:
            for rec, v in zip(todo, self._embed([r.content for r in todo]), strict=True):
                rec.vector = v

        def after(res: list[PutResult]) -> None:
            # Results name (seq, id) of what was inserted; one id may be in several namespaces of a load.
            queue: dict[str, list[RestoredRecord]] = {}
            for r in records:
                queue.setdefault(r.id, []).append(r)
            self._after_put([queue[p.id].pop(0) for p in res], res)

        results = self.storage.restore(records, on_commit=after)
        return {"ids": [r.id for r in results], "skipped": skipped, "expired": expired, "embedded": len(todo)}

    def dump(self, *, vectors: bool = False, namespace: str | None = None) -> Iterator[dict[str, Any]]:
        """Every live record (of `namespace`, or of all), oldest first, from one snapshot (export); each with its
        `namespace`; `vector` holds float32 bytes if asked."""
        if namespace is not None:
            validate(namespace)
        for row in self.storage.dump(self.clock(), vectors):
            if namespace is not None and row.get("namespace") != namespace:
                continue
            row.pop("seq", None)
            yield row

    def update(
        self,
        id: str,
        patch: MemoryPatch,
        if_version: int | None = None,
        *,
        field: str = "if_version",
        namespace: str | None = None,
    ) -> dict[str, Any]:
        """Change part of a record: content re-embeds, metadata merges (null removes a key), tags replace.

        A read-modify-write: the write goes through only if the record is still the version read, else it is
        read again and the patch merged into the newer state, so concurrent PATCHes never lose each other's
        changes (nor bring back a record deleted meanwhile). With `if_version` (or `patch.if_version`) the
        caller's own read counts: if the record is no longer at that version, PreconditionFailed (naming
        `field` and the current version), and nothing is written. NotFound if there is no live record.
        """
        want = if_version if if_version is not None else patch.if_version
        check_text(id, "id")
        ns = resolve(namespace)
        vector = None
        for _attempt in range(100):
            now = self.clock()
            current = self.storage.get(id, now, namespace=ns)  # the row and its version, from one statement
            if current is None:
                raise NotFound(f"no memory with id {id!r}")
            version = current.pop("version")
            if want is not None and version != want:
                raise _precondition(id, field, version)
            metadata = dict(current["metadata"])
            if patch.metadata is not None:
                for k, v in patch.metadata.items():
                    if v is None:
                        metadata.pop(k, None)
                    else:
                        metadata[k] = v
            expires: Any = current["expires_at"]
            key = patch.key if patch.key is not None else current["key"]
            if patch.key is None and patch.content is not None and key == derive_key(current["content"]):
                key = None  # the key was derived from the old content: derive it from the new content
            item = MemoryIn(
                id=id,
                content=patch.content if patch.content is not None else current["content"],
                tags=patch.tags if patch.tags is not None else current["tags"],
                metadata=metadata,
                importance=patch.importance or current["importance"],
                key=key,
                ttl_seconds=patch.ttl_seconds,
                expires_at=patch.expires_at if patch.expires_at is not None else expires,
                fence=patch.fence,
                namespace=ns,
                occurred_at=patch.occurred_at,
            )
            rec = validation.record(self.settings, item, now)
            if rec.expires_at is not None and rec.expires_at <= now:
                # Written, it would be gone before it could be read back: answered 404 after a write. Refuse first.
                field = "ttl_seconds" if patch.ttl_seconds is not None else "expires_at"
                raise InvalidInput(field, "would expire the memory at once; DELETE it instead")
            rec.if_version = version
            rec.op = "patch"
            if patch.content is not None and patch.content != current["content"]:
                if vector is None:
                    vector = self._embed([patch.content])[0]  # once, however many times the write is retried
                rec.vector = vector
            try:
                self._put([rec])
                break
            except VersionChanged:
                continue
        else:
            from .errors import Conflict

            raise Conflict(f"memory {id!r} kept changing under concurrent writes; try the PATCH again")
        updated = self.storage.get(id, now, namespace=ns)
        if updated is None:  # expired by the patch itself
            raise NotFound(f"memory {id!r} expired")
        updated.pop("seq", None)
        return updated

    def delete(
        self, id: str, if_version: int | None = None, *, field: str = "if_version", namespace: str | None = None
    ) -> dict[str, Any]:
        """Delete one record; with `if_version`, only if it is still at that version (else PreconditionFailed)."""
        check_text(id, "id")
        ns = resolve(namespace)
        seqs = self.storage.delete(
            [id], on_commit=self._after_delete, if_version=if_version, namespace=ns, now=self.clock()
        )
        if not seqs:
            current = self.storage.get(id, self.clock(), namespace=ns) if if_version is not None else None
            if current is not None:
                raise _precondition(id, field, current["version"])
            raise NotFound(f"no memory with id {id!r}")
        return {"deleted": len(seqs)}

    def delete_where(self, req: DeleteWhere, namespace: str | None = None) -> dict[str, Any]:
        """Delete (or with `dry_run` count) the records matching `req` in one namespace (`req.namespace`, else
        `namespace`, else default); a filter without a condition is refused."""
        req = validation.one_namespace(req, namespace)
        conditions = parse_filter(req, self.limits)
        if not conditions:
            # The first empty field given ("key_prefix": "" never gets here: an empty string is refused).
            field = conditions.empty[0] if conditions.empty else "filter"
            raise InvalidInput(
                field, "is no condition; refusing to delete every memory (give at least one non-empty condition)"
            )
        with self._budget():
            n, _ = self.storage.delete_where(conditions, self.clock(), req.dry_run, on_commit=self._after_delete)
        return {"would_delete": n} if req.dry_run else {"deleted": n}

    def purge_expired(self) -> int:
        seqs = self.storage.purge_expired(self.clock(), on_commit=self._after_delete)
        if seqs:
            log.info("purged expired memories", extra={"event": "purged", "count": len(seqs)})
        return len(seqs)

    # -- conversations ----------------------------------------------------------------------------------
    def ingest_conversation(self, conv: ConversationIn, namespace: str | None = None) -> dict[str, Any]:
        """Store a conversation turn by turn, with its window and session records (conversations.py), in one
        namespace (`conv.namespace`, else `namespace`, else default).

        One transaction: every record or none. Ingesting the same conversation again rewrites the same records
        (texts unchanged are not embedded again) and deletes the ones it no longer has. Returns
        {"id", "turns", "records", "created", "deleted"}.
        """
        validation.check_text(conv.id, "id", self.settings.max_id_chars - 64)
        ns = resolve(conv.namespace, namespace)
        items = conversations.records(conv, self.settings.max_content_chars)
        now = self.clock()
        tags = validation.tags(self.settings, conv.tags, "tags")
        records = [
            validation.record(self.settings, item.model_copy(update={"tags": tags}), now, namespace=ns)
            for item in items
        ]
        stale = set(self._conversation_ids(conv.id, now, ns)) - {r.id for r in records}
        results = self._put(records)
        deleted = self.storage.delete(sorted(stale), on_commit=self._after_delete, namespace=ns) if stale else []
        turns = sum(1 for it in items if "derived" not in (it.metadata or {}))
        return {
            "id": conv.id,
            "turns": turns,
            "records": len(records),
            "created": sum(r.created for r in results),
            "deleted": len(deleted),
        }

    def _conversation_ids(self, cid: str, now: float, namespace: str) -> list[str]:
        ids: list[str] = []
        cursor = None
        flt = Filter(where={"conversation": cid}, namespace=namespace)
        while True:
            rows, cursor = self.storage.list(flt, now, 1000, cursor, False)
            ids += [r["id"] for r in rows if r["id"].startswith(f"{cid}#")]
            if cursor is None:
                return ids

    def delete_conversation(self, cid: str, namespace: str | None = None) -> dict[str, Any]:
        """Delete a conversation's turns and the records derived from them; NotFound if it has none."""
        validation.check_text(cid, "id")
        ns = resolve(namespace)
        ids = self._conversation_ids(cid, self.clock(), ns)
        if not ids:
            raise NotFound(f"no conversation with id {cid!r}")
        seqs = self.storage.delete(ids, on_commit=self._after_delete, namespace=ns)
        return {"deleted": len(seqs)}

    # -- history (storage/history.py) -----------------------------------------------------------------
    def prune_history(self, now: float | None = None) -> int:
        """Drop history older than `history_days` (run with the expiry purge; `now` for tests). Returns how many."""
        days = self.settings.history_days
        if days <= 0:
            return 0
        n = self.storage.prune_history((self.clock() if now is None else now) - days * 86_400)
        if n:
            log.info("pruned record history", extra={"event": "history_pruned", "count": n})
        return n

    def history(self, id: str, limit: int = 100, namespace: str | None = None) -> dict[str, Any]:
        """The record's versions newest first: the live one (if any) and the kept prior ones (see `describe`).

        Raises NotFound when there is neither a live record nor a kept version.
        """
        check_text(id, "id")
        if not 1 <= limit <= 1000:
            raise InvalidInput("limit", "must be between 1 and 1000")
        current, prior = self.storage.history(id, self.clock(), limit, namespace=resolve(namespace))
        if current is None and not prior:
            raise NotFound(f"no memory with id {id!r}, and no kept version of one")
        deleted = current is None and prior[0]["superseded_by"] is None
        return {
            "id": id,
            "current_version": current["version"] if current else None,
            "deleted_at": prior[0]["superseded_at"] if deleted else None,
            "versions": describe(current, prior),
        }

    def deleted(self, limit: int = 50, cursor: str | None = None, namespace: str | None = None) -> dict[str, Any]:
        """A namespace's deleted records still kept (within retention), newest deletion first, each as deleted."""
        if not 1 <= limit <= 1000:
            raise InvalidInput("limit", "must be between 1 and 1000")
        rows, nxt = self.storage.deleted(self.clock(), limit, validation.cursor(cursor), namespace=resolve(namespace))
        for r in rows:
            r.pop("seq", None)
        return {"results": rows, "next_cursor": str(nxt) if nxt is not None else None}

    def _kept(self, id: str, version: int, namespace: str) -> dict[str, Any]:
        row = self.storage.get_version(id, version, namespace=namespace)
        if row is None:
            raise NotFound(
                f"memory {id!r} has no version {version} (not one of its versions, or past the history's"
                f" retention: see GET /memories/{id}/history)",
                field="version",
            )
        return row

    def revert(
        self,
        id: str,
        req: RevertIn,
        if_version: int | None = None,
        *,
        field: str = "if_version",
        namespace: str | None = None,
    ) -> dict[str, Any]:
        """Write a new version equal to kept version `req.version` (content, tags, metadata, importance, key; its
        stored vector, so no re-embedding). The expiry stays the current one's. Conditional like PATCH.

        Raises NotFound (no such record or version), Conflict (the record is deleted: restore it instead),
        PreconditionFailed, StaleFence.
        """
        check_text(id, "id")
        ns = resolve(namespace)
        want = if_version if if_version is not None else req.if_version
        fence = self._fence_of(req.fence)
        for _attempt in range(100):
            now = self.clock()
            current = self.storage.get(id, now, namespace=ns)
            if current is None:
                raise self._absent(id, ns)
            version = current.pop("version")
            if want is not None and version != want:
                raise _precondition(id, field, version)
            target = self._kept(id, req.version, ns)
            rec = _version_record(
                target, _epoch(current["expires_at"]), now, if_version=version, fence=fence, op="revert"
            )
            try:
                self._put([rec])
                break
            except VersionChanged:
                continue
        else:
            raise Conflict(f"memory {id!r} kept changing under concurrent writes; try the revert again")
        return self.get(id, namespace=ns)

    def restore_deleted(self, id: str, req: RestoreIn | None = None, namespace: str | None = None) -> dict[str, Any]:
        """Bring a deleted record back as a new version: the version deleted, or `req.version` (any kept one),
        with its vector and created_at. Conflict while a live record has the id; NotFound with nothing kept."""
        check_text(id, "id")
        req = req or RestoreIn()
        ns = resolve(namespace)
        now = self.clock()
        current, prior = self.storage.history(id, now, 1, namespace=ns)
        if current is not None:
            raise Conflict(
                f"memory {id!r} is not deleted (it is at version {current['version']}); to go back to an older"
                f" version, POST /memories/{id}/revert",
                detail={"current_version": current["version"]},
            )
        if req.version is None and (not prior or prior[0]["superseded_by"] is not None):
            # Nothing deleted to bring back: never kept, deleted past retention, or it expired (not kept).
            raise NotFound(
                f"no deleted memory with id {id!r} within the history's retention"
                + (f"; its kept versions can be restored by number (GET /memories/{id}/history)" if prior else "")
            )
        target = self._kept(id, req.version if req.version is not None else prior[0]["version"], ns)
        expires = _epoch(target["expires_at"])
        if expires is not None and expires <= now:
            raise Conflict(
                f"version {target['version']} of memory {id!r} expired at {target['expires_at']}: restored, it would"
                " be gone at once"
            )
        rec = _version_record(
            target,
            expires,
            now,
            fence=self._fence_of(req.fence),
            op="restore",
            absent=True,
            first_created_at=_epoch(target["created_at"]),
        )
        try:
            self._put([rec])
        except VersionChanged:
            raise Conflict(f"memory {id!r} was written again while being restored; it is live now") from None
        return self.get(id, namespace=ns)

    def _fence_of(self, fence: Any) -> tuple[str, int] | None:
        if fence is None:
            return None
        validation.check_text(fence.key, "fence.key", self.settings.max_key_chars)
        return fence.key, fence.token

    def _absent(self, id: str, namespace: str) -> MemorySpineError:
        """The error for a write to a record that is not live: Conflict when it was deleted (restore it first),
        else NotFound."""
        _, prior = self.storage.history(id, self.clock(), 1, namespace=namespace)
        if prior and prior[0]["superseded_by"] is None:
            return Conflict(
                f"memory {id!r} was deleted at {prior[0]['superseded_at']}; restore it first"
                f" (POST /memories/{id}/restore, optionally with a version)"
            )
        return NotFound(f"no memory with id {id!r}")

    # -- reads ----------------------------------------------------------------------------------------
    def get(self, id: str, namespace: str | None = None, as_of: str | None = None) -> dict[str, Any]:
        """The live record with its version; with `as_of` (ISO 8601 or epoch seconds), the version live then."""
        check_text(id, "id")
        ns = resolve(namespace)
        if as_of is not None:
            at = validation.as_of(as_of)
            row = self.storage.as_of(id, at, namespace=ns)
            if row is None:
                raise NotFound(
                    f"memory {id!r} did not exist at as_of={as_of} (or its version then is past the history's"
                    " retention)"
                )
        else:
            row = self.storage.get(id, self.clock(), namespace=ns)
            if row is None:
                raise NotFound(f"no memory with id {id!r}")
        row.pop("seq", None)
        return row

    def list(
        self,
        flt: Filter | None,
        limit: int = 50,
        cursor: str | None = None,
        order: str = "newest",
        namespace: str | None = None,
    ) -> dict[str, Any]:
        """One page of one namespace's records (`flt.namespace`, else `namespace`, else default)."""
        flt = validation.one_namespace(flt or Filter(), namespace)
        if not 1 <= limit <= 1000:
            raise InvalidInput("limit", "must be between 1 and 1000")
        if order not in ("newest", "oldest"):
            raise InvalidInput("order", "must be 'newest' or 'oldest'")
        after = validation.cursor(cursor)
        conditions = parse_filter(flt, self.limits)
        with self._budget():
            rows, nxt = self.storage.list(conditions, self.clock(), limit, after, order == "newest")
        for r in rows:
            r.pop("seq", None)
        return {"results": rows, "next_cursor": str(nxt) if nxt is not None else None}

    def get_key(self, key: str, namespace: str | None = None) -> dict[str, Any]:
        check_text(key, "key")
        rows = self.storage.find_key(key, False, Filter(namespace=resolve(namespace)), self.clock(), 1)
        if not rows:
            raise NotFound(f"no memory with key {key!r}")
        rows[0].pop("seq", None)
        return rows[0]

    def list_keys(self, prefix: str, limit: int = 100, namespace: str | None = None) -> dict[str, Any]:
        if not prefix:
            raise InvalidInput("prefix", "must not be empty")
        check_text(prefix, "prefix")
        if not 1 <= limit <= 1000:
            raise InvalidInput("limit", "must be between 1 and 1000")
        with self._budget():
            flt = Filter(key_prefix=prefix, namespace=resolve(namespace))
            rows, _ = self.storage.list(flt, self.clock(), limit, None, True)
        rows.sort(key=lambda r: r["updated_at"], reverse=True)
        for r in rows:
            r.pop("seq", None)
        return {"results": rows}

    def key_groups(self, prefix: str, limit: int = 50, offset: int = 0, namespace: str | None = None) -> dict[str, Any]:
        """The newest record of each key parent under `prefix`, newest first: one per workflow for `checkpoint:`.

        Returns {"results": [records], "total": how many parents there are}.
        """
        validation.check_text(prefix, "prefix", self.settings.max_key_chars)
        if not 1 <= limit <= 1000:
            raise InvalidInput("limit", "must be between 1 and 1000")
        if not 0 <= offset < 2**63:
            raise InvalidInput("offset", "must be between 0 and 2**63 - 1")
        with self._budget():
            rows, total = self.storage.newest_per_parent(
                prefix, self.clock(), limit, offset, namespace=resolve(namespace)
            )
        for r in rows:
            r.pop("seq", None)
        return {"results": rows, "total": total}

    @property
    def reads_are_local(self) -> bool:
        """True when a point read is a lookup in a local file (SQLite), cheap enough for the event loop."""
        return self.storage.reads_are_local

    def _result_key(self, q: SearchQuery) -> str | None:
        if self.result_cache is None or q.explain or (q.when is not None and q.as_of is None):
            return None  # a `when` read against now names another range as time passes
        try:
            return q.model_dump_json()
        except ValueError:  # not encodable (a lone surrogate): not cached; search() says what is wrong
            return None

    def cached_search(self, q: SearchQuery) -> dict[str, Any] | None:
        """The answer to `q` if the same search ran since the last write, else None (then `search_uncached`)."""
        key = self._result_key(q)
        if key is None:
            return None
        cached = self.result_cache.get(key, self.storage.commits)  # type: ignore[union-attr]
        if cached is not None and self.observer is not None:
            self.observer.observe_plan("result_cache")
        return cached

    def search(self, q: SearchQuery) -> dict[str, Any]:
        """Search by key, meaning, keywords or both; see `planner` for how the plan is chosen."""
        cached = self.cached_search(q)
        return cached if cached is not None else self.search_uncached(q)

    async def query_vector(self, q: SearchQuery) -> np.ndarray | None:
        """The embedding `search_uncached(q, vector)` needs, awaited on the event loop without holding a thread
        (concurrent queries share model runs); None when the search needs none (a key query, keyword mode
        without min_score) or is invalid (search_uncached then says what is wrong)."""
        text = q.query
        if not text.strip() or len(text) > self.settings.max_content_chars or parse_key_query(text) is not None:
            return None
        if (q.mode or self.settings.default_mode) == "keyword" and q.min_score is None:
            return None
        try:
            validation.check_text(text, "query", allow_empty=True)
            parse_filter(q, self.limits)
        except InvalidInput:
            return None
        vec = self.query_cache.get(text)
        if vec is None:
            vec = (await self._embed_async([text]))[0]
            self.query_cache.put(text, vec)
        return vec

    def search_uncached(self, q: SearchQuery, vector: np.ndarray | None = None) -> dict[str, Any]:
        """Run the search (after `cached_search` missed) and keep the answer for the next identical search.

        `vector` is the query's embedding when the caller has it already (`query_vector`); else it is made here.
        """
        key = self._result_key(q)
        commits = self.storage.commits  # read before searching: a write during it makes it stale
        with self._budget():
            out = self._search(q, vector)
        if key is not None and not any(hit.get("expires_at") for hit in out["results"]):
            self.result_cache.put(key, commits, out)  # type: ignore[union-attr]
        return out

    def _search(self, q: SearchQuery, vector: np.ndarray | None = None) -> dict[str, Any]:
        if q.namespace is None:
            q = q.model_copy(update={"namespace": DEFAULT})
        if q.limit > self.settings.max_limit:
            raise InvalidInput("limit", f"must be at most {self.settings.max_limit}")
        if len(q.query) > self.settings.max_content_chars:
            raise InvalidInput("query", f"is longer than {self.settings.max_content_chars} characters")
        validation.check_text(q.query, "query", allow_empty=True)
        if q.min_score is not None and not math.isfinite(q.min_score):
            raise InvalidInput("min_score", "must be a finite number (a cosine similarity, -1..1)")
        parse_filter(q, self.limits)
        now = self.clock()
        time_range = None
        if q.when is not None or q.as_of is not None:
            q, time_range = self._when(q, now)
        mode = q.mode or self.settings.default_mode
        if q.conversation is not None:
            validation.check_text(q.conversation, "conversation")
            match = {"conversation": q.conversation}
            q = q.model_copy(update={"where": {"$and": [q.where, match]} if q.where else match})
        keyq = parse_key_query(q.query)
        if keyq is not None and q.conversation is None and q.granularity is None:
            started = time.perf_counter()
            rows = self.storage.find_key(keyq.key, keyq.include_children, q, now, q.limit)
            hits = []
            for r in rows:
                r.pop("seq", None)
                # An exact key answer: no vector was scored, so no similarity; min_score does not apply.
                r["score"] = None
                r["rank_score"] = 1.0
                hits.append(r)
            plan = {"plan": "exact_key", "key": keyq.key, "ms": round((time.perf_counter() - started) * 1000, 3)}
        else:
            if not q.query.strip():
                raise InvalidInput("query", "must not be empty")
            if q.granularity == "turn" or (q.conversation is not None and q.granularity is None):
                return self._finish(q, mode, *self._turns(q, mode, now, vector), time_range)

            # `score` is the cosine similarity wherever a vector was scored, `rank_score` the mode's own order
            # (storage/search.py); min_score filters on the similarity in every mode.
            def qvec() -> np.ndarray:
                return vector if vector is not None else self.embed_query(q.query)

            if mode == "keyword":
                depth = q.limit if q.min_score is None else max(q.limit * 3, 30)
                ranked, rows, p = self.planner.keyword(q.query, q, depth, now)
                cosines: dict[int, float] = {}
                if q.min_score is not None:
                    # Only min_score needs the query's embedding here (keyword search otherwise runs no model).
                    cosines = self.planner.similarity(qvec(), [s for s, _ in ranked])
                    p.detail["similarity_scored"] = len(cosines)
            elif mode == "hybrid":
                ranked, rows, p, cosines = self.planner.hybrid(q.query, qvec(), q, q.limit, now, q.min_score)
            else:
                ranked, rows, p = self.planner.semantic(qvec(), q, q.limit, now)
                cosines = dict(ranked)
            if any(conversations.is_derived(rows[s]) for s, _ in ranked if s in rows):
                if q.granularity is None:  # conversation records found: ranked as turns, the default for them
                    return self._finish(q, mode, *self._turns(q, mode, now, vector), time_range)
                ranked = [(s, sc) for s, sc in ranked if not conversations.is_derived(rows[s])]
            plan = p.as_dict()
            hits = []
            for seq, rank_score in ranked:
                cosine = cosines.get(seq)
                if q.min_score is not None and (cosine is None or cosine < q.min_score):
                    continue
                row = dict(rows[seq])
                row.pop("seq", None)
                row["score"] = None if cosine is None else round(cosine, 6)
                row["rank_score"] = round(rank_score, 6)
                hits.append(row)
                if len(hits) == q.limit:
                    break
        return self._finish(q, mode, hits, plan, time_range)

    def _turns(
        self, q: SearchQuery, mode: str, now: float, vector: np.ndarray | None = None
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Conversation turns, each once, ranked by the fused evidence of their own, window and session hits.

        The mode's lists are searched deeper than `limit` (window and session hits fold into turns), then
        `fuse_units` credits each hit to the turns it stands for; turns found only through their windows or
        session are read by id. `rank_score` is the fused evidence; `score` the turn's own cosine similarity with
        the query (as in every mode: its stored vector scored exactly when the semantic list did not reach it),
        which `min_score` filters on.
        """
        started = time.perf_counter()
        # Deep enough for window and session hits to fold into `limit` turns: on LoCoMo's tune split recall stops
        # growing at 20 for semantic alone and at 30 for the fused lists (benchmarks/conversations.py).
        depth = max(q.limit * 2, 20) if mode == "semantic" else max(q.limit * 3, 30)
        lists = []
        detail: dict[str, Any] = {}
        cosines: dict[int, float] = {}
        if vector is None and (mode in ("semantic", "hybrid") or q.min_score is not None):
            vector = self.embed_query(q.query)
        if mode in ("semantic", "hybrid"):
            sem, sem_rows, sem_plan = self.planner.semantic(vector, q, depth, now)
            lists.append((sem, sem_rows))
            cosines.update(sem)
            detail["semantic"] = sem_plan.as_dict()
        if mode in ("keyword", "hybrid"):
            kw, kw_rows, _ = self.planner.keyword(q.query, q, depth, now)
            lists.append((kw, kw_rows))
            detail["keyword_hits"] = len(kw)
        ranked = fuse_units(lists, conversations.units_for(q.query), q.limit * 2, k=conversations.RRF_K)
        by_id = {row["id"]: row for _, rows in lists for row in rows.values()}
        # A turn found only through a derived record lives in that record's namespace.
        home = {u: row["namespace"] for _, rows in lists for row in rows.values() for u, _ in conversations.units(row)}
        turns: list[tuple[dict[str, Any], float]] = []
        for unit, rank_score in ranked:
            row = by_id.get(unit)
            if row is None or conversations.is_derived(row):
                row = self.storage.get(unit, now, namespace=home.get(unit, DEFAULT))
                if row is None or conversations.is_derived(row):
                    continue  # deleted since, or a derived record naming another derived one
                row.pop("version", None)
            turns.append((row, rank_score))
        if vector is not None:
            missing = [row["seq"] for row, _ in turns if row["seq"] not in cosines]
            cosines.update(self.planner.similarity(vector, missing))
        hits: list[dict[str, Any]] = []
        for row, rank_score in turns:
            cosine = cosines.get(row["seq"])
            if q.min_score is not None and (cosine is None or cosine < q.min_score):
                continue
            hit = dict(row)
            hit.pop("seq", None)
            hit["score"] = None if cosine is None else round(cosine, 6)
            hit["rank_score"] = round(rank_score, 6)
            hits.append(hit)
            if len(hits) == q.limit:
                break
        plan = Plan("turns", ms=(time.perf_counter() - started) * 1000, detail=detail)
        plan.candidates = len(ranked)
        return hits, plan.as_dict()

    def _finish(
        self, q: SearchQuery, mode: str, hits: list[dict[str, Any]], plan: dict[str, Any], time_range: Any
    ) -> dict[str, Any]:
        plan["mode"] = mode
        log.debug("search", extra={"event": "search", **plan})
        out: dict[str, Any] = {"results": hits}
        if time_range is not None:
            out["time_range"] = time_range
        if q.explain:
            out["plan"] = plan
        if self.observer is not None:
            self.observer.observe_plan(plan["plan"])
        return out

    @staticmethod
    def _when(q: SearchQuery, now: float) -> tuple[SearchQuery, dict[str, Any] | None]:
        """`q` with its `when` phrase turned into occurred_after/occurred_before (intersected with any given)."""
        ref = to_epoch(q.as_of, "as_of")
        ref = now if ref is None else check_time(ref, "as_of")
        if q.when is None:
            return q, None
        validation.check_text(q.when, "when")
        ref_dt = datetime.fromtimestamp(ref, tz=UTC)
        rng = parse_when(q.when, ref_dt)
        after = to_epoch(q.occurred_after, "occurred_after")
        before = to_epoch(q.occurred_before, "occurred_before")
        if rng.start is not None:
            start = rng.start.timestamp() - 1e-6  # occurred_after is strict; the range includes its start
            after = start if after is None else max(after, start)
        if rng.end is not None:
            before = rng.end.timestamp() if before is None else min(before, rng.end.timestamp())
        applied = {**rng.as_dict(), "when": q.when, "as_of": ref_dt.isoformat(timespec="seconds")[:-6] + "Z"}
        return q.model_copy(update={"occurred_after": after, "occurred_before": before}), applied

    # -- claims ---------------------------------------------------------------------------------------
    def claim(self, req: ClaimIn, namespace: str | None = None) -> dict[str, Any]:
        """Take the claim on `key` for `lease_seconds`, or renew it with its `lease_token`.

        Taking returns the claim with its `fence` (a number that grows with every claim taken, on any key) and a
        secret `lease_token`, stored only as a hash; renewing and releasing need that token. Raises Conflict
        while another live claim holds the key, LeaseLost when a renewal's token is not the key's claim's.
        """
        from .errors import Conflict, LeaseLost

        validation.check_text(req.key, "key", self.settings.max_key_chars)
        ns = resolve(req.namespace, namespace)
        lease = req.lease_seconds or self.settings.default_lease_seconds
        if req.lease_token is not None:
            validation.check_text(req.lease_token, "lease_token", 256)
            renewed = self.storage.renew(req.key, _token_hash(req.lease_token), lease, self.clock(), namespace=ns)
            if renewed is None:
                current = self.storage.get_claim(req.key, self.clock(), namespace=ns)
                raise LeaseLost(
                    f"lease_token is not the current claim's on key {req.key!r}: the lease was lost"
                    + (f" (now held by {current['holder']!r})" if current else " (expired or released)"),
                    detail={"claim": current},
                )
            return renewed
        holder = req.holder or str(uuid.uuid4())
        validation.check_text(holder, "holder", 256)
        lease_token = secrets.token_urlsafe(24)
        won, claim = self.storage.claim(req.key, holder, lease, self.clock(), _token_hash(lease_token), namespace=ns)
        if not won:
            raise Conflict(
                f"key {req.key!r} is claimed by {claim['holder']!r} until {claim['expires_at']}",
                detail={"claim": claim},
            )
        return {**claim, "lease_token": lease_token}

    def get_claim(self, key: str, namespace: str | None = None) -> dict[str, Any]:
        check_text(key, "key")
        claim = self.storage.get_claim(key, self.clock(), namespace=resolve(namespace))
        if claim is None:
            raise NotFound(f"no live claim on key {key!r}")
        return claim

    def release(self, key: str, lease_token: str | None, namespace: str | None = None) -> dict[str, Any]:
        """Give the claim back; needs the lease_token it returned (Forbidden without, LeaseLost if another's)."""
        from .errors import Forbidden, LeaseLost

        check_text(key, "key")
        if not lease_token:
            raise Forbidden(
                "releasing a claim needs the lease_token its claim returned (X-Lease-Token header)",
                field="lease_token",
            )
        validation.check_text(lease_token, "lease_token", 256)
        ns = resolve(namespace)
        blocking = self.storage.release(key, _token_hash(lease_token), self.clock(), namespace=ns)  # NotFound: none
        if blocking is not None:
            raise LeaseLost(
                f"lease_token is not the current claim's on key {key!r} (held by {blocking['holder']!r})",
                detail={"claim": blocking},
            )
        return {"released": True}

    # -- stats ----------------------------------------------------------------------------------------
    def stats(self, namespace: str | None = None) -> dict[str, Any]:
        """Counts and tags of one namespace (default `default`), every namespace's count, and the service's facts."""
        now = self.clock()
        out = self.storage.stats(now, namespace=resolve(namespace))
        out.update(
            {
                "index": self.planner.info(),
                "embedder": {
                    "name": self.embedder.name,
                    "model": self.embedder.model,
                    "dim": self.embedder.dim,
                    # Calls per run: how many callers' texts a model run served (concurrent callers share runs).
                    "calls": getattr(self.embedder, "calls", None),
                    "runs": getattr(self.embedder, "runs", None),
                },
                # The same for /ingest's group commit: single-record ingests per transaction.
                "group_commit": {"calls": self._group_commit.calls, "runs": self._group_commit.runs},
                "query_cache": self.query_cache.info(),
                "result_cache": self.result_cache.info() if self.result_cache is not None else None,
                "uptime_seconds": round(now - self.started_at, 3),
                "started_in_seconds": round(self.opened_in, 3),
                "version": __version__,
                "backend": self.storage.backend,
                "namespaces": self.storage.namespaces(now),
            }
        )
        if self.settings.database:
            out["database"] = redact(self.settings.database)
        else:
            out["data_dir"] = str(self.settings.data_dir)
        return out

    def health(self) -> dict[str, Any]:
        """The database's state for /health: {"backend", "status": "ok" | "error", ...}; never raises."""
        try:
            return self.storage.ping()
        except MemorySpineError as exc:
            return {"backend": self.storage.backend, "status": "error", "error": exc.message}

    def namespaces(self) -> dict[str, Any]:
        """Every namespace holding live records, with its count: {"namespaces": [{"namespace", "memories"}]}."""
        counts = self.storage.namespaces(self.clock())
        return {"namespaces": [{"namespace": ns, "memories": n} for ns, n in counts.items()]}

    def check(self, repair: bool = False) -> dict[str, Any]:
        """Verify the database and that the index holds exactly the live rows; rebuild it if asked."""
        problems = self.storage.check()
        return {"database": "ok" if not problems else problems, **self.planner.check(repair)}
