"""Durable workflows: named steps, a checkpoint after each, resume by step name after a crash.

    result = await run_workflow(client, "pr-42", [fetch, review, post], state={"pr": 42})

A step is a callable (async or not) taking a `StepContext` (or nothing, like the seed's steps); its name is
its `__name__`, or the one given with `@step("name")` / a `("name", fn)` pair. After each step the runner
stores one seed-format checkpoint record (client.py builds it):

    content  "checkpoint:{workflow_id}:{step}"      tags ["checkpoint", "workflow", workflow_id]
    metadata {"workflow_id", "step", "result": <this step's output>,  <- the seed's fields
              "step_index", "steps": [all step names], "state": <ctx.state after the step>,
              "status": "running" | "completed", "trace_id": <the writing run's trace>, "kit": 1}

On start one request (GET /keys?prefix=checkpoint:{workflow_id}:) reads the workflow's checkpoints, and the
newest decides: none -> run from the first step; the last step's -> return the stored result, run nothing;
else resume after the checkpointed step by **name**, each earlier output restored from its step's record and
the state from the newest. A stored step list other than the given one raises WorkflowChanged. Checkpoints
written by the seed's own `checkpoint()` (no "steps", no "state") resume the same way.

Each record holds one output, so one step's output is bounded by the service's metadata cap (64 KiB by
default), not the whole workflow's; a bigger one is an InvalidInput naming the step. At most 1000 steps.

A run holds the claim `workflow:{workflow_id}` (a lease, renewed while it runs): a second worker given the
same id waits for it, then replays the result. Sync steps run in a worker thread (asyncio.to_thread), so a
blocking call never starves the renewal. Every checkpoint carries the claim's fencing token: once another
worker has taken the claim over (this one froze or lost the service for longer than the lease), the service
refuses this one's writes (409 stale_fence) and the run stops with LeaseLost before its next step. The runner
is at-least-once per step: a step killed midway (or cut off by a lost lease) runs again. Wrap its side effects
in `idempotent()` (idempotency.py) to make them exactly-once. Spans come from tracing.py; the trace so far is
stored after each step, the whole one at the end.

Each call writes a run record `run:{workflow_id}:{run_id}` (status running, holder, trace id) once it has read
the checkpoints, and updates it at the end (completed, failed, stopped, paused or lease_lost; error, steps ran,
usage). A killed run's record keeps saying running with nobody holding the claim: the console shows it died.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, nullcontext
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any, TypeVar

from opentelemetry.trace import INVALID_SPAN, Status, StatusCode

from . import _claims, _json, budget, limits, tracing
from . import autonomy as _autonomy
from . import journal as _journal
from . import metrics as _metrics
from . import records as kit_records
from .autonomy import Autonomy, Guard, Usage
from .client import MemoryClient, _current, check_step_name, check_workflow_id, checkpoint_body, new_id
from .errors import (
    AutonomyError,
    BudgetExceeded,
    InvalidInput,
    LeaseLost,
    PayloadTooLarge,
    ScopeViolation,
    ServiceError,
    StaleFence,
    WorkflowChanged,
    WorkflowKitError,
    WorkflowPaused,
    WorkflowStopped,
)
from .journal import Journal
from .limits import RateLimit
from .metrics import Metrics
from .shutdown import Shutdown

log = logging.getLogger("workflow_kit.durable")

F = TypeVar("F", bound=Callable[..., Any])
StepFn = Callable[..., Any]
_NAME_ATTR = "__workflow_step__"
FORMAT = kit_records.FORMAT  # "kit" in checkpoint metadata: bump when the record layout changes


def step(name: str | Callable[..., Any] | None = None) -> Any:
    """Name a step (default: the function's `__name__`): `@step`, `@step()` or `@step("post-comment")`."""

    def mark(fn: F) -> F:
        setattr(fn, _NAME_ATTR, name if isinstance(name, str) else fn.__name__)
        return fn

    return mark(name) if callable(name) else mark


@dataclass
class StepContext:
    """What a step sees: its workflow, its own name, earlier outputs (read-only) and the mutable state."""

    client: MemoryClient
    workflow_id: str
    step: str
    index: int
    outputs: Mapping[str, Any]
    state: dict[str, Any]
    resumed: bool = False

    def record(self, *, inputs: Any = None, outputs: Any = None, reasoning: Any = None) -> None:
        """Record inputs, outputs or reasoning on this step's span (see tracing.record)."""
        tracing.record(inputs=inputs, outputs=outputs, reasoning=reasoning)


@dataclass
class WorkflowRun:
    """The outcome of `run_workflow`: the last step's output, every output, and what this call did."""

    workflow_id: str
    result: Any
    outputs: dict[str, Any]
    state: dict[str, Any]
    ran: list[str] = field(default_factory=list)  # steps executed by this call
    resumed_after: str | None = None  # the checkpointed step this call resumed after
    replayed: bool = False  # the workflow had completed before: nothing ran
    trace_id: str | None = None
    usage: dict[str, Any] | None = None  # with autonomy=: tokens, cost, steps, seconds spent so far
    resumed_from: str | None = None  # the step this call resumed at (None: a fresh start, or a replay)
    status: str = "completed"  # or, on the `.run` of an exception: failed, stopped, paused, lease_lost
    error: str | None = None  # "Type: message" of what ended a run that did not complete
    run_id: str | None = None  # this call's run record: run:{workflow_id}:{run_id}
    holder: str | None = None


def _named(steps: Sequence[StepFn | tuple[str, StepFn]]) -> list[tuple[str, StepFn]]:
    named: list[tuple[str, StepFn]] = []
    for item in steps:
        if isinstance(item, tuple):
            name, fn = item
        else:
            fn = item
            name = getattr(fn, _NAME_ATTR, None) or getattr(fn, "__name__", None)
        if not callable(fn) or not isinstance(name, str):
            raise InvalidInput("steps", f"{item!r} is not a step: give a function or a (name, function) pair")
        check_step_name(name)
        named.append((name, fn))
    names = [n for n, _ in named]
    if not names:
        raise InvalidInput("steps", "a workflow needs at least one step")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InvalidInput("steps", f"step names must be unique, {dupes} repeat: name them with @step('...')")
    return named


def _takes_context(fn: StepFn) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in params)


