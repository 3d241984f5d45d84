"""The trace page: one stored trace laid out as a waterfall, spans in tree order with their depth and their
start offset from the trace's start."""

from __future__ import annotations

from typing import Any

from workflow_kit import records as kit

from ...errors import NotFound
from ...service import MemoryService
from ._shared import KIT_DEFAULT, Scoped, children, load_trace


def waterfall(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored trace with its spans in tree order (parents before children, siblings by start), each given
    `depth`, `offset_ms` (from the trace's start) and `children`; spans whose parent is not in the trace
    (dropped from a truncated trace) are shown at the top level with `orphan: true`."""
    spans = [s for s in doc.get("spans") or [] if isinstance(s, dict)]
    kids = children(spans)
    starts = [s["start"] for s in spans if isinstance(s.get("start"), int | float)]
    ends = [s["end"] for s in spans if isinstance(s.get("end"), int | float)]
    t0 = doc.get("started_at") if isinstance(doc.get("started_at"), int | float) else min(starts, default=0)
    t0 = min([t0, *starts])
    ordered: list[dict[str, Any]] = []
    todo = [(s, 0) for s in reversed(kids.get(None, []))]
    while todo:
        s, depth = todo.pop()
        row = dict(s)
        row["depth"] = depth
        row["offset_ms"] = round(((s.get("start") or t0) - t0) * 1000, 3)
        row["children"] = len(kids.get(s.get("span_id"), []))
        row["orphan"] = bool(s.get("parent_id")) and depth == 0
        ordered.append(row)
        todo.extend((c, depth + 1) for c in reversed(kids.get(s.get("span_id"), [])))
    total = round((max(ends, default=t0) - t0) * 1000, 3)
    out = {k: v for k, v in doc.items() if k != "spans"}
    out.update(
        spans=ordered,
        total_ms=total,
        error_count=sum(1 for s in ordered if s.get("status") == "error"),
        max_depth=max((s["depth"] for s in ordered), default=0),
    )
    return out


def trace(svc: MemoryService, trace_id: str, namespace: str = KIT_DEFAULT) -> dict[str, Any]:
    """A stored trace as a waterfall (see `waterfall`), with the id of its record.

    Raises:
        NotFound: no trace has this id.
    """
    record = Scoped(svc, namespace).get_key(kit.trace_key(trace_id))
    doc = load_trace(record)
    if doc is None:
        raise NotFound(f"the record of trace {trace_id!r} does not hold a trace")
    out = waterfall(doc)
    out["record_id"] = record["id"]
    out["stored_at"] = record["created_at"]
    return out
