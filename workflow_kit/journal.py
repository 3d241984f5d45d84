"""Memory degradation: when Memory Spine is down or slow, workflows keep running on a local journal.

    journal = Journal("~/.local/state/workflow_kit")      # one JSON-lines file per workflow id
    run = await run_workflow(client, "pr-42", steps, journal=journal)
    hits = await recall(client, "similar incidents")       # [] and a warning when the service is out

**Writes** the kit makes for a workflow (checkpoints, dedup records, escalations, traces) go through
`Journal.write`: the record (an ingest body with its id fixed up front) is appended to `{workflow_id}.jsonl`,
then every undelivered record of that workflow is sent, oldest first. When the service cannot be reached, fails
(5xx) or takes longer than `write_timeout`, the record stays in the file (now fsynced) and the run goes on; the
breaker `memory-spine` then sends the next writes straight to the file until its cooldown lets a trial through.
The next write or `flush()` after the service is back delivers what is pending, **in order** (nothing newer is
sent while something older waits) and **idempotently** (each record carries its id, and the service upserts
by id, so a record delivered twice, say by a flush that timed out after the service had stored it, is one
record). `{workflow_id}.flushed` holds the sequence number of the last delivered record. A record the service
refuses outright (422/413, or 409 stale_fence: written under a claim another worker has taken since) is marked
rejected and skipped, and its error raised to the writer if it is the record being written.

The file also mirrors what was delivered, so a run started while the service is down resumes from it. A run
with neither the service nor any journal line for its workflow refuses to start: it cannot tell a fresh
workflow from one that already ran. Files are kept until deleted (`forget`): the mirror is what makes a
degraded re-run of a finished workflow replay instead of running again.

**Reads** that are only context (similar past tasks, prior findings) fail soft: `recall` returns no hits and
logs a warning. The workflow's own records (checkpoints, dedup) are read through the journal as well.

**Exclusion**: the service's claims keep two workers off one workflow; while it is out, the journal's
`lock()` (an flock on `{workflow_id}.lock`) does it for workers on this host only.
"""

from __future__ import annotations

import asyncio
import contextvars
import fcntl
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from . import metrics as _metrics
from .breaker import CircuitBreaker
from .client import MemoryClient, check_workflow_id
from .errors import CircuitOpen, ClaimTimeout, InvalidInput, PayloadTooLarge, ServiceError, StaleFence

__all__ = ["Journal", "current_journal", "recall"]

log = logging.getLogger("workflow_kit.journal")

_current: contextvars.ContextVar[tuple[Journal, str] | None] = contextvars.ContextVar(
    "workflow_kit_journal", default=None
)


def current_journal() -> tuple[Journal, str] | None:
    """(journal, workflow_id) of the running workflow, when it runs with a journal."""
    return _current.get()


@contextmanager
def bound(journal: Journal | None, workflow_id: str) -> Iterator[None]:
    """Make `journal` the running workflow's journal for the block (run_workflow does this)."""
    if journal is None:
        yield
        return
    token = _current.set((journal, workflow_id))
    try:
        yield
    finally:
        _current.reset(token)


def _unavailable(exc: BaseException) -> bool:
    """Failures that mean "the service is out or slow", as opposed to "it refused this record"."""
    return isinstance(exc, ServiceError | TimeoutError | CircuitOpen)


def _as_memory(entry: Mapping[str, Any], delivered: int) -> dict[str, Any]:
    body = entry["body"]
    return {
        "id": body.get("id"),
        "content": body.get("content"),
        "tags": body.get("tags") or [],
        "metadata": body.get("metadata") or {},
        "key": body.get("key"),
        "journal_seq": entry["seq"],
        "pending": entry["seq"] > delivered,
    }


