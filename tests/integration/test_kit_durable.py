"""A workflow in a real process, SIGKILLed in the middle of a step, resumes at that step on re-run; every side
effect (counted in a file) happens once. Real memory-spine process, real ONNX model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workflow_kit import MemoryClient

pytestmark = [pytest.mark.integration, pytest.mark.chaos]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One real service for the module (its tests use distinct ids): a process start is most of a test's time."""
    from tests.conftest import ServerProcess

    srv = ServerProcess(tmp_path_factory.mktemp("kit-server") / "data").start()
    yield srv
    srv.stop()


ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).parent / "scripts" / "kit_workflow.py"


def start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    )


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"workflow exited early ({proc.returncode}): {proc.stderr.read()}")
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.01)


def finish(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.parametrize("hang_in", ["charge", "fetch"])
async def test_sigkill_mid_step_resumes_at_that_step(server, tmp_path, hang_in):
    wf = f"order-{hang_in}"
    work = tmp_path / "work"
    work.mkdir()
    proc = start(server.url, wf, str(work), "--hang-in", hang_in)
    wait_for(work / "hanging", proc)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up, mid-step
    proc.wait(timeout=10)
    (work / "hanging").unlink()
    before = ["fetch"] if hang_in == "fetch" else ["fetch", "charge"]
    assert lines(work / "starts") == before

    run = finish(start(server.url, wf, str(work)))
    if hang_in == "charge":
        assert run["resumed_after"] == "fetch" and run["ran"] == ["charge", "post"]
        assert lines(work / "starts") == ["fetch", "charge", "charge", "post"]  # fetch not re-run
    else:
        assert run["resumed_after"] is None and run["ran"] == ["fetch", "charge", "post"]
    # The killed run's outputs came back: charge saw fetch's diff, post saw charge's receipt.
    assert run["outputs"]["charge"] == {"receipt": {"charged": wf}, "diff_seen": "+1 -1"}
    assert run["result"] == f"posted {wf}"
    effects = lines(work / "effects")
    if hang_in == "charge":
        # fetch ran once; charge's idempotent side effect ran once though the step ran twice; post once.
        assert effects == ["fetch", f"charge {wf}", "post"]
    else:
        # A step killed midway runs again (at-least-once per step): fetch's bare side effect repeats...
        assert effects == ["fetch", "fetch", f"charge {wf}", "post"]

    again = finish(start(server.url, wf, str(work)))  # completed: nothing runs
    assert again["replayed"] and again["ran"] == [] and again["result"] == f"posted {wf}"
    assert len(lines(work / "effects")) == len(effects)

    async with MemoryClient(server.url) as client:
        latest = await client.latest_checkpoint(wf)
    assert latest["metadata"]["step"] == "post" and latest["metadata"]["status"] == "completed"


async def test_a_server_restart_between_runs_loses_nothing(server, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    proc = start(server.url, "order-8", str(work), "--hang-in", "charge")
    wait_for(work / "hanging", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    server.restart()  # SIGKILL the service too
    run = finish(start(server.url, "order-8", str(work)))
    assert run["resumed_after"] == "fetch"
    assert lines(work / "effects") == ["fetch", "charge order-8", "post"]


async def test_two_processes_running_one_workflow_id_run_each_step_once(server, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    first = start(server.url, "order-9", str(work), "--hang-in", "charge", "--hang-seconds", "1", "--lease", "5")
    wait_for(work / "hanging", first)
    second = start(server.url, "order-9", str(work), "--lease", "5")  # waits for the first, then replays
    a, b = finish(first), finish(second)
    assert lines(work / "starts") == ["fetch", "charge", "post"]
    assert lines(work / "effects") == ["fetch", "charge order-9", "post"]
    assert a["ran"] == ["fetch", "charge", "post"] and b["replayed"] and a["result"] == b["result"]


async def test_killed_at_random_instants_no_checkpointed_step_or_recorded_charge_repeats(server, tmp_path):
    """Kill -9 at seeded random instants (inside steps, inside checkpoint writes, inside the charge), then
    finish. After each kill, whatever the service holds is final: a checkpointed step never starts again, and
    once the charge's dedup record exists the charge never runs again."""
    import random

    from workflow_kit import dedup_key

    rng = random.Random(20261124)
    wf, work = "order-random", tmp_path / "work"
    work.mkdir()
    charge_key = f"dedup:{dedup_key('charge', {'order': wf})}"
    done: set[str] = set()
    charges_when_recorded = None
    flags = ("--step-delay", "0.15", "--holder", "chaos-worker")  # each re-run waits out the killed run's 1 s lease

    async def check_and_snapshot(client):
        nonlocal charges_when_recorded
        starts = lines(work / "starts")
        for step in done:  # steps checkpointed before an earlier kill never start again
            assert starts.count(step) == snapshot_counts[step], (step, starts)
        charges = sum(e.startswith("charge") for e in lines(work / "effects"))
        if charges_when_recorded is not None:
            assert charges == charges_when_recorded, "a recorded charge ran again"
        elif await client.kit.find_key(charge_key) is not None:
            charges_when_recorded = charges
        for step in ("fetch", "charge", "post"):
            if step not in done and await client.latest_checkpoint(wf, step) is not None:
                done.add(step)
                snapshot_counts[step] = starts.count(step)

    snapshot_counts: dict[str, int] = {}
    async with MemoryClient(server.url) as client:
        for _ in range(3):
            before = len(lines(work / "starts"))
            proc = start(server.url, wf, str(work), *flags)
            deadline = time.monotonic() + 30
            while len(lines(work / "starts")) == before and proc.poll() is None:
                assert time.monotonic() < deadline
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.25))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            await check_and_snapshot(client)
            print("killed; checkpointed:", sorted(done), "starts:", lines(work / "starts"))  # see `pytest -s`
        run = finish(start(server.url, wf, str(work), *flags))
        await check_and_snapshot(client)
    assert run["result"] == f"posted {wf}" and run["outputs"]["charge"]["receipt"] == {"charged": wf}
    assert charges_when_recorded is not None and charges_when_recorded >= 1
