"""The kit's exception tree. `client.py` turns HTTP answers and transport failures into it, in one place.

    WorkflowKitError                 .status (HTTP status or None), .type, .body
     ├── InvalidInput(field, problem)    400/422, or a bad argument caught before any request
     │    └── NotJSON(what, problem)     a step output, state, or dedup result that is not JSON
     ├── Unauthorized                    401/403: token missing or wrong
     ├── NotFound                        404
     ├── Conflict                        409; .claim holds the live claim when a claim is taken
     │    ├── PreconditionFailed         412: if_version named a version the memory no longer has
     │    ├── LeaseRejected              409 lease_lost: a renew/release token is not the key's claim's now
     │    └── StaleFence                 409 stale_fence: a write under a claim another holder has taken
     ├── PayloadTooLarge                 413
     ├── ServiceError                    5xx answers
     │    ├── ServiceUnavailable         503 / not ready, or no answer at all (connection error, timeout)
     │    ├── StorageFull
     │    └── ReadOnly
     ├── WorkflowChanged                 a stored workflow ran with other steps than the ones given now
     ├── ClaimTimeout                    waited too long for another holder of a dedup claim
     ├── CircuitOpen(name, retry_in)     a circuit breaker refused the call (breaker.py)
     ├── DeadlineExceeded(name, seconds) a timeout budget ran out (budget.py); also a TimeoutError
     ├── AllFailed(attempts)             every link of a fallback chain failed (fallback.py)
     ├── AttemptsExhausted(attempts)     self-improvement used its attempts and nobody took the escalation
     └── ...

    WorkflowSignal (a BaseException, as DBOS does: no `except Exception` in a step or an agent swallows it)
     ├── AutonomyError                   bounded autonomy said no (autonomy.py)
     │    ├── ScopeViolation(kind, value)    an action, tool or path outside the scope
     │    └── BudgetExceeded(resource)       tokens, cost, steps or wall clock over the ceiling
     ├── WorkflowPaused(workflow_id)     escalated to a person: stopped until `resume()` (autonomy.py)
     ├── WorkflowStopped(workflow_id)    a shutdown request stopped the run between steps (shutdown.py)
     └── LeaseLost(key)                  this worker lost its claim (another took over): it must stop

Retries (connection errors and 5xx) happen before any of these reach the caller. Catch a signal with
`except WorkflowSignal` (or `except BaseException`); `.message` and `.type` are there as on the errors.
"""

from __future__ import annotations

from typing import Any


