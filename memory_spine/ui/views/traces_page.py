"""The traces page: one page of stored traces, newest first, without their content (the spans)."""

from __future__ import annotations

from typing import Any

from workflow_kit import records as kit

from ...models import Filter
from ...service import MemoryService
from ._shared import KIT_DEFAULT, Scoped


def traces(
    svc: MemoryService,
    workflow_id: str | None = None,
    status: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
    namespace: str = KIT_DEFAULT,
) -> dict[str, Any]:
    """One page of stored traces, newest first, without their content (the spans)."""
    svc = Scoped(svc, namespace)  # type: ignore[assignment]
    where: dict[str, Any] = {}
    if workflow_id:
        where["workflow_id"] = workflow_id
    if status:
        where["status"] = status
    page = svc.list(Filter(key_prefix=kit.TRACE, where=where or None), limit=limit, cursor=cursor)
    rows = []
    for r in page["results"]:
        m = r.get("metadata") or {}
        rows.append(
            {
                "trace_id": m.get("trace_id") or (r.get("key") or "").removeprefix(kit.TRACE),
                "workflow_id": m.get("workflow_id"),
                "workflow": m.get("workflow"),
                "status": m.get("status"),
                "span_count": m.get("span_count"),
                "duration_ms": m.get("duration_ms"),
                "truncated": bool(m.get("truncated")),
                "stored_at": r.get("created_at"),
            }
        )
    return {"results": rows, "next_cursor": page["next_cursor"]}