async def _checkpoints(client: MemoryClient, workflow_id: str) -> list[dict[str, Any]]:
    """Every checkpoint record of the workflow, newest first: from the kit's namespace, else (a workflow
    checkpointed before namespaces, or by the seed's own `checkpoint()`) from the client's namespace."""
    prefix = kit_records.checkpoint_prefix(workflow_id)
    found = (await client.kit.list_keys(prefix, limit=1000)).get("results")
    if not found:
        found = (await client.user.list_keys(prefix, limit=1000)).get("results")
    return found or []


def _restore(
    workflow_id: str, names: list[str], records: list[dict[str, Any]]
) -> tuple[int, dict[str, Any], dict[str, Any] | None]:
    """From the checkpoints (newest first): (index of the next step, outputs so far, stored state)."""
    meta = records[0].get("metadata") or {}
    last = meta.get("step")
    stored = meta.get("steps")
    if stored is not None and list(stored) != names:
        raise WorkflowChanged(workflow_id, list(stored), names, "the step list changed")
    if last not in names:
        raise WorkflowChanged(workflow_id, stored, names, f"checkpointed step {last!r} is not a step")
    done = names.index(last) + 1
    outputs: dict[str, Any] = {}
    for rec in reversed(records):  # oldest first, so the newest record of a step wins
        m = rec.get("metadata") or {}
        if m.get("step") in names[:done]:
            outputs[m["step"]] = m.get("result")
    missing = [n for n in names[:done] if n not in outputs]
    if missing:
        raise WorkflowChanged(
            workflow_id, stored, names, f"steps {missing} come before {last!r} but have no checkpoint"
        )
    state = meta.get("state")
    return done, outputs, state if isinstance(state, dict) else None


