"""Bounded autonomy: a scope, a budget ceiling and an escalation trigger for every workflow run.

    guard = Autonomy(
        scope=Scope(actions={"post_review"}, tools={"security", "style", "logic"}, paths={"src/**"}),
        ceiling=Ceiling(tokens=50_000, cost=0.50, steps=40, seconds=300),
        min_confidence=0.6,          # an agent less sure than this escalates
        max_failures=3,              # an agent failing this many times in a row escalates
    )
    run = await run_workflow(client, "pr-42", steps, autonomy=guard)

Inside the run (the functions act on the running workflow's `Guard`; outside one they do nothing):

- `check_scope(action=, tool=, path=)`: raises `ScopeViolation` (and adds a span event) for anything the scope
  does not list. `Agent` calls check their tool name, `idempotent` its action; code touching files checks
  paths. A path is allowed if it matches one of the glob patterns (`fnmatch`, after `..` is resolved).
- `charge(tokens=, cost=)`: what an agent spent. Steps (agent calls) and wall-clock seconds are counted by the
  kit. Reaching a ceiling raises `BudgetExceeded`; the runner checks the ceiling before every step too, so a run
  stops at a step boundary with every finished step checkpointed. Usage is stored with the checkpoints, so
  the ceiling holds across resumed runs.
- `await confidence(value, reason=)`: below `min_confidence`, escalates.
- `await escalate(kind, reason)`: anything else worth a person's look (self-improvement uses it when it runs out
  of attempts).

**Escalation**: a scope violation, a budget ceiling, low confidence or repeated failure calls the handler
(`Autonomy(escalate=...)`) with an `Escalation`. The default, `store_escalation`, stores an `escalation`
memory (key `escalation:{workflow_id}:{id}`, tags `["escalation", kind, workflow_id]`, metadata
`status: "open"`) and the workflow **pauses**: the run raises (`ScopeViolation` / `BudgetExceeded` for those,
`WorkflowPaused` for the rest), and every later run raises `WorkflowPaused` without running a step until a
person calls `await resume(client, workflow_id, note=...)`. The resumed run goes on from its last checkpoint;
a low-confidence escalation that was resolved is not raised again for the same step. A handler returning True
lets a low-confidence or repeated-failure escalation go on instead (scope and budget always stop).
"""

from __future__ import annotations

import contextvars
import fnmatch
import inspect
import logging
import posixpath
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

from . import metrics as _metrics
from . import records
from .client import MemoryClient
from .errors import BudgetExceeded, ScopeViolation, WorkflowKitError, WorkflowPaused

if TYPE_CHECKING:
    from .journal import Journal

__all__ = [
    "Autonomy",
    "Ceiling",
    "Escalation",
    "Guard",
    "Scope",
    "Usage",
    "charge",
    "check_scope",
    "confidence",
    "current_guard",
    "escalate",
    "escalations",
    "resume",
    "store_escalation",
]

log = logging.getLogger("workflow_kit.autonomy")

_guard: contextvars.ContextVar[Guard | None] = contextvars.ContextVar("workflow_kit_guard", default=None)


@dataclass(frozen=True)
class Scope:
    """What agents may touch. None means "anything" for that kind; an empty set means "nothing"."""

    actions: Collection[str] | None = None
    tools: Collection[str] | None = None
    paths: Collection[str] | None = None

    def allows(self, kind: str, value: str) -> bool:
        """Whether `value` (an action, tool or path) is inside the scope."""
        allowed = {"action": self.actions, "tool": self.tools, "path": self.paths}[kind]
        if allowed is None:
            return True
        if kind != "path":
            return value in allowed
        norm = posixpath.normpath(str(value).replace("\\", "/"))
        if norm.startswith("../") or norm == "..":
            return False  # outside whatever the patterns are relative to
        return any(fnmatch.fnmatchcase(norm, pattern) for pattern in allowed)

    def check(self, *, action: str | None = None, tool: str | None = None, path: str | None = None) -> None:
        """Raise ScopeViolation for the first of the given values outside the scope."""
        for kind, value in (("action", action), ("tool", tool), ("path", path)):
            if value is not None and not self.allows(kind, value):
                allowed = {"action": self.actions, "tool": self.tools, "path": self.paths}[kind]
                raise ScopeViolation(kind, value, sorted(allowed or ()))


@dataclass(frozen=True)
class Ceiling:
    """Hard caps for one workflow (over all its runs). None: no cap on that resource."""

    tokens: float | None = None
    cost: float | None = None
    steps: int | None = None  # agent calls
    seconds: float | None = None  # wall clock spent running


@dataclass
class Usage:
    """What a workflow has spent so far."""

    tokens: float = 0
    cost: float = 0.0
    steps: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dicts(cls, *found: Mapping[str, Any] | None) -> Usage:
        """The largest of each figure among stored usages (usage only grows, so the largest is the latest)."""
        usage = cls()
        for d in found:
            for name in ("tokens", "cost", "steps", "seconds"):
                value = (d or {}).get(name)
                if isinstance(value, int | float) and value > getattr(usage, name):
                    setattr(usage, name, value)
        return usage


