"""The kit's record formats, defined once: what the kit writes to Memory Spine and what the console reads back.

Every record lives in the kit's namespace `_kit/<namespace>` (KIT_PREFIX). Keys:

    checkpoint:{workflow_id}:{step}    a step's output and the workflow's state (durable.py, client.py)
    run:{workflow_id}:{run_id}         one call of run_workflow: status, holder, trace id (durable.py)
    workflow:{workflow_id}             the claim a run holds (durable.py)
    escalation:{workflow_id}:{id}      a question for a person (autonomy.py)
    dedup:{key}                        a side effect done once, and its claim (idempotency.py)
    trace:{trace_id}                   a workflow's spans as JSON (tracing.py)

Span attribute names (`ATTR_*`), span kinds, the span events the console lists, and the names of the
exceptions that end a run on purpose (SIGNALS) are here too. This module imports nothing of the kit, so
anything (the console included) can read it without running the kit.
"""

from __future__ import annotations

KIT_PREFIX = "_kit/"  # the kit's own records: `_kit/<the workflow's namespace>`
FORMAT = 1  # "kit" in checkpoint and run metadata: bump when the record layout changes

# -- keys ----------------------------------------------------------------------------------------------------

CHECKPOINT = "checkpoint:"
RUN = "run:"
CLAIM = "workflow:"
ESCALATION = "escalation:"
DEDUP = "dedup:"
DEDUP_ERROR = "dedup-error:"
TRACE = "trace:"


def checkpoint_prefix(workflow_id: str) -> str:
    """`checkpoint:{workflow_id}:`: the keys of a workflow's checkpoints."""
    return f"{CHECKPOINT}{workflow_id}:"


def checkpoint_key(workflow_id: str, step: str) -> str:
    """`checkpoint:{workflow_id}:{step}`."""
    return f"{CHECKPOINT}{workflow_id}:{step}"


def checkpoint_workflow(key: str) -> str:
    """The workflow id in a checkpoint key (a step name may not hold ':', a workflow id neither)."""
    return key[len(CHECKPOINT) :].rpartition(":")[0]


def run_prefix(workflow_id: str) -> str:
    """`run:{workflow_id}:`: the keys of a workflow's run records."""
    return f"{RUN}{workflow_id}:"


def run_key(workflow_id: str, run_id: str) -> str:
    """`run:{workflow_id}:{run_id}`."""
    return f"{RUN}{workflow_id}:{run_id}"


def claim_key(workflow_id: str) -> str:
    """`workflow:{workflow_id}`: the claim a run of the workflow holds."""
    return f"{CLAIM}{workflow_id}"


def escalation_prefix(workflow_id: str) -> str:
    """`escalation:{workflow_id}:`: the keys of a workflow's escalations."""
    return f"{ESCALATION}{workflow_id}:"


def escalation_key(workflow_id: str, escalation_id: str) -> str:
    """`escalation:{workflow_id}:{id}`."""
    return f"{ESCALATION}{workflow_id}:{escalation_id}"


FIELD_DEDUP_KEY = "dedup_key"  # in the metadata of a dedup (and dedup-error) record


def dedup_key(key: str) -> str:
    """`dedup:{key}`: the record (and the claim) of a side effect done once."""
    return f"{DEDUP}{key}"


def trace_key(trace_id: str) -> str:
    """`trace:{trace_id}`."""
    return f"{TRACE}{trace_id}"


# -- tags ----------------------------------------------------------------------------------------------------


def checkpoint_tags(workflow_id: str) -> list[str]:
    return ["checkpoint", "workflow", workflow_id]


def run_tags(workflow_id: str) -> list[str]:
    return ["run", "workflow", workflow_id]


def escalation_tags(kind: str, workflow_id: str) -> list[str]:
    return ["escalation", kind, workflow_id]


def dedup_tags(action: str) -> list[str]:
    return ["dedup", "idempotency", action]


def dedup_error_tags(action: str) -> list[str]:
    return ["dedup-error", "idempotency", action]


TRACE_TAGS = ("trace", "audit")

# -- spans ---------------------------------------------------------------------------------------------------

# Attributes the kit sets; a stored span keeps them under "attributes" (KIND and the recorded values aside).
ATTR_KIND = "workflow_kit.kind"  # workflow | step | agent | tool | memory | any word the caller picks
ATTR_WORKFLOW_ID = "workflow_kit.workflow_id"
ATTR_WORKFLOW = "workflow_kit.workflow"
ATTR_INPUTS = "workflow_kit.inputs"
ATTR_OUTPUTS = "workflow_kit.outputs"
ATTR_REASONING = "workflow_kit.reasoning"
ATTR_STEP = "workflow_kit.step"
ATTR_STEP_INDEX = "workflow_kit.step_index"
ATTR_RAN = "workflow_kit.ran"  # on the workflow span: the steps this run ran
ATTR_REPLAYED = "workflow_kit.replayed"
ATTR_ATTEMPTS = "workflow_kit.attempts"  # memory calls (retries) and self_improve
ATTR_DEDUP = "workflow_kit.dedup"  # idempotent spans: cached | executed | executed-degraded
ATTR_DEDUP_KEY = FIELD_DEDUP_KEY  # idempotent spans: the key of their dedup record
ATTR_FALLBACK_PATH = "workflow_kit.fallback.path"
ATTR_FALLBACK_USED = "workflow_kit.fallback.used"
ATTR_FALLBACK_DEGRADED = "workflow_kit.fallback.degraded"

# Span kinds (a stored span's "kind").
KIND_WORKFLOW = "workflow"
KIND_STEP = "step"
KIND_MEMORY = "memory"

# Span events the kit adds.
EVENT_BREAKER = "circuit_breaker.state_change"
EVENT_BUDGET = "autonomy.budget_exceeded"
EVENT_SCOPE = "autonomy.scope_violation"
EVENT_ESCALATION = "autonomy.escalation"
EVENT_FALLBACK = "fallback.link_failed"
EVENT_RATE_LIMIT = "rate_limit.waited"
EVENT_BRANCH_FAILED = "fan_out.branch_failed"
EVENT_SWITCH_STRATEGY = "self_improve.switch_strategy"
EVENT_EXCEPTION = "exception"  # OpenTelemetry's
ATTR_EXCEPTION_TYPE = "exception.type"
ATTR_EXCEPTION_MESSAGE = "exception.message"
ATTR_EXCEPTION_STACKTRACE = "exception.stacktrace"

# -- exceptions ----------------------------------------------------------------------------------------------

# The errors that end a run on purpose (a stop, a pause, a bound of autonomy, a lost lease): a run that ends
# with one did not fail. A stored span's error starts with the exception's class name.
SIGNALS = ("WorkflowStopped", "WorkflowPaused", "BudgetExceeded", "ScopeViolation", "LeaseLost")