@dataclass(frozen=True)
class RunOptions:
    """How `run_workflow` runs a workflow, all in one value (each field is the keyword argument of the same name;
    see run_workflow): build it once, share it between calls, change one field with `dataclasses.replace`.

        opts = RunOptions(lease_seconds=30, journal=journal, metrics=metrics)
        await run_workflow(client, "pr-42", steps, options=opts)
    """

    name: str | None = None
    trace: bool = True
    lease_seconds: float | None = 10.0
    wait_timeout: float = 120.0
    holder: str | None = None
    timeout: float | None = None
    step_timeout: float | None = None
    autonomy: Autonomy | None = None
    journal: Journal | None = None
    shutdown: Shutdown | None = None
    rate_limit: RateLimit | None = None
    metrics: Metrics | None = None

    def merged(self, **given: Any) -> RunOptions:
        """These options with the keyword arguments that were set (not at their default) laid over them.

        Raises:
            TypeError: a keyword argument and this value both set the same option to different values.
        """
        changes: dict[str, Any] = {}
        for key, value in given.items():
            default = _DEFAULTS[key]
            if _same(value, default):
                continue
            mine = getattr(self, key)
            if not _same(mine, default) and not _same(mine, value):
                raise TypeError(f"run_workflow: {key}= and options.{key} disagree; give it once")
            changes[key] = value
        return replace(self, **changes) if changes else self


def _same(a: Any, b: Any) -> bool:
    return a is b or (type(a) is type(b) and isinstance(a, bool | int | float | str) and a == b)


_DEFAULTS = {f.name: f.default for f in fields(RunOptions)}


