"""workflow_kit: durable, exactly-once, traced agent workflows on top of Memory Spine.

    async with MemoryClient() as client:                      # MEMORY_SPINE_URL, MEMORY_SPINE_TOKEN
        run = await run_workflow(client, "pr-42", [fetch, review, post])   # resumes by step name
        await idempotent(client, "post_comment", {"pr": 42}, post_fn)      # once, even with racing workers

client.py talks HTTP, durable.py runs workflows, idempotency.py dedups side effects, tracing.py stores traces,
errors.py holds the exception tree.
"""

from .client import MemoryClient
from .durable import StepContext, Workflow, WorkflowRun, run_workflow, step
from .errors import (
    ClaimTimeout,
    Conflict,
    InvalidInput,
    NotFound,
    NotJSON,
    PayloadTooLarge,
    ServiceError,
    ServiceUnavailable,
    Unauthorized,
    WorkflowChanged,
    WorkflowKitError,
)
from .idempotency import dedup_key, idempotent
from .tracing import configure_logging, record, span

__all__ = [
    "ClaimTimeout",
    "Conflict",
    "InvalidInput",
    "MemoryClient",
    "NotFound",
    "NotJSON",
    "PayloadTooLarge",
    "ServiceError",
    "ServiceUnavailable",
    "StepContext",
    "Unauthorized",
    "Workflow",
    "WorkflowChanged",
    "WorkflowKitError",
    "WorkflowRun",
    "configure_logging",
    "dedup_key",
    "idempotent",
    "record",
    "run_workflow",
    "span",
    "step",
]
