"""A worker for the fencing tests: `python kit_fencing.py URL WORKFLOW_ID WORKDIR --mode slow|hang [--lease S]`.

Every step start appends "step pid" to WORKDIR/starts, every side effect "step pid" to WORKDIR/effects.

- `--mode slow`: steps `slow` (a *sync* function blocking `--block` seconds in time.sleep, then its effect) and
  `after` (its effect). Two of these started together must run `slow` once.
- `--mode hang`: steps `one` (its effect through `idempotent`, then writes WORKDIR/hanging and sleeps
  `--hang` seconds: the test SIGSTOPs or SIGKILLs it there), `two` and `three` (plain effects, not idempotent).

Exit 0 printing the WorkflowRun as one JSON line; exit 3 printing `LeaseLost: ...` when the run lost its claim.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import time

from workflow_kit import LeaseLost, MemoryClient, idempotent, run_workflow


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("workflow_id")
    parser.add_argument("workdir", type=pathlib.Path)
    parser.add_argument("--mode", choices=["slow", "hang"], required=True)
    parser.add_argument("--lease", type=float, default=1.0)
    parser.add_argument("--block", type=float, default=3.0)
    parser.add_argument("--hang", type=float, default=2.0)
    args = parser.parse_args()
    work: pathlib.Path = args.workdir
    pid = os.getpid()

    def append(name: str, line: str) -> None:
        with open(work / name, "a") as f:
            f.write(f"{line} {pid}\n")

    def slow() -> str:  # sync and blocking, like an SDK call without asyncio support
        append("starts", "slow")
        time.sleep(args.block)
        append("effects", "slow")
        return "slow done"

    async def one(ctx) -> dict:
        append("starts", "one")

        def effect(params: dict) -> dict:
            append("effects", "one")
            return {"did": params["what"]}

        got = await idempotent(ctx.client, "one", {"what": ctx.workflow_id}, effect, lease_seconds=args.lease)
        (work / "hanging").write_text(str(pid))
        await asyncio.sleep(args.hang)  # SIGSTOP (or SIGKILL) lands here
        return got

    def plain(name: str):  # a step whose effect is not idempotent: at-least-once, unless the run is fenced out
        async def run() -> str:
            append("starts", name)
            append("effects", name)
            return f"{name} done"

        return (name, run)

    steps = [slow, plain("after")] if args.mode == "slow" else [one, plain("two"), plain("three")]

    async def run() -> int:
        async with MemoryClient(args.url) as client:
            try:
                result = await run_workflow(client, args.workflow_id, steps, lease_seconds=args.lease)
            except LeaseLost as exc:
                print(f"LeaseLost: {exc}", flush=True)
                return 3
        print(json.dumps(result.__dict__), flush=True)
        return 0

    raise SystemExit(asyncio.run(run()))


if __name__ == "__main__":
    main()