class WorkflowKitError(Exception):
    """Root of every error the kit raises on purpose."""

    type = "error"

    def __init__(self, message: str, *, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body


class InvalidInput(WorkflowKitError):
    """A request field (or a kit argument) is missing, of the wrong type, or out of bounds."""

    type = "invalid_input"

    def __init__(self, field: str | None, problem: str, **kw: Any) -> None:
        super().__init__(f"{field}: {problem}" if field else problem, **kw)
        self.field = field
        self.problem = problem


class NotJSON(InvalidInput):
    """A value the kit must store (step output, workflow state, dedup result) is not JSON."""

    def __init__(self, what: str, problem: str) -> None:
        super().__init__(what, problem)
        self.what = what


class Unauthorized(WorkflowKitError):
    """The service wants a token (MEMORY_SPINE_TOKEN) and did not get the right one."""

    type = "unauthorized"


class NotFound(WorkflowKitError):
    """No live record or claim answers to that id or key."""

    type = "not_found"


class Conflict(WorkflowKitError):
    """The write lost a race; for claims, `.claim` is the live claim (key, holder, expires_at)."""

    type = "conflict"

    @property
    def claim(self) -> dict[str, Any] | None:
        if isinstance(self.body, dict) and isinstance(self.body.get("claim"), dict):
            return self.body["claim"]
        return None


class PreconditionFailed(Conflict):
    """An `if_version` update or delete found the memory at another version; `.current_version` says which."""

    type = "precondition_failed"

    @property
    def current_version(self) -> int | None:
        if isinstance(self.body, dict) and isinstance(self.body.get("current_version"), int):
            return self.body["current_version"]
        return None


class LeaseRejected(Conflict):
    """Renewing or releasing a claim: the lease token is not the key's current claim's (it expired and another
    holder took it, or it was released)."""

    type = "lease_lost"


class StaleFence(Conflict):
    """A write under a claim (`fence=`) was refused: another holder has taken the claim over since."""

    type = "stale_fence"


class PayloadTooLarge(WorkflowKitError):
    """The request, or one field of it, is over the service's size cap."""

    type = "payload_too_large"


class ServiceError(WorkflowKitError):
    """The service answered 5xx (after the client's retries ran out)."""

    type = "internal"


class ServiceUnavailable(ServiceError):
    """The service is loading (503), or could not be reached at all (connection error, timeout)."""

    type = "not_ready"


class StorageFull(ServiceError):
    """The disk holding the service's data directory is full."""

    type = "storage_full"


class ReadOnly(ServiceError):
    """The service's data directory cannot be written."""

    type = "read_only"


class WorkflowChanged(WorkflowKitError):
    """A workflow id that already has checkpoints was run with a different list of steps."""

    type = "workflow_changed"

    def __init__(self, workflow_id: str, stored: list[str] | None, given: list[str], problem: str) -> None:
        super().__init__(
            f"workflow {workflow_id!r}: {problem} (stored steps {stored}, given {given}); "
            "resuming would skip or repeat work, so run the new step list under a new workflow id"
        )
        self.workflow_id = workflow_id
        self.stored = stored
        self.given = given


class ClaimTimeout(WorkflowKitError):
    """Another holder kept a dedup claim for longer than this caller was willing to wait."""

    type = "claim_timeout"

    def __init__(self, key: str, holder: str | None, waited: float) -> None:
        super().__init__(f"{key}: still held by {holder!r} after waiting {waited:.1f}s")
        self.key = key
        self.holder = holder
        self.waited = waited


# The service's error `type` (see docs/http-api.md) decides the class; the status decides when it is missing.
_BY_TYPE: dict[str, type[WorkflowKitError]] = {
    "invalid_input": InvalidInput,
    "not_found": NotFound,
    "conflict": Conflict,
    "precondition_failed": PreconditionFailed,
    "lease_lost": LeaseRejected,
    "stale_fence": StaleFence,
    "forbidden": Unauthorized,
    "unauthorized": Unauthorized,
    "payload_too_large": PayloadTooLarge,
    "not_ready": ServiceUnavailable,
    "storage_full": StorageFull,
    "read_only": ReadOnly,
    "internal": ServiceError,
}
_BY_STATUS: dict[int, type[WorkflowKitError]] = {
    400: InvalidInput,
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
    409: Conflict,
    412: PreconditionFailed,
    413: PayloadTooLarge,
    422: InvalidInput,
    503: ServiceUnavailable,
    507: StorageFull,
}


def from_response(status: int, body: Any, text: str = "") -> WorkflowKitError:
    """The kit error for an HTTP error answer (`body` is the decoded JSON, or None)."""
    err = body.get("error") if isinstance(body, dict) else None
    err = err if isinstance(err, dict) else {}
    kind = err.get("type")
    cls = _BY_TYPE.get(kind) if isinstance(kind, str) else None
    if cls is None:
        cls = _BY_STATUS.get(status) or (ServiceError if status >= 500 else WorkflowKitError)
    message = str(err.get("message") or text[:500] or f"HTTP {status}")
    if issubclass(cls, InvalidInput):
        field = err.get("field")
        if field is None and isinstance(body, dict) and body.get("errors"):
            field = body["errors"][0].get("field")
        if field and message.startswith(f"{field}: "):  # the service already names the field
            message = message[len(field) + 2 :]
        return cls(field, message, status=status, body=body)
    return cls(f"HTTP {status}: {message}", status=status, body=body)


class CircuitOpen(WorkflowKitError):
    """A circuit breaker is open (or half-open with its one trial already out): the call was not made."""

    type = "circuit_open"

    def __init__(self, name: str, retry_in: float, state: str = "open") -> None:
        super().__init__(f"circuit {name!r} is {state}: not calling it for another {retry_in:.1f}s")
        self.name = name
        self.retry_in = retry_in
        self.state = state


class DeadlineExceeded(WorkflowKitError, TimeoutError):
    """A timeout budget (a step's, a workflow's, a branch's, an agent's) ran out."""

    type = "deadline_exceeded"

    def __init__(self, name: str, seconds: float | None) -> None:
        super().__init__(f"{name}: timeout budget of {seconds:g}s ran out" if seconds is not None else name)
        self.name = name
        self.seconds = seconds


class AllFailed(WorkflowKitError):
    """Every link of a fallback chain failed; `.attempts` is `[(name, exception), ...]` in order."""

    type = "all_failed"

    def __init__(self, attempts: list[tuple[str, BaseException]]) -> None:
        detail = "; ".join(f"{name}: {type(exc).__name__}: {exc}" for name, exc in attempts)
        super().__init__(f"every fallback failed ({detail})")
        self.attempts = attempts


class AttemptsExhausted(WorkflowKitError):
    """Recursive self-improvement used all its attempts; `.attempts` lists what each one did."""

    type = "attempts_exhausted"

    def __init__(self, attempts: list[dict[str, Any]]) -> None:
        super().__init__(f"no acceptable result after {len(attempts)} attempts")
        self.attempts = attempts


class WorkflowSignal(BaseException):
    """Stop the run: not an error of the work but a decision about it (pause, stop, refusal, lost lease). A
    BaseException so that a step's or an agent's `except Exception` cannot swallow it by accident."""

    type = "signal"
    status: int | None = None
    body: Any = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class LeaseLost(WorkflowSignal):
    """This worker's claim on `key` is gone (its lease ran out and another holder took it, or the service
    refused a write of ours as fenced out): it must not go on, another worker may be doing the same work."""

    type = "lease_lost"

    def __init__(self, key: str, holder: str | None, why: str) -> None:
        super().__init__(f"lost the claim {key!r} (holder {holder!r}): {why}; stopping before the next step")
        self.key = key
        self.holder = holder


class AutonomyError(WorkflowSignal):
    """Bounded autonomy refused something; `.escalation` is the escalation it raised, once handled."""

    type = "autonomy"
    escalation: Any = None


class ScopeViolation(AutonomyError):
    """An agent tried an action, tool or path its scope does not allow."""

    type = "scope_violation"

    def __init__(self, kind: str, value: str, allowed: Any) -> None:
        super().__init__(f"{kind} {value!r} is outside the scope (allowed: {allowed})")
        self.kind = kind
        self.value = value
        self.allowed = allowed


class BudgetExceeded(AutonomyError):
    """The workflow reached its ceiling of tokens, cost, steps or wall-clock seconds."""

    type = "budget_exceeded"

    def __init__(self, resource: str, used: float, limit: float) -> None:
        super().__init__(f"budget ceiling reached: {resource} {used:g} of {limit:g}")
        self.resource = resource
        self.used = used
        self.limit = limit


class WorkflowPaused(WorkflowSignal):
    """The workflow waits for a person: an escalation is open. `autonomy.resume()` lets the next run go on."""

    type = "workflow_paused"

    def __init__(self, workflow_id: str, escalation: Any, message: str | None = None) -> None:
        reason = escalation.get("reason") if isinstance(escalation, dict) else getattr(escalation, "reason", None)
        super().__init__(message or f"workflow {workflow_id!r} is paused for a person: {reason}")
        self.workflow_id = workflow_id
        self.escalation = escalation


class WorkflowStopped(WorkflowSignal):
    """A shutdown request (SIGTERM) stopped the run; `.after` is the last checkpointed step, `.next` the one
    the next run starts with, `.interrupted` a step cut off by the shutdown deadline (it runs again)."""

    type = "workflow_stopped"

    def __init__(
        self,
        workflow_id: str,
        after: str | None,
        next: str | None,
        interrupted: str | None = None,
        resumed_after: str | None = None,
        resumed_from: str | None = None,
    ) -> None:
        how = f"; step {interrupted!r} was cut off at the shutdown deadline" if interrupted else ""
        super().__init__(f"workflow {workflow_id!r} stopped after {after!r}, next run starts at {next!r}{how}")
        self.workflow_id = workflow_id
        self.after = after
        self.next = next
        self.interrupted = interrupted
        self.resumed_after = resumed_after  # the checkpointed step the stopped run itself had started after
        self.resumed_from = resumed_from  # the step it had resumed at (None: it started fresh)
