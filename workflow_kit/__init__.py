"""workflow_kit: durable, exactly-once, traced, bounded and fault-tolerant agent workflows on Memory Spine.

    async with MemoryClient() as client:                      # MEMORY_SPINE_URL, MEMORY_SPINE_TOKEN
        run = await run_workflow(client, "pr-42", [fetch, review, post])   # resumes by step name
        await idempotent(client, "post_comment", {"pr": 42}, post_fn)      # once, even with racing workers

client.py talks HTTP, durable.py runs workflows, idempotency.py dedups side effects, tracing.py stores traces,
errors.py holds the exception tree, records.py the formats of the records the kit stores (the console reads
them there). Fault tolerance: breaker.py (circuit breakers), budget.py (timeout budgets),
fallback.py (fallback chains), journal.py (running on while the service is out), shutdown.py (SIGTERM).
Bounded autonomy: autonomy.py (scope, budget ceiling, escalation). limits.py rate-limits, metrics.py counts,
agents.py puts all of it around one agent call, patterns/ holds the four workflow patterns.
"""

from .agents import Agent, agent
from .autonomy import Autonomy, Ceiling, Escalation, Scope, charge, check_scope, confidence, escalate, resume
from .breaker import CircuitBreaker
from .budget import deadline, remaining
from .client import MemoryClient
from .durable import RunOptions, StepContext, Workflow, WorkflowRun, run_workflow, step
from .errors import (
    AllFailed,
    AttemptsExhausted,
    AutonomyError,
    BudgetExceeded,
    CircuitOpen,
    ClaimTimeout,
    Conflict,
    DeadlineExceeded,
    InvalidInput,
    LeaseLost,
    LeaseRejected,
    NotFound,
    NotJSON,
    PayloadTooLarge,
    PreconditionFailed,
    ScopeViolation,
    ServiceError,
    ServiceUnavailable,
    StaleFence,
    Unauthorized,
    WorkflowChanged,
    WorkflowKitError,
    WorkflowPaused,
    WorkflowSignal,
    WorkflowStopped,
)
from .fallback import constant, fallback
from .idempotency import dedup_key, idempotent
from .journal import Journal, recall
from .limits import RateLimit
from .metrics import Metrics
from .patterns import Router, fan_out, self_improve, sequential
from .shutdown import Shutdown, graceful_shutdown
from .tracing import configure_logging, record, span

__all__ = [
    "Agent",
    "AllFailed",
    "AttemptsExhausted",
    "Autonomy",
    "AutonomyError",
    "BudgetExceeded",
    "Ceiling",
    "CircuitBreaker",
    "CircuitOpen",
    "ClaimTimeout",
    "Conflict",
    "DeadlineExceeded",
    "Escalation",
    "InvalidInput",
    "Journal",
    "LeaseLost",
    "LeaseRejected",
    "MemoryClient",
    "Metrics",
    "NotFound",
    "NotJSON",
    "PayloadTooLarge",
    "PreconditionFailed",
    "RateLimit",
    "RunOptions",
    "Router",
    "Scope",
    "ScopeViolation",
    "ServiceError",
    "ServiceUnavailable",
    "Shutdown",
    "StaleFence",
    "StepContext",
    "Unauthorized",
    "Workflow",
    "WorkflowChanged",
    "WorkflowKitError",
    "WorkflowPaused",
    "WorkflowRun",
    "WorkflowSignal",
    "WorkflowStopped",
    "agent",
    "charge",
    "check_scope",
    "configure_logging",
    "confidence",
    "constant",
    "deadline",
    "dedup_key",
    "escalate",
    "fallback",
    "fan_out",
    "graceful_shutdown",
    "idempotent",
    "recall",
    "record",
    "remaining",
    "resume",
    "run_workflow",
    "self_improve",
    "sequential",
    "span",
    "step",
]