async def run_workflow(
    client: MemoryClient,
    workflow_id: str,
    steps: Sequence[StepFn | tuple[str, StepFn]],
    *,
    state: Mapping[str, Any] | None = None,
    options: RunOptions | None = None,
    name: str | None = None,
    trace: bool = True,
    lease_seconds: float | None = 10.0,
    wait_timeout: float = 120.0,
    holder: str | None = None,
    timeout: float | None = None,
    step_timeout: float | None = None,
    autonomy: Autonomy | None = None,
    journal: Journal | None = None,
    shutdown: Shutdown | None = None,
    rate_limit: RateLimit | None = None,
    metrics: Metrics | None = None,
) -> WorkflowRun:
    """Run (or resume, or replay) the workflow `workflow_id` made of `steps`.

    Args:
        client: where checkpoints (and the trace) go.
        workflow_id: the caller's id; the same id resumes. No whitespace or ':'.
        steps: callables, run in order; each gets a `StepContext` if it takes an argument.
        state: the initial state (JSON) on a fresh start; a resumed run gets the checkpointed state instead.
        name: the workflow's name in its trace (default: the workflow id).
        trace: record spans and store the trace (installs the kit's OTel span processor once).
        lease_seconds: the run holds the claim `workflow:{workflow_id}` (renewed every third of this), so a
            second worker running the same id waits, then replays the stored result instead of running
            steps twice. After a crash, a new holder waits out the lease; None runs without a claim.
        wait_timeout: how long to wait for another live run of the same id (ClaimTimeout after).
        holder: this worker's name for the claim, shown in the console and in 409s (not a credential: the
            secret lease token is). Default: host:pid:random.
        timeout: the whole run's timeout budget in seconds (budget.py); `step_timeout` each step's.
        autonomy: scope, budget ceiling and escalation (autonomy.py); a paused workflow raises WorkflowPaused.
        journal: keep running when the service is out: writes go to this local journal and are flushed when
            it is back (journal.py).
        shutdown: a `Shutdown` (shutdown.py); once requested, the run stops after the current step.
        rate_limit: a limit shared by every `Agent` call of this run (limits.py).
        metrics: where the run's and its agents' metrics go (default: metrics.current()).
        options: all of the above (but `state`) in one `RunOptions`; a keyword argument given as well is laid
            over it (giving both, different, is a TypeError).

    Raises:
        WorkflowChanged: the id has checkpoints of a different step list.
        ClaimTimeout: another live run of the same id held it past `wait_timeout`.
        NotJSON: a step returned (or left in `ctx.state`) something that is not JSON; names the step.
        DeadlineExceeded: the workflow's or a step's timeout budget ran out.
        ScopeViolation, BudgetExceeded, WorkflowPaused: bounded autonomy stopped the run (escalated first).
        WorkflowStopped: a shutdown request stopped it between steps.
        Whatever a step raises: no checkpoint is written for it, so a re-run starts at that step.
    """
    check_workflow_id(workflow_id)
    o = (options or RunOptions()).merged(
        name=name,
        trace=trace,
        lease_seconds=lease_seconds,
        wait_timeout=wait_timeout,
        holder=holder,
        timeout=timeout,
        step_timeout=step_timeout,
        autonomy=autonomy,
        journal=journal,
        shutdown=shutdown,
        rate_limit=rate_limit,
        metrics=metrics,
    )
    name, trace, lease_seconds, wait_timeout, holder = o.name, o.trace, o.lease_seconds, o.wait_timeout, o.holder
    timeout, step_timeout, autonomy, journal = o.timeout, o.step_timeout, o.autonomy, o.journal
    shutdown, rate_limit, metrics = o.shutdown, o.rate_limit, o.metrics
    named = _named(steps)
    names = [n for n, _ in named]
    initial = _json.roundtrip(dict(state or {}), "state")
    holder = holder or _claims.default_holder()
    # The kit's own records (runs, checkpoints, claims, escalations) go to `_kit/<namespace>`; steps and
    # current_client() keep the caller's client.
    record = _RunRecord(client.kit, journal, workflow_id, name or workflow_id, holder)
    if trace:
        tracing.install()
    token = _current.set(client)
    attrs = {
        kit_records.ATTR_KIND: kit_records.KIND_WORKFLOW,
        kit_records.ATTR_WORKFLOW_ID: workflow_id,
        kit_records.ATTR_WORKFLOW: name or workflow_id,
    }
    root_cm = (
        tracing.tracer().start_as_current_span(f"workflow {name or workflow_id}", attributes=attrs)
        if trace
        else nullcontext(INVALID_SPAN)
    )
    trace_id = None
    status = "failed"
    started = time.monotonic()
    opts = _Options(step_timeout, autonomy, journal, shutdown, run=record)
    run: WorkflowRun | None = None
    try:
        with (
            _metrics.using(metrics) as m,
            _metrics.tally() as spent,
            _journal.bound(journal, workflow_id),
            limits.workflow_limit(rate_limit),
        ):
            try:
                with root_cm as root:
                    trace_id = record.trace_id = tracing.current_trace_id()
                    async with budget.deadline(timeout, name=f"workflow {workflow_id}"):
                        async with _exclusive(
                            client.kit, workflow_id, journal, lease_seconds, wait_timeout, holder
                        ) as lease:
                            opts.lease = lease
                            run = await _run(client, workflow_id, named, names, initial, opts)
                            run.trace_id, run.run_id, run.holder = trace_id, record.run_id, holder
                            await record.end(run)
                    root.set_attribute(kit_records.ATTR_RAN, run.ran)
                    root.set_attribute(kit_records.ATTR_REPLAYED, run.replayed)
                    tracing.record(outputs=run.result, on=root)
                status = "completed"
            except BaseException as exc:
                status = _ended_as(exc)
                # What the run did goes with the exception: `exc.run` (status, error, trace id, ...) and
                # `exc.trace_id`, so a failure can be looked up in the console as trace:{trace_id}.
                failed = WorkflowRun(
                    workflow_id,
                    None,
                    dict(record.outputs),
                    {},
                    list(record.ran),
                    record.resumed_after,
                    trace_id=trace_id,
                    usage=record.usage,
                    resumed_from=record.resumed_from,
                    status=status,
                    error=f"{type(exc).__name__}: {exc}"[:2000],
                    run_id=record.run_id if record.started else None,
                    holder=holder,
                )
                await record.end(failed)
                try:
                    exc.run = failed  # type: ignore[attr-defined]
                    exc.trace_id = trace_id  # type: ignore[attr-defined]
                    if trace_id and isinstance(exc, Exception):
                        exc.add_note(f"workflow {workflow_id!r} run {record.run_id}: trace {trace_id}")
                except AttributeError:  # an exception type with __slots__: it goes as it is
                    pass
                raise
            finally:
                m.observe_workflow(name or workflow_id, time.monotonic() - started, status, cost=spent[1])
    finally:
        _current.reset(token)
        if trace and trace_id:
            await tracing.flush(trace_id)
    assert run is not None
    return run


