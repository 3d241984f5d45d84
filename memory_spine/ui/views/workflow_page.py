"""The workflow page: one workflow's status, its steps in order (output, duration, attempts, events), its runs
(from their traces and their run records, including runs killed before they stored a trace), escalations and
the dedup records its steps touched (found through the `dedup_key` attribute of the trace's idempotent spans)."""

from __future__ import annotations

import shlex
from collections import defaultdict
from typing import Any

from workflow_kit import records as kit

from ...errors import NotFound
from ...service import MemoryService
from ._shared import KIT_DEFAULT, Scoped, children, live_claim, load_trace, subtree, traces_of, workflow_id_of
from .status import SIGNALS, run_state, workflow_status

_RUN_SCAN = 200  # run records read for one workflow's page
_TRACE_SCAN = 200  # traces read for one workflow's page (its runs, newest first)
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


def workflow(svc: MemoryService, workflow_id: str, namespace: str = KIT_DEFAULT) -> dict[str, Any]:
    """One workflow: status, steps in order (output, duration, attempts, events), runs, escalations, dedup.

    Raises:
        NotFound: no checkpoint, trace or escalation names this workflow.
    """
    svc = Scoped(svc, namespace)  # type: ignore[assignment]
    checkpoints = svc.list_keys(kit.checkpoint_prefix(workflow_id), 1000)["results"]
    checkpoints = [c for c in checkpoints if workflow_id_of(c) == workflow_id]
    escalations = svc.list_keys(kit.escalation_prefix(workflow_id), 100)["results"]
    trace_records = traces_of(svc, workflow_id, _TRACE_SCAN)
    run_records = svc.list_keys(kit.run_prefix(workflow_id), _RUN_SCAN)["results"]
    if not (checkpoints or trace_records or escalations or run_records):
        raise NotFound(f"no checkpoint, trace, escalation or run of workflow {workflow_id!r}")
    latest = checkpoints[0] if checkpoints else None
    claim = live_claim(svc, workflow_id)
    status, why = workflow_status(
        latest,
        escalations,
        claim,
        trace_records[0] if trace_records else None,
        run_records[0] if run_records else None,
    )

    traces = [(r, doc) for r in trace_records if (doc := load_trace(r)) is not None]
    seen = _Traced(_step_names(latest, checkpoints))
    for record, doc in reversed(traces):  # oldest run first
        seen.add(record, doc)
    runs = _with_run_records(seen.runs, run_records, claim)
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
        "steps": _steps(seen, checkpoints, status),
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
        "dedup": _dedup(svc, seen.dedup_keys),
        "checkpoint_count": len(checkpoints),
    }


def _step_names(latest: dict[str, Any] | None, checkpoints: list[dict[str, Any]]) -> list[str]:
    """Step names in order: the newest checkpoint's list, else the checkpoints' own order (the traces may add
    more, see `_Traced`)."""
    stored = ((latest or {}).get("metadata") or {}).get("steps")
    if isinstance(stored, list) and all(isinstance(n, str) for n in stored):
        return list(stored)
    names: list[str] = []
    by_index = sorted(checkpoints, key=lambda c: (c.get("metadata") or {}).get("step_index") or 0)
    for c in by_index:
        step = (c.get("metadata") or {}).get("step")
        if isinstance(step, str) and step not in names:
            names.append(step)
    return names


class _Traced:
    """What a workflow's stored traces tell, read oldest run first: one run each, every attempt and event of
    each step, step names the checkpoints did not give, and the dedup keys the steps' spans name."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.runs: list[dict[str, Any]] = []
        self.attempts: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.events: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.dedup_keys: dict[str, dict[str, Any]] = {}

    def add(self, record: dict[str, Any], doc: dict[str, Any]) -> None:
        spans = doc["spans"]
        kids = children(spans)
        root = next((s for s in spans if not s.get("parent_id")), None)
        root_attrs = (root or {}).get("attributes") or {}
        run = {
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
        self.runs.append(run)
        in_steps: set[str | None] = set()
        for s in spans:
            if s.get("kind") == kit.KIND_STEP:
                in_steps.update(self._step(s, doc.get("trace_id"), kids))
        # Events outside any step (the runner's own, e.g. a ceiling checked between steps) go on the run.
        stepless = [s for s in spans if s.get("span_id") not in in_steps]
        run["events"] = _events(stepless, doc.get("trace_id"), kids)

    def _step(
        self, s: dict[str, Any], trace_id: str | None, kids: dict[str | None, list[dict[str, Any]]]
    ) -> set[str | None]:
        """Record one step span (an attempt of its step); return the ids of the spans under it."""
        name = (s.get("attributes") or {}).get(kit.ATTR_STEP) or s.get("name", "").removeprefix("step ")
        if name not in self.names:
            self.names.append(name)
        sub = subtree(s, kids)
        self.attempts[name].append(
            {
                "trace_id": trace_id,
                "span_id": s.get("span_id"),
                "start": s.get("start"),
                "duration_ms": s.get("duration_ms"),
                "status": s.get("status"),
                "error": s.get("error"),
            }
        )
        self.events[name].extend(_events(sub, trace_id, kids))
        for d in sub:
            key = (d.get("attributes") or {}).get(kit.ATTR_DEDUP_KEY)
            if isinstance(key, str) and key not in self.dedup_keys:
                self.dedup_keys[key] = {
                    "step": name,
                    "span": d.get("name"),
                    "outcome": (d.get("attributes") or {}).get(kit.ATTR_DEDUP),
                    "trace_id": trace_id,
                }
        return {d.get("span_id") for d in sub}


def _with_run_records(
    runs: list[dict[str, Any]], run_records: list[dict[str, Any]], claim: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """Runs from their records: the trace's run gets its record's facts; a run with no stored trace (killed
    before it could store one) is listed from its record alone. Oldest first."""
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
    return runs


def _steps(seen: _Traced, checkpoints: list[dict[str, Any]], status: str) -> list[dict[str, Any]]:
    """Each step in order: its state (done, failed, paused, stopped, running, pending), output and attempts."""
    newest_cp: dict[str, dict[str, Any]] = {}
    for c in checkpoints:  # newest first: the first record of a step is its newest
        step = (c.get("metadata") or {}).get("step")
        if isinstance(step, str):
            newest_cp.setdefault(step, c)
    steps = []
    for index, name in enumerate(seen.names):
        cp = newest_cp.get(name)
        tries = seen.attempts.get(name, [])
        meta = (cp or {}).get("metadata") or {}
        done = next((a for a in reversed(tries) if a["trace_id"] == meta.get("trace_id")), None)
        if cp is not None:
            state = "done"
        elif tries and tries[-1]["status"] == "error":
            # Stopped on purpose (a pause, a bound of autonomy, a shutdown) is not a failure of the step.
            signal = (tries[-1]["error"] or "").startswith(SIGNALS)
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
                "events": seen.events.get(name, []),
            }
        )
    return steps


def _dedup(svc: Scoped, dedup_keys: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The dedup records the steps' idempotent spans name, each with where it was seen."""
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
    return dedup


def _usage(*found: Any) -> dict[str, float] | None:
    usages = [u for u in found if isinstance(u, dict)]
    if not usages:
        return None
    names = ("tokens", "cost", "steps", "seconds")
    return {n: max((u[n] for u in usages if isinstance(u.get(n), int | float)), default=0) for n in names}