@dataclass
class Escalation:
    """Something a person should look at; `kind` is scope | budget | low_confidence | repeated_failure | ..."""

    workflow_id: str
    kind: str
    reason: str
    step: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, Any] | None = None
    trace_id: str | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def key(self) -> str:
        return records.escalation_key(self.workflow_id, self.id)

    def body(self) -> dict[str, Any]:
        """The ingest body of its `escalation` memory."""
        return {
            "id": f"esc-{self.id}",
            "content": f"{records.ESCALATION}{self.workflow_id} {self.kind}: {self.reason}",
            "key": self.key,
            "tags": records.escalation_tags(self.kind, self.workflow_id),
            "importance": "high",
            "metadata": {
                "workflow_id": self.workflow_id,
                "kind": self.kind,
                "reason": self.reason,
                "step": self.step,
                "detail": self.detail,
                "usage": self.usage,
                "trace_id": self.trace_id,
                "status": "open",
                "raised_at": datetime.now(UTC).isoformat(),
            },
        }


Handler = Callable[[Escalation], Awaitable[bool | None] | bool | None]


@dataclass
class Autonomy:
    """The bounds of a workflow: see the module docstring."""

    scope: Scope | None = None
    ceiling: Ceiling | None = None
    min_confidence: float | None = None
    max_failures: int | None = 3
    escalate: Handler | None = None
    clock: Callable[[], float] = time.monotonic


async def store_escalation(client: MemoryClient, escalation: Escalation, journal: Journal | None = None) -> None:
    """The default handler: store the `escalation` memory (through the journal when there is one)."""
    body = escalation.body()
    if journal is not None:
        await journal.write(client.kit, escalation.workflow_id, body)
    else:
        await client.kit.ingest(body.pop("content"), **body)


async def escalations(client: MemoryClient, workflow_id: str, journal: Journal | None = None) -> list[dict[str, Any]]:
    """Every escalation memory of the workflow, newest first (from the journal when the service is out)."""
    prefix = records.escalation_prefix(workflow_id)
    try:
        found = (await client.kit.list_keys(prefix, limit=1000)).get("results") or []
    except WorkflowKitError:
        if journal is None:
            raise
        return journal.list_prefix(workflow_id, prefix)
    if journal is not None:  # not yet delivered ones are newer than anything the service has
        seen = {r.get("id") for r in found}
        found = [r for r in journal.list_prefix(workflow_id, prefix) if r["pending"] and r["id"] not in seen] + found
    return found


async def resume(client: MemoryClient, workflow_id: str, *, note: str | None = None, by: str | None = None) -> int:
    """A person's go-ahead: mark the workflow's open escalations resolved, so the next run continues.

    Returns how many were resolved (0: the workflow was not paused).
    """
    resolved = 0
    for rec in await escalations(client, workflow_id):
        if (rec.get("metadata") or {}).get("status") != "open":
            continue
        await client.kit.update(
            rec["id"],
            metadata={
                "status": "resolved",
                "resolution": note,
                "resolved_by": by,
                "resolved_at": datetime.now(UTC).isoformat(),
            },
        )
        resolved += 1
    log.info("workflow resumed by a person", extra={"workflow_id": workflow_id, "resolved": resolved, "by": by})
    return resolved


def _event(name: str, attrs: Mapping[str, Any]) -> None:
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event(name, {k: str(v) for k, v in attrs.items() if v is not None})


