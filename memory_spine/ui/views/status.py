"""A workflow's status and a run's state, as the workflows list and the workflow page show them.

A workflow's status: **completed** (its newest checkpoint says so), **paused** (an open escalation), **running**
(a live claim on it), **failed** (its last run ended with an error after its newest checkpoint, or died: its
record still says running and nobody holds the claim) or **stopped** (none of these: stopped by a signal, or
let go after a pause; running it again with the same id resumes).
"""

from __future__ import annotations

from typing import Any

from workflow_kit import records as kit

from ._shared import root_error

STATUSES = ("running", "completed", "failed", "paused", "stopped")
# Errors that end a run on purpose (a stop, a pause, a bound of autonomy): the run did not fail.
SIGNALS = kit.SIGNALS


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
            error = root_error(last_trace) or "the run ended with an error"
            if not error.startswith(SIGNALS):
                return "failed", error
            return "stopped", error
    if latest is None:
        return "stopped", "no step was checkpointed"
    return "stopped", f"not running; its last checkpoint is step {meta.get('step')!r}"
