"""The seed document's snippets, copied verbatim from ../shared/seed/agentic-workflows-design.md.

Sections 4 (checkpoint / resume), 5 (trace context) and 6 (idempotent_action). Nothing below the marker is
edited: tests rebind the module global `MEMORY_URL` to a test server, which the functions read at call time.
The seed's `run_workflow` resumes with `steps.index(last["step"])` on a list of functions; that is the bug
workflow_kit fixes, kept here as written.
"""
# ruff: noqa
# fmt: off
# --- verbatim below ---
import httpx

MEMORY_URL = "http://127.0.0.1:8788"

async def checkpoint(workflow_id: str, step: str, data: dict):
    """Store a workflow checkpoint in Memory Spine."""
    await httpx.AsyncClient().post(f"{MEMORY_URL}/ingest", json={
        "content": f"checkpoint:{workflow_id}:{step}",
        "metadata": {"workflow_id": workflow_id, "step": step, **data},
        "tags": ["checkpoint", "workflow", workflow_id]
    })

async def resume_from_checkpoint(workflow_id: str) -> dict | None:
    """Find the latest checkpoint for a workflow."""
    resp = await httpx.AsyncClient().post(f"{MEMORY_URL}/search", json={
        "query": f"checkpoint:{workflow_id}",
        "limit": 1
    })
    results = resp.json().get("results", [])
    return results[0]["metadata"] if results else None

async def run_workflow(workflow_id: str, steps: list):
    last = await resume_from_checkpoint(workflow_id)
    start_idx = 0
    if last:
        start_idx = steps.index(last["step"]) + 1
        print(f"Resuming from step {start_idx}: {last['step']}")

    for i, step_fn in enumerate(steps[start_idx:], start=start_idx):
        result = await step_fn()
        await checkpoint(workflow_id, step_fn.__name__, {"result": result})
    return "complete"


import uuid
import time
import json

def create_trace(workflow_name: str) -> dict:
    """Create a trace context for workflow observability."""
    return {
        "trace_id": str(uuid.uuid4()),
        "workflow": workflow_name,
        "started_at": time.time(),
        "spans": []
    }

def trace_agent(trace: dict, agent_name: str):
    """Decorator-style context for tracing agent execution."""
    span = {
        "agent": agent_name,
        "trace_id": trace["trace_id"],
        "start": time.time(),
        "status": "running"
    }
    trace["spans"].append(span)
    return span

def complete_span(span: dict, result: str, status: str = "ok"):
    span["end"] = time.time()
    span["duration_ms"] = round((span["end"] - span["start"]) * 1000)
    span["status"] = status
    span["result_summary"] = result[:200]


import hashlib

async def idempotent_action(action_name: str, params: dict, execute_fn):
    """Execute an action idempotently using Memory Spine dedup."""
    # Build a deterministic dedup key from action + params
    key_source = f"{action_name}:{json.dumps(params, sort_keys=True)}"
    dedup_key = hashlib.sha256(key_source.encode()).hexdigest()[:16]

    # Check if this action was already performed
    resp = await httpx.AsyncClient().post(f"{MEMORY_URL}/search", json={
        "query": f"dedup:{dedup_key}",
        "limit": 1
    })
    results = resp.json().get("results", [])

    if results:
        print(f"Action '{action_name}' already executed, returning cached result")
        return results[0]["metadata"].get("result")

    # Execute the action
    result = await execute_fn(params)

    # Store the dedup record
    await httpx.AsyncClient().post(f"{MEMORY_URL}/ingest", json={
        "content": f"dedup:{dedup_key} action={action_name}",
        "metadata": {"dedup_key": dedup_key, "action": action_name, "result": result},
        "tags": ["dedup", "idempotency", action_name]
    })
    return result
