"""One racer for the exactly-once tests: `python kit_race.py URL WORKDIR ACTION [--lease S] [--hang]`.

Writes WORKDIR/ready-PID, waits for WORKDIR/go to exist (so racers start together), then runs
`idempotent(client, ACTION, {"n": 1}, fn)` where fn appends its pid to WORKDIR/effects and takes 0.5 s (or, with
--hang, writes WORKDIR/hanging and sleeps until killed). Prints the result as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import time

from workflow_kit import MemoryClient, idempotent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("workdir", type=pathlib.Path)
    parser.add_argument("action")
    parser.add_argument("--lease", type=float, default=60.0)
    parser.add_argument("--hang", action="store_true")
    args = parser.parse_args()
    work: pathlib.Path = args.workdir

    (work / f"ready-{os.getpid()}").touch()
    deadline = time.monotonic() + 30
    while not (work / "go").exists():  # a start line for both racers
        if time.monotonic() > deadline:
            raise SystemExit("no go file")
        time.sleep(0.005)

    async def side_effect(params):
        with open(work / "effects", "a") as f:
            f.write(f"{os.getpid()}\n")
        if args.hang:
            (work / "hanging").write_text(str(os.getpid()))
            await asyncio.sleep(600)
        await asyncio.sleep(0.5)
        return {"done_by": os.getpid(), "n": params["n"]}

    async def run() -> None:
        async with MemoryClient(args.url) as client:
            result = await idempotent(
                client, args.action, {"n": 1}, side_effect, lease_seconds=args.lease, holder=f"racer-{os.getpid()}"
            )
        print(json.dumps(result), flush=True)

    asyncio.run(run())


if __name__ == "__main__":
    main()
