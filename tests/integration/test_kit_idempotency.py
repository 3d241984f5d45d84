"""Exactly-once against a real memory-spine process: two processes racing on one action, a time window, and a
crashed holder whose lease runs out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workflow_kit import MemoryClient, dedup_key, idempotent

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One real service for the module (its tests use distinct ids): a process start is most of a test's time."""
    from tests.conftest import ServerProcess

    srv = ServerProcess(tmp_path_factory.mktemp("kit-server") / "data").start()
    yield srv
    srv.stop()


ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).parent / "scripts" / "kit_race.py"


def racer(url: str, work: Path, action: str, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), url, str(work), action, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )


def result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


async def test_two_processes_racing_run_the_action_once(server, tmp_path):
    work = tmp_path / "race"
    work.mkdir()
    procs = [racer(server.url, work, "deploy") for _ in range(2)]
    deadline = time.monotonic() + 30
    while len(list(work.glob("ready-*"))) < 2:  # both imported and at the start line
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.01)
    (work / "go").touch()
    results = [result(p) for p in procs]
    executed = (work / "effects").read_text().split()
    assert len(executed) == 1, executed
    assert results[0] == results[1] == {"done_by": int(executed[0]), "n": 1}
    async with MemoryClient(server.url) as client:
        record = await client.kit.get_key(f"dedup:{dedup_key('deploy', {'n': 1})}")
    assert record["metadata"]["result"] == results[0]
    assert record["metadata"]["holder"] == f"racer-{executed[0]}"


async def test_a_window_lets_the_action_run_again_in_the_next_window(server):
    now = [3600.0 * 500_000]  # the start of an hour
    runs = []

    async def send_digest(params):
        runs.append(now[0])
        return len(runs)

    async with MemoryClient(server.url) as client:
        hourly = dict(window_seconds=3600, clock=lambda: now[0])
        assert await idempotent(client, "digest", {"team": "ops"}, send_digest, **hourly) == 1
        now[0] += 3599  # same hour
        assert await idempotent(client, "digest", {"team": "ops"}, send_digest, **hourly) == 1
        now[0] += 1  # next hour
        assert await idempotent(client, "digest", {"team": "ops"}, send_digest, **hourly) == 2
        now[0] += 1800
        assert await idempotent(client, "digest", {"team": "ops"}, send_digest, **hourly) == 2
    assert len(runs) == 2


async def test_a_crashed_holders_lease_expires_and_the_action_is_retried(server, tmp_path):
    work = tmp_path / "crash"
    work.mkdir()
    (work / "go").touch()
    doomed = racer(server.url, work, "charge", "--lease", "1", "--hang")
    deadline = time.monotonic() + 30
    while not (work / "hanging").exists():
        assert doomed.poll() is None and time.monotonic() < deadline, doomed.stderr.read() if doomed.poll() else ""
        time.sleep(0.01)
    doomed.send_signal(signal.SIGKILL)  # holds the claim, never writes the record
    doomed.wait(timeout=10)

    retried = []

    async def charge(params):
        retried.append(params)
        return {"done_by": "retry"}

    key = f"dedup:{dedup_key('charge', {'n': 1})}"
    async with MemoryClient(server.url) as client:
        held = await client.kit.get_claim(key)
        assert held["holder"] == f"racer-{doomed.pid}"
        started = time.monotonic()
        assert await idempotent(client, "charge", {"n": 1}, charge, wait_timeout=10) == {"done_by": "retry"}
        waited = time.monotonic() - started
        assert (await client.kit.get_key(key))["metadata"]["result"] == {"done_by": "retry"}
    assert len(retried) == 1 and waited < 5
    # The crashed holder had started its side effect: the lease boundary is at-least-once, by design.
    assert (work / "effects").read_text().split() == [str(doomed.pid)]
