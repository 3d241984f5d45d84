"""What the console's pages show, read through `MemoryService` (never SQL) and the service's Prometheus registry.

- Workflows, from the records workflow_kit writes: checkpoints (`checkpoint:{wf}:{step}`), escalations
  (`escalation:{wf}:{id}`), the run's claim (`workflow:{wf}`), traces (`trace:{trace_id}`, metadata
  `workflow_id`) and dedup records (`dedup:{key}`, found through the `dedup_key` attribute of the trace's
  `idempotent` spans) and run records (`run:{wf}:{run_id}`: status, holder, trace id, written when a run starts
  and ends). A workflow's status: **completed** (its newest checkpoint says so), **paused** (an open
  escalation), **running** (a live claim on it), **failed** (its last run ended with an error after its newest
  checkpoint, or died: its record still says running and nobody holds the claim) or **stopped** (none of these:
  stopped by a signal, or let go after a pause; running it again with the same id resumes). Every run is
  listed, from its record and its trace, including runs killed before they stored a trace.
- Traces: the list (metadata only), and one trace laid out as a waterfall: spans in tree order with their
  depth and their start offset from the trace's start.
- Overview: counts and sizes from `stats()`, request latency percentiles estimated from the histogram buckets
  (as Prometheus' histogram_quantile does), ingest and search rates from the request counters.

Namespaces: the workflow and trace views read the kit's namespace (`_kit/<namespace>`, default
`_kit/default`), through `_Scoped`; the overview counts one namespace (default `default`) and lists them all.

HTTP is api/ui.py's job; this module raises the service's own errors (NotFound, InvalidInput).
"""

from __future__ import annotations

import json
import math
import shlex
import threading
import time
from collections import defaultdict, deque
from typing import Any

from workflow_kit import records as kit

from ..errors import NotFound
from ..models import Filter
from ..namespaces import DEFAULT, kit_namespace
from ..service import MemoryService

KIT_DEFAULT = kit_namespace(DEFAULT)


