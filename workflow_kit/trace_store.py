"""The trace store: the span processor that collects the spans under a workflow span and, when that span ends,
stores the whole trace in Memory Spine in the seed's shape:

    {"trace_id", "workflow", "workflow_id", "started_at", "ended_at", "status",
     "spans": [{"agent", "name", "kind", "span_id", "parent_id", "trace_id", "start", "end", "duration_ms",
                "status", "inputs"?, "outputs"?, "reasoning"?, "result_summary"?, "error"?, "attributes",
                "events"}]}

as `{"content": json.dumps(trace), "tags": ["trace", "audit"], "metadata": {"trace_id", "workflow_id", ...},
"key": "trace:{trace_id}"}` (records.py), so `await client.get_key(f"trace:{trace_id}")` fetches it by id.
Times are epoch seconds, ids lowercase hex (OTel's 32/16-digit form).

Imports point one way: trace_store -> client, journal -> spans; client and journal never import this module.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.trace import Span, StatusCode, format_span_id, format_trace_id

from . import records, spans
from .client import MemoryClient, current_client
from .errors import InvalidInput, PayloadTooLarge
from .journal import current_journal
from .spans import KIND, RECORDED, SUPPRESS, WORKFLOW, WORKFLOW_ID

log = logging.getLogger("workflow_kit.tracing")

_install_lock = threading.Lock()
_store: TraceStore | None = None


def install(provider: TracerProvider | None = None) -> TraceStore:
    """Make sure the kit's spans are recorded and workflow traces stored; safe to call many times.

    Uses `provider` if given, else the global SDK provider if one is set, else creates one and makes it
    global.
    Returns the `TraceStore` processor added to it (once per process).
    """
    global _store
    with _install_lock:
        if _store is not None and (provider is None or provider is spans.installed_provider()):
            return _store
        if provider is None:
            current = trace.get_tracer_provider()
            if isinstance(current, TracerProvider):
                provider = current
            else:
                provider = TracerProvider()
                # Refused (with a warning) if another was set; the kit then keeps using its own.
                trace.set_tracer_provider(provider)
        _store = TraceStore()
        provider.add_span_processor(_store)
        spans.use_provider(provider)
        return _store


def _span_doc(s: ReadableSpan) -> dict[str, Any]:
    attrs = dict(s.attributes or {})
    start = (s.start_time or 0) / 1e9
    end = (s.end_time or s.start_time or 0) / 1e9
    doc: dict[str, Any] = {
        "agent": s.name,  # the seed's field name for what ran
        "name": s.name,
        "kind": attrs.pop(KIND, "internal"),
        "span_id": format_span_id(s.context.span_id),
        "parent_id": format_span_id(s.parent.span_id) if s.parent else None,
        "trace_id": format_trace_id(s.context.trace_id),
        "start": start,
        "end": end,
        "duration_ms": round((end - start) * 1000, 3),
        "status": "error" if s.status.status_code == StatusCode.ERROR else "ok",
    }
    for name, attr in RECORDED.items():
        if attr in attrs:
            raw = attrs.pop(attr)
            try:
                doc[name] = json.loads(raw)
            except (TypeError, ValueError):
                doc[name] = raw
    # The seed's complete_span() field: every span has one.
    doc["result_summary"] = str(doc["outputs"])[:200] if "outputs" in doc else ""
    if doc["status"] == "error":
        doc["error"] = s.status.description
    doc["attributes"] = {k: v if isinstance(v, str | int | float | bool) else list(v) for k, v in attrs.items()}
    doc["events"] = [
        {
            "name": e.name,
            "time": e.timestamp / 1e9,
            "attributes": {k: str(v) for k, v in (e.attributes or {}).items()},
        }
        for e in s.events
    ]
    return doc


@dataclass
class _Pending:
    root_span_id: int
    trace_id: int
    client: MemoryClient | None
    journal: Any = None  # (Journal, workflow_id) when the workflow runs with a journal
    spans: list[dict[str, Any]] = field(default_factory=list)


class TraceStore(SpanProcessor):
    """Collects the spans under each outermost workflow span; when it ends, stores the trace in the service.

    The client is the one current when the workflow span starts (run_workflow sets it). Storing runs as an
    asyncio task on the running loop; `await flush(trace_id)` waits for it (run_workflow does, before it
    returns). Spans that end after their workflow span are dropped. Storing never fails the workflow: an error
    is logged and `flush` returns None.
    """

    def __init__(self) -> None:
        self._owner: dict[int, _Pending] = {}  # span id -> the workflow trace it belongs to
        self._tasks: dict[str, asyncio.Task[str | None]] = {}
        self._lock = threading.Lock()

    def on_start(self, span: Span, parent_context: Any = None) -> None:  # type: ignore[override]
        ctx = span.get_span_context()
        parent = getattr(span, "parent", None)
        with self._lock:
            owner = self._owner.get(parent.span_id) if parent is not None else None
            if owner is not None:
                self._owner[ctx.span_id] = owner
            elif (getattr(span, "attributes", None) or {}).get(KIND) == records.KIND_WORKFLOW:
                self._owner[ctx.span_id] = _Pending(ctx.span_id, ctx.trace_id, current_client(), current_journal())

    def on_end(self, span: ReadableSpan) -> None:
        with self._lock:
            pending = self._owner.pop(span.context.span_id, None)
        if pending is None:
            return
        pending.spans.append(_span_doc(span))
        if span.context.span_id != pending.root_span_id:
            return
        trace_hex = format_trace_id(pending.trace_id)
        if pending.client is None:
            log.warning(
                "trace not stored: no MemoryClient was current when the workflow started",
                extra={"trace": trace_hex},
            )
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            log.warning("trace not stored: the workflow span ended outside an event loop", extra={"trace": trace_hex})
            return
        doc = self._document(pending, span)
        # An empty context: the store request is not part of the trace it stores.
        task = loop.create_task(self._save(pending.client, doc, pending.journal), context=contextvars.Context())
        for done in [k for k, t in self._tasks.items() if t.done()]:  # nobody flushed those: forget them
            del self._tasks[done]
        self._tasks[trace_hex] = task

    @staticmethod
    def _document(pending: _Pending, root: ReadableSpan) -> dict[str, Any]:
        attrs = root.attributes or {}
        spans = sorted(pending.spans, key=lambda d: d["start"])
        root_id = format_span_id(root.context.span_id)
        root_doc = next(d for d in spans if d["span_id"] == root_id)
        return {
            "trace_id": format_trace_id(pending.trace_id),
            "workflow": attrs.get(WORKFLOW, root.name),
            "workflow_id": attrs.get(WORKFLOW_ID),
            "started_at": root_doc["start"],
            "ended_at": root_doc["end"],
            "status": root_doc["status"],
            "spans": spans,
        }

    @staticmethod
    async def _save(client: MemoryClient, doc: dict[str, Any], journal: Any = None) -> str | None:
        SUPPRESS.set(True)
        metadata = {
            "trace_id": doc["trace_id"],
            "workflow_id": doc["workflow_id"],
            "workflow": doc["workflow"],
            "status": doc["status"],
            "span_count": len(doc["spans"]),
            "duration_ms": round((doc["ended_at"] - doc["started_at"]) * 1000, 3),
        }
        key = records.trace_key(doc["trace_id"])
        # Over the service's content cap, keep the shape and the parent links and shed detail: first what the
        # spans recorded, then the memory-call spans (leaves: no other span hangs under them).
        for level in range(3):
            if level == 1:
                for s in doc["spans"]:
                    for name in ("inputs", "outputs", "reasoning", "attributes", "events"):
                        s.pop(name, None)
                doc["truncated"] = metadata["truncated"] = True
            elif level == 2:
                kept = [s for s in doc["spans"] if s.get("kind") != records.KIND_MEMORY]
                doc["dropped_memory_spans"] = metadata["dropped_memory_spans"] = len(doc["spans"]) - len(kept)
                doc["spans"] = kept
            body = {
                "content": json.dumps(doc),
                "tags": list(records.TRACE_TAGS),
                "metadata": metadata,
                "key": key,
                "id": f"trace-{doc['trace_id']}",
            }
            try:
                if journal is not None:
                    # Degraded: the journal delivers it (in order, after the run's checkpoints) when it can.
                    store, workflow_id = journal
                    await store.write(client.kit, workflow_id, body)
                    return body["id"]
                answer = await client.kit.ingest(body.pop("content"), **body)
                return answer.get("id")
            except (PayloadTooLarge, InvalidInput) as exc:
                too_big = isinstance(exc, PayloadTooLarge) or exc.field == "content"
                if not too_big or level == 2:
                    log.error("trace not stored: %s", exc, extra={"trace": doc["trace_id"]})
                    return None
            except Exception as exc:  # a lost trace must never fail (or mask the error of) the workflow
                log.error("trace not stored: %s", exc, extra={"trace": doc["trace_id"]})
                return None
        return None

    async def save_partial(self, trace_id: str, workflow: str | None, workflow_id: str | None) -> str | None:
        """Store the spans of a still-running trace that have ended so far (status "running", `partial`), so a
        run killed later leaves its finished steps' spans behind. The final store replaces it (same id)."""
        with self._lock:
            pending = next((p for p in self._owner.values() if format_trace_id(p.trace_id) == trace_id), None)
            spans = [dict(d) for d in sorted(pending.spans, key=lambda d: d["start"])] if pending else []
        if pending is None or pending.client is None or not spans:
            return None
        doc = {
            "trace_id": trace_id,
            "workflow": workflow,
            "workflow_id": workflow_id,
            "started_at": spans[0]["start"],
            "ended_at": max(d["end"] for d in spans),
            "status": "running",
            "partial": True,
            "spans": spans,
        }
        # Its own empty context, as for the final store: the store request is not part of the trace it stores.
        task = asyncio.get_running_loop().create_task(
            self._save(pending.client, doc, pending.journal), context=contextvars.Context()
        )
        return await task

    async def flush(self, trace_id: str | None = None) -> str | None:
        """Wait until the given trace (or every pending one) is stored; return its record id (or None)."""
        if trace_id is not None:
            task = self._tasks.pop(trace_id, None)
            return await task if task is not None else None
        last = None
        while self._tasks:
            _tid, task = self._tasks.popitem()
            last = await task
        return last

    def shutdown(self) -> None:
        self._owner.clear()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


async def flush(trace_id: str | None = None) -> str | None:
    """Wait for a stored trace (see `TraceStore.flush`); a no-op when tracing was never installed."""
    return await _store.flush(trace_id) if _store is not None else None


async def save_partial(trace_id: str | None, workflow: str | None, workflow_id: str | None) -> str | None:
    """Store what a running trace has so far (see `TraceStore.save_partial`); a no-op without tracing."""
    if _store is None or not trace_id:
        return None
    return await _store.save_partial(trace_id, workflow, workflow_id)