def _ended_as(exc: BaseException) -> str:
    if isinstance(exc, WorkflowStopped):
        return "stopped"
    if isinstance(exc, WorkflowPaused | AutonomyError):
        return "paused"
    if isinstance(exc, LeaseLost):
        return "lease_lost"
    return "failed"


class _RunRecord:
    """This call's run record, `run:{workflow_id}:{run_id}` (content and key; tags run, workflow, the id):
    written when the run starts (status running, holder, trace id) and updated when it ends (completed, failed,
    stopped, paused or lease_lost; error, steps ran, usage). A run killed in between keeps saying running while
    nobody holds its claim: the console shows it as died. Never fails the run (a lost record is logged)."""

    def __init__(
        self, client: MemoryClient, journal: Journal | None, workflow_id: str, workflow: str, holder: str
    ) -> None:
        self.client, self.journal = client, journal
        self.workflow_id, self.workflow, self.holder = workflow_id, workflow, holder
        self.run_id = new_id()
        self.trace_id: str | None = None
        self.started_at = time.time()
        self.started = False
        self.outputs: dict[str, Any] = {}
        self.ran: list[str] = []
        self.resumed_after: str | None = None
        self.resumed_from: str | None = None
        self.usage: dict[str, Any] | None = None

    def _body(self, **meta: Any) -> dict[str, Any]:
        key = kit_records.run_key(self.workflow_id, self.run_id)
        return {
            "content": key,
            "key": key,
            "id": self.run_id,
            "tags": kit_records.run_tags(self.workflow_id),
            "metadata": {
                "workflow_id": self.workflow_id,
                "workflow": self.workflow,
                "run_id": self.run_id,
                "holder": self.holder,
                "trace_id": self.trace_id,
                "started_at": self.started_at,
                "kit": FORMAT,
                **meta,
            },
        }

    async def _write(self, body: dict[str, Any]) -> None:
        try:
            if self.journal is not None:
                await self.journal.write(self.client, self.workflow_id, body)
            else:
                await self.client.ingest(body.pop("content"), **body)
        except (WorkflowKitError, TimeoutError) as exc:
            log.warning("run record not stored", extra={"workflow_id": self.workflow_id, "error": str(exc)})

    async def start(self) -> None:
        self.started = True
        await self._write(self._body(status="running"))

    async def end(self, run: WorkflowRun) -> None:
        if not self.started or getattr(self, "_ended", False):
            return
        self._ended = True
        await self._write(
            self._body(
                status=run.status,
                error=run.error,
                ended_at=time.time(),
                ran=list(run.ran),
                resumed_from=run.resumed_from,
                replayed=run.replayed,
                usage=run.usage,
            )
        )


@dataclass
class _Options:
    step_timeout: float | None
    autonomy: Autonomy | None
    journal: Journal | None
    shutdown: Shutdown | None
    lease: _claims.Lease | None = None
    run: _RunRecord | None = None


@asynccontextmanager
async def _exclusive(
    client: MemoryClient,
    workflow_id: str,
    journal: Journal | None,
    lease_seconds: float | None,
    wait_timeout: float,
    holder: str | None,
) -> AsyncIterator[_claims.Lease | None]:
    """Hold the workflow: the service claim `workflow:{id}`, plus the journal's local lock when there is one.

    With a journal, a service that cannot be reached does not stop the run: the local lock alone keeps other
    workers on this host off it (journal.py).
    """
    async with journal.lock(workflow_id, wait_timeout) if journal is not None else nullcontext():
        if lease_seconds is None:
            yield None
            return
        key, holder = kit_records.claim_key(workflow_id), holder or _claims.default_holder()
        if journal is not None:
            # Deliver what an earlier run on this host journaled while its claim (and fence) may still stand:
            # after our own claim it would be fenced out. Never raises for an unreachable service.
            await journal.flush(client, workflow_id)
        kept = journal.kept_lease(workflow_id) if journal is not None else None
        if kept is not None and kept.get("key") == key:
            # A run on this host crashed holding the claim (we hold the flock: it is gone). Give its lease back
            # with its own token rather than wait it out; the claim taken next has a new fence.
            await _claims.release(client, _claims.Lease(key, "", 0, kept["lease_token"], None))
        try:
            lease = await _claims.acquire(client, key, holder, lease_seconds, wait_timeout)
        except ServiceError as exc:
            if journal is None:
                raise
            log.warning(
                "memory service unavailable: running without the workflow claim (journal lock only)",
                extra={"workflow_id": workflow_id, "error": str(exc)},
            )
            yield None
            return
        if journal is not None and lease.token is not None:
            journal.keep_lease(workflow_id, key, lease.token)
            lease.tolerate_outage = True
        try:
            async with _claims.kept_alive(client, lease):
                yield lease
        finally:
            await _claims.release(client, lease)
            if journal is not None:
                journal.drop_lease(workflow_id)