class Guard:
    """The bounds of one run: usage so far, consecutive failures, the escalations a person approved."""

    def __init__(
        self,
        autonomy: Autonomy,
        client: MemoryClient,
        workflow_id: str,
        *,
        usage: Usage | None = None,
        approved: Collection[tuple[str | None, str]] = (),
        journal: Journal | None = None,
    ) -> None:
        self.autonomy = autonomy
        self.client = client
        self.workflow_id = workflow_id
        self.journal = journal
        self.usage = usage or Usage()
        self._base_seconds = self.usage.seconds
        self._started = autonomy.clock()
        self.approved = set(approved)
        self.failures: dict[str, int] = {}
        self.step: str | None = None
        self.raised: list[Escalation] = []

    def now_usage(self) -> Usage:
        """Usage with the wall clock brought up to now."""
        self.usage.seconds = self._base_seconds + (self.autonomy.clock() - self._started)
        return self.usage

    # -- scope ---------------------------------------------------------------------------------------------

    def check(self, *, action: str | None = None, tool: str | None = None, path: str | None = None) -> None:
        scope = self.autonomy.scope
        if scope is None:
            return
        try:
            scope.check(action=action, tool=tool, path=path)
        except ScopeViolation as exc:
            _event(records.EVENT_SCOPE, {"kind": exc.kind, "value": exc.value, "step": self.step})
            log.warning(
                "scope violation", extra={"workflow_id": self.workflow_id, "kind": exc.kind, "value": exc.value}
            )
            raise

    # -- ceiling -------------------------------------------------------------------------------------------

    def check_ceiling(self) -> None:
        """Raise BudgetExceeded if any resource is at or over its cap."""
        ceiling = self.autonomy.ceiling
        if ceiling is None:
            return
        usage = self.now_usage()
        for name in ("tokens", "cost", "steps", "seconds"):
            limit = getattr(ceiling, name)
            if limit is not None and getattr(usage, name) >= limit:
                _event(records.EVENT_BUDGET, {"resource": name, "used": getattr(usage, name), "limit": limit})
                raise BudgetExceeded(name, getattr(usage, name), limit)

    def _over(self, name: str) -> None:
        ceiling = self.autonomy.ceiling
        limit = getattr(ceiling, name) if ceiling is not None else None
        used = getattr(self.usage, name)
        if limit is not None and used > limit:
            _event(records.EVENT_BUDGET, {"resource": name, "used": used, "limit": limit})
            raise BudgetExceeded(name, used, limit)

    def charge(self, tokens: float = 0, cost: float = 0.0) -> None:
        self.usage.tokens += tokens
        self.usage.cost += cost
        self._over("tokens")
        self._over("cost")
        self.now_usage()
        self._over("seconds")

    def count_step(self) -> None:
        """One more agent call; raises BudgetExceeded when that is one too many."""
        self.usage.steps += 1
        self._over("steps")
        self.now_usage()
        self._over("seconds")

    # -- failures and escalation ---------------------------------------------------------------------------

    def failed(self, agent: str) -> bool:
        """Count a failure of `agent`; True when it reached `max_failures` in a row."""
        self.failures[agent] = self.failures.get(agent, 0) + 1
        limit = self.autonomy.max_failures
        return limit is not None and self.failures[agent] == limit

    def succeeded(self, agent: str) -> None:
        self.failures.pop(agent, None)

    async def escalate(self, kind: str, reason: str, detail: Mapping[str, Any] | None = None) -> Escalation:
        """Hand the matter to the escalation handler; `escalation.detail["go_on"]` says if it let the run go on."""
        from .tracing import current_trace_id

        esc = Escalation(
            self.workflow_id,
            kind,
            reason,
            step=self.step,
            detail=dict(detail or {}),
            usage=self.now_usage().to_dict(),
            trace_id=current_trace_id(),
        )
        _event(records.EVENT_ESCALATION, {"kind": kind, "reason": reason, "step": self.step, "escalation": esc.key})
        log.warning(
            "escalating to a person",
            extra={"workflow_id": self.workflow_id, "kind": kind, "reason": reason, "step": self.step},
        )
        handler = self.autonomy.escalate
        if handler is None:
            await store_escalation(self.client, esc, self.journal)
            go_on = False
        else:
            answer = handler(esc)
            if inspect.isawaitable(answer):
                answer = await answer
            go_on = bool(answer)
        esc.detail["go_on"] = go_on
        self.raised.append(esc)
        return esc


def current_guard() -> Guard | None:
    """The running workflow's Guard, if it runs with `autonomy=`."""
    return _guard.get()


@contextmanager
def guarding(guard: Guard | None) -> Iterator[None]:
    """Make `guard` current for the block (run_workflow does this)."""
    token = _guard.set(guard)
    try:
        yield
    finally:
        _guard.reset(token)


def check_scope(*, action: str | None = None, tool: str | None = None, path: str | None = None) -> None:
    """Raise ScopeViolation if the running workflow's scope does not allow these."""
    guard = _guard.get()
    if guard is not None:
        guard.check(action=action, tool=tool, path=path)


def charge(tokens: float = 0, cost: float = 0.0) -> None:
    """Report what an agent spent: counted in the metrics, and against the workflow's ceiling."""
    _metrics.spend(tokens, cost)
    guard = _guard.get()
    if guard is not None:
        guard.charge(tokens, cost)


async def escalate(kind: str, reason: str, detail: Mapping[str, Any] | None = None) -> bool:
    """Escalate from inside a step. Returns True if the handler let the run go on, False when no workflow with
    `autonomy=` is running (nobody to escalate to: the caller decides).

    Raises WorkflowPaused when the handler did not let it go on (the default handler never does).
    """
    guard = _guard.get()
    if guard is None:
        log.warning("nobody to escalate to (no autonomy guard)", extra={"kind": kind, "reason": reason})
        return False
    esc = await guard.escalate(kind, reason, detail)
    if esc.detail["go_on"]:
        return True
    raise WorkflowPaused(guard.workflow_id, esc)


async def confidence(value: float, *, reason: str = "", agent: str | None = None) -> float:
    """Report an agent's confidence; under `min_confidence` it escalates (see `escalate`). Returns `value`."""
    guard = _guard.get()
    threshold = guard.autonomy.min_confidence if guard is not None else None
    if guard is None or threshold is None or value >= threshold:
        return value
    if (guard.step, "low_confidence") in guard.approved:
        log.info("low confidence already approved by a person", extra={"step": guard.step, "confidence": value})
        return value
    who = f"{agent}: " if agent else ""
    await escalate(
        "low_confidence",
        f"{who}confidence {value:.2f} under {threshold:.2f}{': ' + reason if reason else ''}",
        {"confidence": value, "threshold": threshold, "agent": agent},
    )
    return value