class _Scoped:
    """The service's reads the workflow views make, all in one namespace (the kit's)."""

    def __init__(self, svc: MemoryService | _Scoped, namespace: str) -> None:
        self.svc = svc.svc if isinstance(svc, _Scoped) else svc
        self.namespace = namespace

    def list(self, flt: Filter, limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
        return self.svc.list(flt, limit=limit, cursor=cursor, namespace=self.namespace)

    def list_keys(self, prefix: str, limit: int = 100) -> dict[str, Any]:
        return self.svc.list_keys(prefix, limit, namespace=self.namespace)

    def key_groups(self, prefix: str, limit: int = 50, offset: int = 0) -> dict[str, Any]:
        return self.svc.key_groups(prefix, limit=limit, offset=offset, namespace=self.namespace)

    def get_key(self, key: str) -> dict[str, Any]:
        return self.svc.get_key(key, namespace=self.namespace)

    def get_claim(self, key: str) -> dict[str, Any]:
        return self.svc.get_claim(key, namespace=self.namespace)


STATUSES = ("running", "completed", "failed", "paused", "stopped")
# Errors that end a run on purpose (a stop, a pause, a bound of autonomy): the run did not fail.
_SIGNALS = kit.SIGNALS
_RUN_SCAN = 200  # run records read for one workflow's page
# Span events worth a line on a step: name -> the label the page shows.
EVENT_KINDS = {
    kit.EVENT_BREAKER: "breaker",
    kit.EVENT_BUDGET: "budget",
    kit.EVENT_SCOPE: "scope",
    kit.EVENT_ESCALATION: "escalation",
    kit.EVENT_FALLBACK: "fallback",
    kit.EVENT_RATE_LIMIT: "rate limit",
    kit.EVENT_BRANCH_FAILED: "fan-out",
    kit.EVENT_SWITCH_STRATEGY: "strategy",
    kit.EVENT_EXCEPTION: "error",
}
_TRACE_SCAN = 200  # traces read for one workflow's page (its runs, newest first)


# -- workflows ------------------------------------------------------------------------------------------------


def _workflow_id(record: dict[str, Any]) -> str:
    meta = record.get("metadata") or {}
    wf = meta.get("workflow_id")
    if isinstance(wf, str) and wf:
        return wf
    key = record.get("key") or ""
    return kit.checkpoint_workflow(key)


def _live_claim(svc: MemoryService, workflow_id: str) -> dict[str, Any] | None:
    try:
        return svc.get_claim(kit.claim_key(workflow_id))
    except NotFound:
        return None


def _traces_of(svc: MemoryService, workflow_id: str, limit: int) -> list[dict[str, Any]]:
    flt = Filter(key_prefix=kit.TRACE, where={"workflow_id": workflow_id})
    return svc.list(flt, limit=limit)["results"]


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
            found = _traces_of(svc, wf, 1)
            if found:
                newest[wf] = found[0]
    return newest


def _root_error(trace_record: dict[str, Any]) -> str | None:
    try:
        doc = json.loads(trace_record["content"])
    except (TypeError, ValueError):
        return None
    for span in doc.get("spans") or []:
        if not span.get("parent_id"):
            return span.get("error")
    return None


def run_state(run: dict[str, Any], claim: dict[str, Any] | None) -> str:
    """A run record's status, with "died" for one that says running while nobody holds the claim for it."""
    meta = run.get("metadata") or {}
    status = meta.get("status") or "?"
    if status == "running" and (claim is None or claim.get("holder") != meta.get("holder")):
        return "died"
    return status


def workflow_status(
    latest: dict[str, Any] | None,
    escalations: list[dict[str, Any]],
    claim: dict[str, Any] | None,
    last_trace: dict[str, Any] | None,
    last_run: dict[str, Any] | None = None,
) -> tuple[str, str]:
    """(status, why) of a workflow from its newest checkpoint, escalations, live claim, newest trace and newest
    run record."""
    meta = (latest or {}).get("metadata") or {}
    if meta.get("status") == "completed":
        return "completed", f"its last step, {meta.get('step')!r}, is checkpointed"
    opened = [e for e in escalations if (e.get("metadata") or {}).get("status") == "open"]
    if opened:
        m = opened[0]["metadata"]
        return "paused", f"escalated to a person ({m.get('kind')}): {m.get('reason')}"
    if claim is not None:
        return "running", f"held by {claim['holder']} until {claim['expires_at']}"
    if last_run is not None and run_state(last_run, claim) == "died":
        rm = last_run.get("metadata") or {}
        return "failed", (
            f"run {rm.get('run_id')} of {rm.get('holder')} died: it never recorded an end and its claim is gone"
            " (killed, or lost the service)"
        )
    if last_trace is not None and (latest is None or last_trace["created_at"] >= latest["updated_at"]):
        trace_meta = last_trace.get("metadata") or {}
        if trace_meta.get("status") == "error":
            error = _root_error(last_trace) or "the run ended with an error"
            if not error.startswith(_SIGNALS):
                return "failed", error
            return "stopped", error
    if latest is None:
        return "stopped", "no step was checkpointed"
    return "stopped", f"not running; its last checkpoint is step {meta.get('step')!r}"


def _last_run(svc: MemoryService, workflow_id: str) -> dict[str, Any] | None:
    found = svc.list_keys(kit.run_prefix(workflow_id), 1)["results"]
    return found[0] if found else None


def workflows(
    svc: MemoryService, prefix: str = "", limit: int = 50, offset: int = 0, namespace: str = KIT_DEFAULT
) -> dict[str, Any]:
    """One page of workflows known from their checkpoints, most recently updated first; the first page also
    lists workflows with run records but no checkpoint yet (a first run still in, or killed in, its first step)."""
    svc = _Scoped(svc, namespace)  # type: ignore[assignment]
    groups = svc.key_groups(kit.CHECKPOINT + prefix, limit=limit, offset=offset)
    records: list[dict[str, Any] | None] = list(groups["results"])
    ids = [_workflow_id(r) for r in groups["results"]]
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
        last_run = _last_run(svc, wf)
        status, why = workflow_status(
            record, escalations, _live_claim(svc, wf), traces[0] if traces else None, last_run
        )
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
                "updated_at": record["updated_at"] if record else (last_run or {}).get("updated_at"),
            }
        )
    return {"results": rows, "total": total, "offset": offset, "limit": limit}