async def _read_checkpoints(client: MemoryClient, workflow_id: str, journal: Journal | None) -> list[dict[str, Any]]:
    """The workflow's checkpoints, newest first: from the service, else (degraded) from the journal's mirror."""
    if journal is None:
        return await _checkpoints(client, workflow_id)
    await journal.flush(client, workflow_id)
    prefix = kit_records.checkpoint_prefix(workflow_id)
    try:
        records = await _checkpoints(client, workflow_id)
    except (ServiceError, TimeoutError) as exc:
        if not journal.entries(workflow_id):
            raise  # no record here either: a fresh workflow cannot be told from one that already ran
        log.warning(
            "memory service unavailable: resuming from the local journal",
            extra={"workflow_id": workflow_id, "error": str(exc)},
        )
        return journal.list_prefix(workflow_id, prefix)
    seen = {r.get("id") for r in records}
    pending = [r for r in journal.list_prefix(workflow_id, prefix) if r["pending"] and r["id"] not in seen]
    return pending + records


async def _write_checkpoint(
    client: MemoryClient,
    workflow_id: str,
    step_name: str,
    data: dict[str, Any],
    journal: Journal | None,
    lease: _claims.Lease | None,
) -> None:
    fence = lease.fence_ref() if lease is not None else None
    try:
        if journal is None:
            await client.checkpoint(workflow_id, step_name, data, fence=fence)
        else:
            await journal.write(client, workflow_id, checkpoint_body(workflow_id, step_name, data, fence=fence))
    except StaleFence as exc:
        if lease is None:
            raise
        raise lease.fenced_out(exc) from None
    except (InvalidInput, PayloadTooLarge) as exc:
        raise InvalidInput(
            f"checkpoint of step {step_name!r}", exc.problem if isinstance(exc, InvalidInput) else exc.message
        ) from exc


async def _guard_for(
    client: MemoryClient, workflow_id: str, autonomy: Autonomy, journal: Journal | None, latest: dict[str, Any] | None
) -> Guard:
    """The run's Guard; raises WorkflowPaused while an escalation of the workflow is open."""
    found = await _autonomy.escalations(client, workflow_id, journal)
    metas = [r.get("metadata") or {} for r in found]
    open_ = [m for m in metas if m.get("status") == "open"]
    if open_:
        raise WorkflowPaused(
            workflow_id,
            open_[0],
            f"workflow {workflow_id!r} is paused for a person ({open_[0].get('kind')}: {open_[0].get('reason')}); "
            "`workflow_kit.autonomy.resume(client, workflow_id)` lets it go on",
        )
    approved = {(m.get("step"), m.get("kind")) for m in metas if m.get("status") == "resolved"}
    # Usage only grows: the largest figures among checkpoints, escalations and run records (a failed run's
    # record keeps what its failed step spent) are the workflow's total over all its runs.
    runs = await _run_records(client, workflow_id)
    usage = Usage.from_dicts(
        (latest or {}).get("usage"),
        *[m.get("usage") for m in metas],
        *[(r.get("metadata") or {}).get("usage") for r in runs],
    )
    return Guard(autonomy, client, workflow_id, usage=usage, approved=approved, journal=journal)


