"""Fencing tokens against a real service with real worker processes (scripts/kit_fencing.py):

- a *sync* step blocking 3x the lease, two workers started together: the step runs once (the renewal keeps
  running beside it, in the event loop, while the step blocks a worker thread);
- a worker SIGSTOPped mid-step until its lease ran out and another worker finished the workflow: once woken it
  cannot write its checkpoint (409 stale_fence), stops with LeaseLost before its next step, and every step's
  effect happened exactly once;
- a worker SIGKILLed mid-run: its run shows in the console (the workflow list and the workflow's runs) as died.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.test_kit_durable import lines, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).parent / "scripts" / "kit_fencing.py"


def start(url: str, wf: str, work: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), url, wf, str(work), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )


def effects(work: Path) -> list[str]:
    return [line.split()[0] for line in lines(work / "effects")]


def test_a_sync_step_blocking_three_leases_runs_once(module_server, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    flags = ("--mode", "slow", "--lease", "1", "--block", "3")
    workers = [start(module_server.url, "fence-slow", work, *flags) for _ in range(2)]
    outs = []
    for w in workers:
        out, err = w.communicate(timeout=60)
        assert w.returncode == 0, err
        outs.append(json.loads(out.strip().splitlines()[-1]))
    assert effects(work) == ["slow", "after"], lines(work / "effects")
    assert sorted(o["replayed"] for o in outs) == [False, True]  # one ran it, the other replayed its result
    assert all(o["result"] == "after done" for o in outs)


def test_a_stopped_worker_that_lost_its_lease_cannot_write_and_stops(module_server, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    flags = ("--mode", "hang", "--lease", "1", "--hang", "2")
    frozen = start(module_server.url, "fence-stop", work, *flags)
    wait_for(work / "hanging", frozen)
    frozen.send_signal(signal.SIGSTOP)  # a GC pause, a swapped-out VM: alive, but not renewing
    try:
        taker = start(module_server.url, "fence-stop", work, *flags[:-2], "--hang", "0")
        out, err = taker.communicate(timeout=60)
        assert taker.returncode == 0, err
        assert json.loads(out.strip().splitlines()[-1])["ran"] == ["one", "two", "three"]
    finally:
        frozen.send_signal(signal.SIGCONT)
    out, err = frozen.communicate(timeout=60)
    assert frozen.returncode == 3 and "LeaseLost" in out, (out, err)
    starts = lines(work / "starts")
    assert not any(s.startswith(("two", "three")) and s.endswith(f" {frozen.pid}") for s in starts), starts
    assert effects(work) == ["one", "two", "three"], lines(work / "effects")  # each once, in order
    kit = {"namespace": "_kit/default"}  # where the kit keeps its records
    with httpx.Client(base_url=module_server.url) as http:
        cps = http.get("/keys", params={"prefix": "checkpoint:fence-stop:", **kit}).json()["results"]
        assert sorted(c["key"] for c in cps) == [f"checkpoint:fence-stop:{s}" for s in ("one", "three", "two")]
        runs = http.get("/keys", params={"prefix": "run:fence-stop:", **kit}).json()["results"]
        assert sorted(r["metadata"]["status"] for r in runs) == ["completed", "lease_lost"]


def test_a_killed_run_shows_as_died_in_the_console(module_server, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    doomed = start(module_server.url, "fence-kill", work, "--mode", "hang", "--lease", "1", "--hang", "30")
    wait_for(work / "hanging", doomed)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=10)
    time.sleep(1.2)  # its lease runs out
    with httpx.Client(base_url=module_server.url) as http:
        page = http.get("/ui/api/workflows/fence-kill")
        assert page.status_code == 200, page.text
        doc = page.json()
        assert doc["status"] == "failed" and "died" in doc["why"], doc["why"]
        assert [r["status"] for r in doc["runs"]] == ["died"]
        listed = {r["workflow_id"]: r for r in http.get("/ui/api/workflows").json()["results"]}
        assert listed["fence-kill"]["status"] == "failed" and "died" in listed["fence-kill"]["why"]
        # Run again: it finishes; the console then lists both runs, the dead one still as died.
        rerun = start(module_server.url, "fence-kill", work, "--mode", "hang", "--lease", "1", "--hang", "0")
        out, err = rerun.communicate(timeout=60)
        assert rerun.returncode == 0, err
        doc = http.get("/ui/api/workflows/fence-kill").json()
        assert doc["status"] == "completed"
        assert [r["status"] for r in doc["runs"]] == ["ok", "died"]  # newest first (a trace says ok)
