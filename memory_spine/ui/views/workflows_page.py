"""The workflows page: one page of workflows, most recently updated first, each with its status and why."""

from __future__ import annotations

from typing import Any

from workflow_kit import records as kit

from ...models import Filter
from ...service import MemoryService
from ._shared import KIT_DEFAULT, Scoped, last_run, live_claim, traces_of, workflow_id_of
from .status import workflow_status


def _newest_traces(svc: MemoryService, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The newest trace of each of these workflows: one pass over the traces for the whole page, then one
    look-up for each workflow whose runs were crowded out of it by another's many runs."""
    if not ids:
        return {}
    flt = Filter(key_prefix=kit.TRACE, where={"workflow_id": {"$in": ids}})
    newest: dict[str, dict[str, Any]] = {}
    for r in svc.list(flt, limit=min(1000, 4 * len(ids)))["results"]:
        newest.setdefault((r.get("metadata") or {}).get("workflow_id"), r)
    for wf in ids:
        if wf not in newest:
            found = traces_of(svc, wf, 1)
            if found:
                newest[wf] = found[0]
    return newest


def workflows(
    svc: MemoryService, prefix: str = "", limit: int = 50, offset: int = 0, namespace: str = KIT_DEFAULT
) -> dict[str, Any]:
    """One page of workflows known from their checkpoints, most recently updated first; the first page also
    lists workflows with run records but no checkpoint yet (a first run still in, or killed in, its first step)."""
    svc = Scoped(svc, namespace)  # type: ignore[assignment]
    groups = svc.key_groups(kit.CHECKPOINT + prefix, limit=limit, offset=offset)
    records: list[dict[str, Any] | None] = list(groups["results"])
    ids = [workflow_id_of(r) for r in groups["results"]]
    total = groups["total"]
    if offset == 0:
        for run in svc.key_groups(kit.RUN + prefix, limit=limit)["results"]:
            wf = (run.get("metadata") or {}).get("workflow_id")
            if isinstance(wf, str) and wf not in ids and not svc.list_keys(kit.checkpoint_prefix(wf), 1)["results"]:
                ids.append(wf)
                records.append(None)
                total += 1
    newest = _newest_traces(svc, ids)
    rows = []
    for record, wf in zip(records, ids, strict=True):
        meta = (record or {}).get("metadata") or {}
        escalations = svc.list_keys(kit.escalation_prefix(wf), 100)["results"]
        traces = [newest[wf]] if wf in newest else []
        last = last_run(svc, wf)
        status, why = workflow_status(record, escalations, live_claim(svc, wf), traces[0] if traces else None, last)
        steps = meta.get("steps") if isinstance(meta.get("steps"), list) else None
        index = meta.get("step_index")
        rows.append(
            {
                "workflow_id": wf,
                "workflow": (traces[0]["metadata"].get("workflow") if traces else None),
                "last_step": meta.get("step"),
                "step_number": index + 1 if isinstance(index, int) else None,
                "step_count": len(steps) if steps else None,
                "status": status,
                "why": why,
                "updated_at": record["updated_at"] if record else (last or {}).get("updated_at"),
            }
        )
    return {"results": rows, "total": total, "offset": offset, "limit": limit}