async def _run_records(client: MemoryClient, workflow_id: str) -> list[dict[str, Any]]:
    """The workflow's run records, newest first (at most 1000)."""
    try:
        return (await client.list_keys(kit_records.run_prefix(workflow_id), limit=1000)).get("results") or []
    except (ServiceError, TimeoutError):
        return []  # degraded: the checkpoints' usage is what there is


async def _refused(guard: Guard | None, exc: AutonomyError) -> None:
    """A scope or budget refusal escalates (default: an `escalation` memory; the workflow pauses)."""
    if guard is None or exc.escalation is not None:
        return
    kind = "scope" if isinstance(exc, ScopeViolation) else "budget"
    try:
        exc.escalation = await guard.escalate(kind, str(exc), {"error": type(exc).__name__})
    except WorkflowKitError as store_exc:  # never hide the refusal behind a failed escalation
        log.error("could not escalate", extra={"workflow_id": guard.workflow_id, "error": str(store_exc)})


async def _run(
    client: MemoryClient,
    workflow_id: str,
    named: list[tuple[str, StepFn]],
    names: list[str],
    state: dict[str, Any],
    opts: _Options,
) -> WorkflowRun:
    outputs: dict[str, Any] = {}
    start = 0
    resumed_after = None
    records = await _read_checkpoints(client.kit, workflow_id, opts.journal)
    if opts.run is not None:  # after the read: a journaled run record must not pass for a journaled checkpoint
        await opts.run.start()
    if records:
        start, outputs, stored_state = _restore(workflow_id, names, records)
        state = stored_state if stored_state is not None else state
        resumed_after = names[start - 1]
        if start == len(names):
            log.info("workflow already completed", extra={"workflow_id": workflow_id})
            return WorkflowRun(workflow_id, outputs.get(names[-1]), outputs, state, [], resumed_after, True)
        log.info(
            "resuming workflow",
            extra={"workflow_id": workflow_id, "after": resumed_after, "next": names[start]},
        )
    resumed_from = names[start] if resumed_after is not None else None
    ran: list[str] = []
    if opts.run is not None:  # what the run record (and a failure's `exc.run`) reports
        opts.run.resumed_after, opts.run.resumed_from = resumed_after, resumed_from
        opts.run.outputs, opts.run.ran = outputs, ran

    guard = None
    if opts.autonomy is not None:
        latest = (records[0].get("metadata") or {}) if records else None
        guard = await _guard_for(client.kit, workflow_id, opts.autonomy, opts.journal, latest)
    m = _metrics.current()
    partial: asyncio.Task[str | None] | None = None
    try:
        with _autonomy.guarding(guard):
            for index in range(start, len(named)):
                step_name, fn = named[index]
                last_done = names[index - 1] if index else None
                if opts.shutdown is not None and opts.shutdown.requested:
                    raise WorkflowStopped(
                        workflow_id, last_done, step_name, resumed_after=resumed_after, resumed_from=resumed_from
                    )
                if opts.lease is not None:
                    opts.lease.check()  # a lost claim: another worker may be running this workflow now
                if guard is not None:
                    guard.step = step_name
                    try:
                        guard.check_ceiling()
                    except BudgetExceeded as exc:
                        await _refused(guard, exc)
                        raise
                with tracing.tracer().start_as_current_span(
                    f"step {step_name}",
                    attributes={
                        kit_records.ATTR_KIND: kit_records.KIND_STEP,
                        kit_records.ATTR_STEP: step_name,
                        kit_records.ATTR_STEP_INDEX: index,
                    },
                ) as span:
                    ctx = StepContext(
                        client,
                        workflow_id,
                        step_name,
                        index,
                        MappingProxyType(dict(outputs)),
                        state,
                        resumed=resumed_after is not None,
                    )
                    started = time.monotonic()
                    window = None
                    try:
                        async with AsyncExitStack() as stack:
                            if opts.shutdown is not None:
                                window = await stack.enter_async_context(opts.shutdown.step_window())
                            await stack.enter_async_context(
                                budget.deadline(opts.step_timeout, name=f"step {step_name}")
                            )
                            stack.enter_context(_metrics.acting_as(f"step:{step_name}"))
                            value = await (_claims.call(fn, ctx) if _takes_context(fn) else _claims.call(fn))
                    except BaseException as exc:
                        m.observe_agent(f"step:{step_name}", time.monotonic() - started, "error")
                        if not isinstance(exc, Exception):  # cancellation, KeyboardInterrupt: OTel leaves those unset
                            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}"))
                        log.warning(
                            "step failed",
                            extra={
                                "workflow_id": workflow_id,
                                "step": step_name,
                                "error": f"{type(exc).__name__}: {exc}",
                            },
                        )
                        if window is not None and isinstance(exc, TimeoutError) and window.expired():
                            raise WorkflowStopped(
                                workflow_id,
                                last_done,
                                step_name,
                                interrupted=step_name,
                                resumed_after=resumed_after,
                                resumed_from=resumed_from,
                            ) from None
                        if isinstance(exc, ScopeViolation | BudgetExceeded):
                            await _refused(guard, exc)
                        if guard is not None and opts.run is not None:
                            opts.run.usage = guard.now_usage().to_dict()  # spent, though the step failed
                        raise
                    value = _json.roundtrip(value, f"output of step {step_name!r}")
                    state = _json.roundtrip(ctx.state, f"state after step {step_name!r}")
                    outputs[step_name] = value
                    final = index == len(named) - 1
                    tracing.record(outputs=value, on=span)
                    data = {
                        "result": value,
                        "step_index": index,
                        "steps": names,
                        "state": state,
                        "status": "completed" if final else "running",
                        "trace_id": tracing.current_trace_id(),  # the run that wrote it: its trace is trace:{id}
                        "kit": FORMAT,
                    }
                    if guard is not None:
                        data["usage"] = guard.now_usage().to_dict()
                    with _metrics.acting_as(f"step:{step_name}"):
                        await _write_checkpoint(client.kit, workflow_id, step_name, data, opts.journal, opts.lease)
                    ran.append(step_name)
                    m.observe_agent(f"step:{step_name}", time.monotonic() - started, "ok")
                    log.info(
                        "step done",
                        extra={
                            "workflow_id": workflow_id,
                            "step": step_name,
                            "duration_ms": round((time.monotonic() - started) * 1000, 3),
                        },
                    )
                if index < len(named) - 1 and opts.run is not None:
                    # The step's span has ended: store the trace so far (beside the next step, one at a time),
                    # so a run killed later leaves it behind.
                    if partial is not None:
                        await partial
                    partial = asyncio.create_task(
                        tracing.save_partial(opts.run.trace_id, opts.run.workflow, workflow_id)
                    )
    finally:
        if partial is not None:
            await partial  # before the run's span ends: the whole trace, stored then, must land last
    usage = guard.now_usage().to_dict() if guard is not None else None
    return WorkflowRun(
        workflow_id,
        outputs[names[-1]],
        outputs,
        state,
        ran,
        resumed_after,
        False,
        usage=usage,
        resumed_from=resumed_from,
    )


class Workflow:
    """A named list of steps, registered with `@wf.step` and run with `await wf.run(client, workflow_id)`."""

    def __init__(self, name: str, steps: Sequence[StepFn | tuple[str, StepFn]] = ()) -> None:
        self.name = name
        self.steps: list[StepFn | tuple[str, StepFn]] = list(steps)

    def step(self, fn: F | None = None, *, name: str | None = None) -> Any:
        """Append a step: `@wf.step` or `@wf.step(name="post-comment")`."""

        def add(f: F) -> F:
            self.steps.append((name or f.__name__, f))
            return f

        return add(fn) if fn is not None else add

    def run(
        self,
        client: MemoryClient,
        workflow_id: str,
        *,
        state: Mapping[str, Any] | None = None,
        trace: bool = True,
        **options: Any,
    ) -> Awaitable[WorkflowRun]:
        """`run_workflow(client, workflow_id, self.steps, state=..., name=self.name, **options)`; options are
        run_workflow's (autonomy=, journal=, shutdown=, timeout=, ...)."""
        return run_workflow(client, workflow_id, self.steps, state=state, name=self.name, trace=trace, **options)