def _children(spans: list[dict[str, Any]]) -> dict[str | None, list[dict[str, Any]]]:
    ids = {s.get("span_id") for s in spans}
    kids: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for s in spans:
        parent = s.get("parent_id")
        kids[parent if parent in ids else None].append(s)
    for group in kids.values():
        group.sort(key=lambda s: s.get("start") or 0)
    return kids


def _subtree(span: dict[str, Any], kids: dict[str | None, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    out, todo = [], [span]
    while todo:
        s = todo.pop()
        out.append(s)
        todo.extend(kids.get(s.get("span_id"), []))
    return out


def _exception(event: dict[str, Any]) -> tuple[str, str]:
    a = event.get("attributes") or {}
    return a.get(kit.ATTR_EXCEPTION_TYPE, ""), a.get(kit.ATTR_EXCEPTION_MESSAGE, "")


def _raised(span: dict[str, Any]) -> set[tuple[str, str]]:
    return {_exception(e) for e in span.get("events") or [] if e.get("name") == kit.EVENT_EXCEPTION}


def _events(
    spans: list[dict[str, Any]], trace_id: str, kids: dict[str | None, list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """The notable events in these spans: breaker moves, budget and scope refusals, escalations, fallbacks,
    rate-limit waits, failed branches, errors, and memory calls that needed more than one attempt.

    An exception is shown once, on the span that raised it, not again on each span it passed through.
    """
    out = []
    for s in spans:
        passed_through = set().union(*(_raised(c) for c in kids.get(s.get("span_id"), [])))
        for e in s.get("events") or []:
            kind = EVENT_KINDS.get(e.get("name"))
            if kind is None:
                continue
            if kind == "error" and _exception(e) in passed_through:
                continue
            out.append(
                {
                    "kind": kind,
                    "name": e["name"],
                    "time": e.get("time"),
                    "span": s.get("name"),
                    "span_id": s.get("span_id"),
                    "trace_id": trace_id,
                    # the stack trace is on the trace's page; here the type and message say enough
                    "attributes": {
                        k: v for k, v in (e.get("attributes") or {}).items() if k != kit.ATTR_EXCEPTION_STACKTRACE
                    },
                }
            )
        attrs = s.get("attributes") or {}
        if attrs.get(kit.ATTR_FALLBACK_DEGRADED) is True:
            out.append(
                {
                    "kind": "fallback",
                    "name": "fallback.degraded",
                    "time": s.get("end"),
                    "span": s.get("name"),
                    "span_id": s.get("span_id"),
                    "trace_id": trace_id,
                    "attributes": {
                        "used": attrs.get(kit.ATTR_FALLBACK_USED),
                        "path": " → ".join(attrs.get(kit.ATTR_FALLBACK_PATH) or []),
                    },
                }
            )
        attempts = attrs.get(kit.ATTR_ATTEMPTS)
        if s.get("kind") == kit.KIND_MEMORY and isinstance(attempts, int) and attempts > 1:
            out.append(
                {
                    "kind": "retry",
                    "name": "memory.retry",
                    "time": s.get("end"),
                    "span": s.get("name"),
                    "span_id": s.get("span_id"),
                    "trace_id": trace_id,
                    "attributes": {"attempts": attempts},
                }
            )
    out.sort(key=lambda e: e["time"] or 0)
    return out


def _load_trace(record: dict[str, Any]) -> dict[str, Any] | None:
    try:
        doc = json.loads(record["content"])
    except (TypeError, ValueError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("spans"), list) else None


def workflow(svc: MemoryService, workflow_id: str, namespace: str = KIT_DEFAULT) -> dict[str, Any]:
    """One workflow: status, steps in order (output, duration, attempts, events), runs, escalations, dedup.

    Raises:
        NotFound: no checkpoint, trace or escalation names this workflow.
    """
    svc = _Scoped(svc, namespace)  # type: ignore[assignment]
    checkpoints = svc.list_keys(kit.checkpoint_prefix(workflow_id), 1000)["results"]
    checkpoints = [c for c in checkpoints if _workflow_id(c) == workflow_id]
    escalations = svc.list_keys(kit.escalation_prefix(workflow_id), 100)["results"]
    trace_records = _traces_of(svc, workflow_id, _TRACE_SCAN)
    run_records = svc.list_keys(kit.run_prefix(workflow_id), _RUN_SCAN)["results"]
    if not (checkpoints or trace_records or escalations or run_records):
        raise NotFound(f"no checkpoint, trace, escalation or run of workflow {workflow_id!r}")
    latest = checkpoints[0] if checkpoints else None
    claim = _live_claim(svc, workflow_id)
    status, why = workflow_status(
        latest,
        escalations,
        claim,
        trace_records[0] if trace_records else None,
        run_records[0] if run_records else None,
    )

    traces = [(r, doc) for r in trace_records if (doc := _load_trace(r)) is not None]
    # Step names in order: the newest checkpoint's list, else the checkpoints' and the traces' own order.
    names: list[str] = []
    stored = ((latest or {}).get("metadata") or {}).get("steps")
    if isinstance(stored, list) and all(isinstance(n, str) for n in stored):
        names = list(stored)
    else:
        by_index = sorted(checkpoints, key=lambda c: (c.get("metadata") or {}).get("step_index") or 0)
        for c in by_index:
            step = (c.get("metadata") or {}).get("step")
            if isinstance(step, str) and step not in names:
                names.append(step)
    attempts: dict[str, list[dict[str, Any]]] = defaultdict(list)
    events: dict[str, list[dict[str, Any]]] = defaultdict(list)
    runs = []
    dedup_keys: dict[str, dict[str, Any]] = {}
    for record, doc in reversed(traces):  # oldest run first
        spans = doc["spans"]
        kids = _children(spans)
        root = next((s for s in spans if not s.get("parent_id")), None)
        root_attrs = (root or {}).get("attributes") or {}
        runs.append(
            {
                "trace_id": doc.get("trace_id"),
                "started_at": doc.get("started_at"),
                "duration_ms": (record.get("metadata") or {}).get("duration_ms"),
                "status": doc.get("status"),
                "error": (root or {}).get("error"),
                "ran": root_attrs.get(kit.ATTR_RAN),
                "replayed": root_attrs.get(kit.ATTR_REPLAYED),
                "span_count": len(spans),
                "steps": [
                    {"name": (s.get("attributes") or {}).get(kit.ATTR_STEP), "status": s.get("status")}
                    for s in sorted(spans, key=lambda s: s.get("start") or 0)
                    if s.get("kind") == kit.KIND_STEP
                ],
            }
        )
        in_steps: set[str | None] = set()
        for s in spans:
            if s.get("kind") != kit.KIND_STEP:
                continue
            name = (s.get("attributes") or {}).get(kit.ATTR_STEP) or s.get("name", "").removeprefix("step ")
            if name not in names:
                names.append(name)
            sub = _subtree(s, kids)
            attempts[name].append(
                {
                    "trace_id": doc.get("trace_id"),
                    "span_id": s.get("span_id"),
                    "start": s.get("start"),
                    "duration_ms": s.get("duration_ms"),
                    "status": s.get("status"),
                    "error": s.get("error"),
                }
            )
            events[name].extend(_events(sub, doc.get("trace_id"), kids))
            in_steps.update(d.get("span_id") for d in sub)
            for d in sub:
                key = (d.get("attributes") or {}).get(kit.ATTR_DEDUP_KEY)
                if isinstance(key, str) and key not in dedup_keys:
                    dedup_keys[key] = {
                        "step": name,
                        "span": d.get("name"),
                        "outcome": (d.get("attributes") or {}).get(kit.ATTR_DEDUP),
                        "trace_id": doc.get("trace_id"),
                    }
        # Events outside any step (the runner's own, e.g. a ceiling checked between steps) go on the run.
        stepless = [s for s in spans if s.get("span_id") not in in_steps]
        runs[-1]["events"] = _events(stepless, doc.get("trace_id"), kids)

    # Runs from their records: the trace's run gets its record's facts; a run with no stored trace (killed before
    # it could store one) is listed from its record alone.
    by_trace = {r["trace_id"]: r for r in runs if r.get("trace_id")}
    for rec in reversed(run_records):  # oldest first, like `runs`
        rm = rec.get("metadata") or {}
        facts = {
            "run_id": rm.get("run_id"),
            "holder": rm.get("holder"),
            "record_status": run_state(rec, claim),
        }
        traced = by_trace.get(rm.get("trace_id"))
        if traced is not None:
            traced.update(facts)
            if facts["record_status"] == "died":
                traced["status"] = "died"
            continue
        ended = rm.get("ended_at")
        runs.append(
            {
                "trace_id": rm.get("trace_id"),
                "started_at": rm.get("started_at"),
                "duration_ms": round((ended - rm["started_at"]) * 1000, 3)
                if isinstance(ended, int | float) and isinstance(rm.get("started_at"), int | float)
                else None,
                "status": facts["record_status"],
                "error": rm.get("error"),
                "ran": rm.get("ran"),
                "replayed": rm.get("replayed"),
                "span_count": 0,
                "steps": [{"name": n, "status": "ok"} for n in rm.get("ran") or []],
                "events": [],
                **facts,
            }
        )
    runs.sort(key=lambda r: r.get("started_at") or 0)

    newest_cp: dict[str, dict[str, Any]] = {}
    for c in checkpoints:  # newest first: the first record of a step is its newest
        step = (c.get("metadata") or {}).get("step")
        if isinstance(step, str):
            newest_cp.setdefault(step, c)
    steps = []
    for index, name in enumerate(names):
        cp = newest_cp.get(name)
        tries = attempts.get(name, [])
        meta = (cp or {}).get("metadata") or {}
        done = next((a for a in reversed(tries) if a["trace_id"] == meta.get("trace_id")), None)
        if cp is not None:
            state = "done"
        elif tries and tries[-1]["status"] == "error":
            # Stopped on purpose (a pause, a bound of autonomy, a shutdown) is not a failure of the step.
            signal = (tries[-1]["error"] or "").startswith(_SIGNALS)
            state = ("paused" if status == "paused" else "stopped") if signal else "failed"
        elif status == "running" and index == len(newest_cp):
            state = "running"
        else:
            state = "pending"
        steps.append(
            {
                "name": name,
                "index": index,
                "state": state,
                "output": meta.get("result") if cp is not None else None,
                "checkpointed_at": cp["updated_at"] if cp is not None else None,
                "duration_ms": (done or (tries[-1] if tries else {})).get("duration_ms"),
                "attempts": tries,
                "retries": max(0, len(tries) - 1),
                "events": events.get(name, []),
            }
        )

    dedup = []
    for key, seen in dedup_keys.items():
        try:
            rec = svc.get_key(kit.dedup_key(key))
        except NotFound:
            rec = None
        m = (rec or {}).get("metadata") or {}
        dedup.append(
            {
                "key": kit.dedup_key(key),
                **seen,
                "id": rec["id"] if rec else None,
                "action": m.get("action"),
                "result": m.get("result"),
                "executed_at": m.get("executed_at"),
                "holder": m.get("holder"),
            }
        )
    latest_meta = (latest or {}).get("metadata") or {}
    return {
        # Usage only grows: the largest figures among the checkpoints' and escalations' are the latest.
        "usage": _usage(latest_meta.get("usage"), *[(e.get("metadata") or {}).get("usage") for e in escalations]),
        "workflow_id": workflow_id,
        # For the console's "run it again" shell command: a stored id is anyone's text, so it is quoted for a
        # POSIX shell (a crafted id must stay one argument, never become a command the operator pastes).
        "workflow_id_shell": shlex.quote(workflow_id),
        "workflow": traces[0][1].get("workflow") if traces else None,
        "status": status,
        "why": why,
        "updated_at": latest["updated_at"] if latest else None,
        "state": latest_meta.get("state"),
        "claim": claim,
        "steps": steps,
        "runs": list(reversed(runs)),  # newest first
        "escalations": [
            {
                "id": e["id"],
                "namespace": e.get("namespace"),
                "key": e["key"],
                "created_at": e["created_at"],
                **(e.get("metadata") or {}),
            }
            for e in escalations
        ],
        "dedup": dedup,
        "checkpoint_count": len(checkpoints),
    }


def _usage(*found: Any) -> dict[str, float] | None:
    usages = [u for u in found if isinstance(u, dict)]
    if not usages:
        return None
    names = ("tokens", "cost", "steps", "seconds")
    return {n: max((u[n] for u in usages if isinstance(u.get(n), int | float)), default=0) for n in names}


# -- traces ---------------------------------------------------------------------------------------------------


def traces(
    svc: MemoryService,
    workflow_id: str | None = None,
    status: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
    namespace: str = KIT_DEFAULT,
) -> dict[str, Any]:
    """One page of stored traces, newest first, without their content (the spans)."""
    svc = _Scoped(svc, namespace)  # type: ignore[assignment]
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


def waterfall(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored trace with its spans in tree order (parents before children, siblings by start), each given
    `depth`, `offset_ms` (from the trace's start) and `children`; spans whose parent is not in the trace
    (dropped from a truncated trace) are shown at the top level with `orphan: true`."""
    spans = [s for s in doc.get("spans") or [] if isinstance(s, dict)]
    kids = _children(spans)
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
    record = _Scoped(svc, namespace).get_key(kit.trace_key(trace_id))
    doc = _load_trace(record)
    if doc is None:
        raise NotFound(f"the record of trace {trace_id!r} does not hold a trace")
    out = waterfall(doc)
    out["record_id"] = record["id"]
    out["stored_at"] = record["created_at"]
    return out


# -- overview -------------------------------------------------------------------------------------------------


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The q-quantile of a histogram given as cumulative (upper bound, count) buckets ending with +Inf,
    interpolated linearly inside its bucket (Prometheus' histogram_quantile). None when it is empty."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower  # the highest finite bound: all one can say
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


_API_ROUTES_HIDDEN = ("/ui", "/health", "/metrics", "/docs", "/openapi.json", "/redoc", "unmatched")


def latency(registry: Any, top: int = 8) -> list[dict[str, Any]]:
    """p50/p95/p99 request latency (ms) of the API's busiest routes, from the request-latency histogram."""
    buckets: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for family in registry.collect():
        if family.name != "memory_spine_request_seconds":
            continue
        for s in family.samples:
            if s.name.endswith("_bucket"):
                buckets[(s.labels["method"], s.labels["route"])].append((float(s.labels["le"]), s.value))
    rows = []
    for (method, route), bs in buckets.items():
        if route.startswith(_API_ROUTES_HIDDEN):
            continue
        bs.sort()
        count = bs[-1][1] if bs else 0
        if count <= 0:
            continue
        ms = {f"p{int(q * 100)}": _ms(quantile(q, bs)) for q in (0.5, 0.95, 0.99)}
        rows.append({"method": method, "route": route, "count": int(count), **ms})
    rows.sort(key=lambda r: -r["count"])
    return rows[:top]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _counter(registry: Any, family_name: str) -> list[tuple[dict[str, str], float]]:
    out = []
    for family in registry.collect():
        if family.name == family_name:
            out += [(s.labels, s.value) for s in family.samples if s.name.endswith("_total")]
    return out


def request_counts(registry: Any) -> dict[str, float]:
    """API requests served so far (the console's own, /health and /metrics aside): ingests (single and batch),
    searches, and errors (5xx)."""
    counts = {"ingest": 0.0, "search": 0.0, "errors": 0.0, "all": 0.0}
    for labels, value in _counter(registry, "memory_spine_requests"):
        route, method = labels.get("route", ""), labels.get("method", "")
        if route.startswith(_API_ROUTES_HIDDEN):
            continue
        counts["all"] += value
        if method == "POST" and route in ("/ingest", "/ingest/batch"):
            counts["ingest"] += value
        elif method == "POST" and route == "/search":
            counts["search"] += value
        if labels.get("status", "").startswith("5"):
            counts["errors"] += value
    return counts


class Rates:
    """Ingest and search requests per second over time, from samples of the request counters.

    A sample is taken when the overview is read (at most one per `every` seconds; the last `keep` are kept),
    the first one being the service's start with nothing counted, so the first interval is the average since
    then. Nothing runs in the background.
    """

    def __init__(self, started_at: float, every: float = 5.0, keep: int = 120) -> None:
        self.every = every
        self._samples: deque[tuple[float, float, float]] = deque([(started_at, 0.0, 0.0)], maxlen=keep)
        self._lock = threading.Lock()

    def sample(self, ingest: float, search: float, now: float | None = None) -> list[dict[str, float]]:
        """Record the counters (if the last sample is old enough) and return the rate of each interval."""
        now = time.time() if now is None else now
        with self._lock:
            if now - self._samples[-1][0] >= self.every or len(self._samples) == 1:
                self._samples.append((now, ingest, search))
            samples = list(self._samples)
        out = []
        for (t0, i0, s0), (t1, i1, s1) in zip(samples, samples[1:], strict=False):
            dt = t1 - t0
            if dt <= 0:
                continue
            out.append({"from": t0, "to": t1, "ingest": max(0.0, i1 - i0) / dt, "search": max(0.0, s1 - s0) / dt})
        return out


def plans(registry: Any) -> dict[str, float]:
    """Search plans chosen so far, by plan."""
    return {labels["plan"]: value for labels, value in _counter(registry, "memory_spine_search_plans")}


def overview(
    svc: MemoryService, registry: Any, rates: Rates, top_tags: int = 12, namespace: str = DEFAULT
) -> dict[str, Any]:
    """One namespace's memories (total and by tag), every namespace's count, sizes, request rates, latency."""
    stats = svc.stats(namespace)
    tags = sorted(stats.get("tags", {}).items(), key=lambda kv: (-kv[1], kv[0]))
    counts = request_counts(registry)
    index = stats.get("index") or {}
    return {
        "namespace": stats.get("namespace"),
        "namespaces": stats.get("namespaces"),
        "total_memories": stats.get("total_memories"),
        "tags": [{"tag": t, "count": n} for t, n in tags[:top_tags]],
        "tag_count": len(tags),
        "sizes": {
            "database_bytes": stats.get("database_bytes"),
            "index_bytes": index.get("bytes"),
            "index_elements": index.get("elements"),
            "index_capacity": index.get("capacity"),
        },
        "embedder": stats.get("embedder"),
        "uptime_seconds": stats.get("uptime_seconds"),
        "requests": counts,
        "rates": rates.sample(counts["ingest"], counts["search"]),
        "latency": latency(registry),
        "plans": plans(registry),
        "query_cache": stats.get("query_cache"),
        "version": stats.get("version"),
    }
