"""A three-step workflow for the crash tests: `python kit_workflow.py URL WORKFLOW_ID WORKDIR [--hang-in STEP]`.

Each side effect appends a line to WORKDIR/effects; each step start appends to WORKDIR/starts. With
--hang-in STEP, that step does its side effect, writes WORKDIR/hanging and sleeps until killed (or for
--hang-seconds). The run's claim on the workflow id has a --lease of 1 s, so a re-run after SIGKILL waits ~1 s.
On success prints the WorkflowRun as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import sys

from workflow_kit import MemoryClient, idempotent, run_workflow


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("workflow_id")
    parser.add_argument("workdir", type=pathlib.Path)
    parser.add_argument("--hang-in")
    parser.add_argument("--hang-seconds", type=float, default=600)
    parser.add_argument("--lease", type=float, default=1.0)
    parser.add_argument("--holder", help="the claim holder's name (a re-run after a kill still waits the lease)")
    parser.add_argument("--step-delay", type=float, default=0.0, help="seconds each step takes")
    args = parser.parse_args()
    work: pathlib.Path = args.workdir

    def append(name: str, line: str) -> None:
        with open(work / name, "a") as f:
            f.write(line + "\n")

    async def maybe_hang(step: str) -> None:
        await asyncio.sleep(args.step_delay)
        if args.hang_in == step:
            (work / "hanging").write_text(str(os.getpid()))
            await asyncio.sleep(args.hang_seconds)  # the test SIGKILLs us here, or waits

    async def fetch(ctx):
        append("starts", "fetch")
        append("effects", "fetch")
        await maybe_hang("fetch")
        return {"diff": "+1 -1", "pid": os.getpid()}

    async def charge(ctx):
        append("starts", "charge")

        async def do_charge(params):
            append("effects", f"charge {params['order']}")
            return {"charged": params["order"]}

        receipt = await idempotent(
            ctx.client, "charge", {"order": ctx.workflow_id}, do_charge, lease_seconds=args.lease, holder=args.holder
        )
        await maybe_hang("charge")
        return {"receipt": receipt, "diff_seen": ctx.outputs["fetch"]["diff"]}

    async def post(ctx):
        append("starts", "post")
        append("effects", "post")
        return f"posted {ctx.outputs['charge']['receipt']['charged']}"

    async def run() -> None:
        async with MemoryClient(args.url) as client:
            result = await run_workflow(
                client,
                args.workflow_id,
                [fetch, charge, post],
                name="crash-test",
                lease_seconds=args.lease,
                holder=args.holder,
            )
        print(json.dumps(result.__dict__), flush=True)

    asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