class Journal:
    """A directory of per-workflow journals; see the module docstring."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        write_timeout: float = 2.0,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.directory = Path(directory).expanduser()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.write_timeout = write_timeout
        # One failure is enough to stop waiting on the service; the cooldown brings a trial back soon.
        self.breaker = breaker or CircuitBreaker("memory-spine", failure_threshold=1, cooldown=2.0)
        self._entries: dict[str, list[dict[str, Any]]] = {}
        self._next_seq: dict[str, int] = {}
        self._degraded: set[str] = set()

    # -- files ---------------------------------------------------------------------------------------------

    def path(self, workflow_id: str) -> Path:
        """The journal file of `workflow_id`."""
        check_workflow_id(workflow_id)
        return self.directory / f"{workflow_id}.jsonl"

    def _mark_path(self, workflow_id: str) -> Path:
        return self.directory / f"{workflow_id}.flushed"

    def _load(self, workflow_id: str) -> list[dict[str, Any]]:
        if workflow_id in self._entries:
            return self._entries[workflow_id]
        path = self.path(workflow_id)
        entries: list[dict[str, Any]] = []
        rejected: set[int] = set()
        if path.exists():
            raw = path.read_bytes()
            if raw and not raw.endswith(b"\n"):  # a write torn by a crash: drop the partial line
                cut = raw.rfind(b"\n") + 1
                log.warning("journal: dropping a torn last line", extra={"path": str(path), "bytes": len(raw) - cut})
                with open(path, "r+b") as f:
                    f.truncate(cut)
                raw = raw[:cut]
            for line in raw.decode("utf-8", errors="replace").splitlines():
                try:
                    item = json.loads(line)
                except ValueError:
                    log.warning("journal: skipping a garbled line", extra={"path": str(path)})
                    continue
                if item.get("rejected"):
                    rejected.add(item["seq"])
                elif "body" in item:
                    entries.append(item)
        entries = [e for e in entries if e["seq"] not in rejected]
        self._entries[workflow_id] = entries
        self._next_seq[workflow_id] = max([e["seq"] for e in entries] + list(rejected) + [0]) + 1
        return entries

    def _append_line(self, workflow_id: str, item: Mapping[str, Any], sync: bool = False) -> None:
        with open(self.path(workflow_id), "ab") as f:
            f.write(json.dumps(item, separators=(",", ":")).encode() + b"\n")
            f.flush()
            if sync:
                os.fsync(f.fileno())

    def _sync(self, workflow_id: str) -> None:
        with open(self.path(workflow_id), "ab") as f:
            os.fsync(f.fileno())

    def delivered(self, workflow_id: str) -> int:
        """Sequence number of the last record delivered to the service (0: none)."""
        try:
            return int(self._mark_path(workflow_id).read_text().strip() or 0)
        except (OSError, ValueError):
            return 0

    def _set_delivered(self, workflow_id: str, seq: int) -> None:
        mark = self._mark_path(workflow_id)
        tmp = mark.with_suffix(".flushed.tmp")
        tmp.write_text(str(seq))
        os.replace(tmp, mark)  # a stale mark after a crash only means a harmless re-delivery (upsert by id)

    def entries(self, workflow_id: str) -> list[dict[str, Any]]:
        """Every live record of the workflow, oldest first: `{"seq", "at", "body"}`."""
        return list(self._load(workflow_id))

    def pending(self, workflow_id: str) -> list[dict[str, Any]]:
        """Records not yet delivered, oldest first."""
        done = self.delivered(workflow_id)
        return [e for e in self._load(workflow_id) if e["seq"] > done]

    def workflows(self) -> list[str]:
        """Workflow ids that have a journal here."""
        return sorted(p.stem for p in self.directory.glob("*.jsonl"))

    def append(self, workflow_id: str, body: Mapping[str, Any]) -> int:
        """Add one ingest body (it must carry its `id`); returns its sequence number. Nothing is sent."""
        if not body.get("id"):
            raise InvalidInput("body.id", "a journal record needs a fixed id, so a replay upserts it")
        entries = self._load(workflow_id)
        seq = self._next_seq[workflow_id]
        self._next_seq[workflow_id] = seq + 1
        item = {"seq": seq, "at": time.time(), "body": dict(body)}
        self._append_line(workflow_id, item)
        entries.append(item)
        return seq

    def forget(self, workflow_id: str) -> None:
        """Delete the workflow's journal files (after it finished and everything was delivered)."""
        for p in (
            self.path(workflow_id),
            self._mark_path(workflow_id),
            self.directory / f"{workflow_id}.lock",
            self._lease_path(workflow_id),
        ):
            p.unlink(missing_ok=True)
        self._entries.pop(workflow_id, None)

    # -- reading the mirror ---------------------------------------------------------------------------------

    def find_key(self, workflow_id: str, key: str) -> dict[str, Any] | None:
        """The newest journal record of the workflow holding exactly `key`, as a memory dict."""
        done = self.delivered(workflow_id)
        for e in reversed(self._load(workflow_id)):
            if e["body"].get("key") == key:
                return _as_memory(e, done)
        return None

    def list_prefix(self, workflow_id: str, prefix: str) -> list[dict[str, Any]]:
        """Journal records of the workflow whose key starts with `prefix`, newest first."""
        done = self.delivered(workflow_id)
        return [
            _as_memory(e, done)
            for e in reversed(self._load(workflow_id))
            if (e["body"].get("key") or "").startswith(prefix)
        ]

    # -- delivering ----------------------------------------------------------------------------------------

    async def write(self, client: MemoryClient, workflow_id: str, body: Mapping[str, Any]) -> bool:
        """Journal `body`, then deliver everything pending in order. True if it reached the service now.

        Raises InvalidInput / PayloadTooLarge if the service refuses this very record (it is then dropped).
        """
        if client.namespace is not None and body.get("namespace") is None:
            # Journaled with its namespace: whichever client flushes it later, it lands where it was meant to.
            body = {**body, "namespace": client.namespace}
        seq = self.append(workflow_id, body)
        await self.flush(client, workflow_id, strict=seq)
        return self.delivered(workflow_id) >= seq

    async def flush(self, client: MemoryClient, workflow_id: str | None = None, *, strict: int | None = None) -> int:
        """Deliver pending records (of one workflow, or all), oldest first; returns how many went out.

        Stops at the first record the service cannot take now; never raises for an unavailable service.
        """
        if workflow_id is None:
            return sum([await self.flush(client, wf) for wf in self.workflows()])
        try:
            return await self._flush(client, workflow_id, strict)
        finally:
            _metrics.current().journal_pending.labels(workflow_id).set(len(self.pending(workflow_id)))

    async def _flush(self, client: MemoryClient, workflow_id: str, strict: int | None) -> int:
        sent = 0
        for entry in self.pending(workflow_id):
            body = dict(entry["body"])
            try:
                self.breaker.before()
                try:
                    async with asyncio.timeout(self.write_timeout):
                        await client.ingest(body.pop("content"), **body)
                except BaseException as exc:
                    self.breaker.settle(exc)
                    raise
                self.breaker.settle(None)
            except (InvalidInput, PayloadTooLarge, StaleFence) as exc:
                # Refused for good; a stale fence too: written under a claim another worker has since taken.
                self._append_line(workflow_id, {"seq": entry["seq"], "rejected": True, "error": str(exc)[:500]})
                self._entries[workflow_id] = [e for e in self._entries[workflow_id] if e["seq"] != entry["seq"]]
                if entry["seq"] == strict:
                    raise
                log.error(
                    "journal: the service refused a record; dropped", extra={"seq": entry["seq"], "error": str(exc)}
                )
                continue
            except Exception as exc:
                if not _unavailable(exc):
                    raise
                self._sync(workflow_id)
                if workflow_id not in self._degraded:
                    self._degraded.add(workflow_id)
                    log.warning(
                        "memory service unavailable: writing to the local journal",
                        extra={"workflow_id": workflow_id, "journal": str(self.path(workflow_id)), "error": str(exc)},
                    )
                return sent
            self._set_delivered(workflow_id, entry["seq"])
            sent += 1
        if workflow_id in self._degraded:
            self._degraded.discard(workflow_id)
            log.warning("memory service back: journal flushed", extra={"workflow_id": workflow_id, "records": sent})
        return sent

    def degraded(self, workflow_id: str) -> bool:
        """Whether the workflow has records waiting for the service."""
        return bool(self.pending(workflow_id))

    # -- the run's lease token ------------------------------------------------------------------------------
    # Kept next to the journal while a run holds its workflow's claim, so that after a crash the next run on this
    # host (which holds the flock, so the old run is gone: a frozen one would still hold it) can release the dead
    # run's claim at once instead of waiting out its lease. Re-claiming gets a new fence.

    def _lease_path(self, workflow_id: str) -> Path:
        return self.directory / f"{workflow_id}.lease"

    def keep_lease(self, workflow_id: str, key: str, token: str) -> None:
        """Remember the lease token of the claim a run of this workflow holds (file mode 0600)."""
        path = self._lease_path(workflow_id)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"key": key, "lease_token": token}, f)

    def kept_lease(self, workflow_id: str) -> dict[str, str] | None:
        """The lease a run of this workflow held and did not give back (it crashed), or None."""
        try:
            got = json.loads(self._lease_path(workflow_id).read_text())
        except (OSError, ValueError):
            return None
        return got if isinstance(got, dict) and isinstance(got.get("lease_token"), str) else None

    def drop_lease(self, workflow_id: str) -> None:
        self._lease_path(workflow_id).unlink(missing_ok=True)

    # -- local exclusion -----------------------------------------------------------------------------------

    @asynccontextmanager
    async def lock(self, workflow_id: str, timeout: float = 120.0) -> AsyncIterator[None]:
        """Hold an exclusive flock on the workflow for the block (released by the OS if the process dies)."""
        path = self.directory / f"{workflow_id}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        started = time.monotonic()
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    waited = time.monotonic() - started
                    if waited >= timeout:
                        raise ClaimTimeout(f"journal-lock:{workflow_id}", "another local process", waited) from None
                    await asyncio.sleep(0.05)
            self._entries.pop(workflow_id, None)  # another process may have written: read the file again
            yield
        finally:
            os.close(fd)  # closing the descriptor drops the lock


async def recall(
    client: MemoryClient, query: str, *, timeout: float = 2.0, journal: Journal | None = None, **search: Any
) -> list[dict[str, Any]]:
    """`client.search(query, **search)["results"]`, or `[]` with a logged warning when the service is out,
    failing, or slower than `timeout`. For context reads an agent can do without."""
    bound_journal = journal or (current_journal() or (None, None))[0]
    breaker = bound_journal.breaker if bound_journal is not None else None
    try:
        if breaker is not None:
            breaker.before()
        try:
            async with asyncio.timeout(timeout):
                found = await client.search(query, **search)
        except BaseException as exc:
            if breaker is not None:
                breaker.settle(exc)
            raise
        if breaker is not None:
            breaker.settle(None)
        return list(found.get("results") or [])
    except Exception as exc:
        if not _unavailable(exc):
            raise
        log.warning(
            "memory read failed soft: going on without it",
            extra={"query": query[:200], "error": f"{type(exc).__name__}: {exc}"},
        )
        return []
