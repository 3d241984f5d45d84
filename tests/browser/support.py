"""What the browser tests (and render_times.py) share: how Chromium is started, and workflows that end paused
or failed, run through workflow_kit against a real service, beside the code-review example's own runs.

- `run_example`: examples/code_review.py as a process (the real example), completed.
- `run_paused`: a workflow whose agent spends over its token ceiling in its second step: BudgetExceeded, an
  `escalation` memory (kind budget), the workflow paused for a person.
- `run_failing`: a workflow whose flaky agent trips its circuit breaker (two failures open it, the third call
  is refused), whose summary falls back to a canned answer, and whose last step fails; run twice, so the last
  step has two failed attempts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from workflow_kit import (
    Agent,
    Autonomy,
    BudgetExceeded,
    Ceiling,
    CircuitBreaker,
    CircuitOpen,
    MemoryClient,
    charge,
    constant,
    fallback,
    run_workflow,
)

ROOT = Path(__file__).resolve().parents[2]
# Debian's package (apt-get install -y chromium); another build can be named with MEMORY_SPINE_CHROMIUM.
CHROMIUM_PATH = os.environ.get("MEMORY_SPINE_CHROMIUM", "/usr/bin/chromium")
# Debian's Chromium, headless, as root, on a machine with no network but loopback: no sandbox (root), and
# none of the background connections it would otherwise try (and be refused) at every start.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def run_example(url: str, workflow_id: str, journal_dir: Path, *, token: str | None = None) -> dict:
    """Run examples/code_review.py once; return its last line (the JSON outcome)."""
    import json

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if token:
        env["MEMORY_SPINE_TOKEN"] = token
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "code_review.py"),
            "--memory-url",
            url,
            "--workflow-id",
            workflow_id,
            "--journal-dir",
            str(journal_dir),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=str(ROOT),
    )
    if out.returncode != 0:
        raise RuntimeError(f"code_review.py exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


async def run_paused(url: str, workflow_id: str, *, token: str | None = None) -> None:
    """A workflow stopped by its budget ceiling in step `draft`, escalated and paused."""

    async def gather(ctx):
        return {"sources": ["runbook", "incident-42"], "pages": 7}

    async def write(sources):
        charge(tokens=1500, cost=0.02)
        return {"draft": "..."}

    writer = Agent("writer", write, timeout=5)

    async def draft(ctx):
        return await writer(ctx.outputs["gather"]["sources"])

    async def publish(ctx):
        return {"published": True}

    guard = Autonomy(ceiling=Ceiling(tokens=1000, cost=1.0))
    async with MemoryClient(url, token=token) as client:
        try:
            await run_workflow(
                client, workflow_id, [gather, draft, publish], name="nightly-report", autonomy=guard, lease_seconds=5
            )
        except BudgetExceeded:
            return
    raise AssertionError("the paused workflow ran to the end")


async def run_failing(url: str, workflow_id: str, *, token: str | None = None, runs: int = 2) -> None:
    """A workflow whose breaker opens and whose last step fails, `runs` times (the later runs resume)."""

    async def flaky_load(batch):
        raise ConnectionError("warehouse refused the connection")

    loader = Agent(
        "warehouse", flaky_load, breaker=CircuitBreaker("warehouse", failure_threshold=2, cooldown=30), timeout=5
    )

    async def load(ctx):
        return {"rows": 1200, "batches": 3}

    async def transform(ctx):
        refused = 0
        for batch in range(3):
            try:
                await loader(batch)
            except CircuitOpen:
                refused += 1
            except ConnectionError:
                pass
        summary = await fallback([loader, constant({"rows": 0, "degraded": True}, name="cached")], 0, name="load")
        ctx.record(reasoning={"why": "the warehouse keeps refusing: go on with the cached summary", "refused": refused})
        return {"refused": refused, "summary": summary}

    async def publish(ctx):
        raise RuntimeError("report store unreachable: 503 from the upload endpoint")

    async with MemoryClient(url, token=token) as client:
        for _ in range(runs):
            try:
                await run_workflow(
                    client, workflow_id, [load, transform, publish], name="ingest-pipeline", lease_seconds=5
                )
            except RuntimeError:
                continue
            raise AssertionError("the failing workflow succeeded")
