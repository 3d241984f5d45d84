"""workflow_kit chaos (the seed's level 3), with real processes: the code-review example SIGKILLed at several
moments and resumed (every side effect once); the memory service SIGKILLed mid-run (the workflow degrades to
its journal, finishes, and the journal is flushed when the service is back); a dependency failing 3 times
trips the breaker, which recovers after the cooldown; SIGTERM mid-run stops cleanly (exit 0) and the next
run resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerProcess
from workflow_kit import (
    Agent,
    CircuitBreaker,
    CircuitOpen,
    Journal,
    MemoryClient,
    Metrics,
    ServiceUnavailable,
    constant,
    dedup_key,
    fallback,
)

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "code_review.py"


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    """One real service for the tests that do not kill it (distinct workflow ids)."""
    srv = ServerProcess(tmp_path_factory.mktemp("chaos-server") / "data").start()
    yield srv
    srv.stop()


def start(url: str, wf: str, journal: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(EXAMPLE), "--memory-url", url, "--workflow-id", wf, "--journal-dir", str(journal)]
    return subprocess.Popen(
        [*cmd, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(ROOT)
    )


def finish(proc: subprocess.Popen, code: int = 0) -> dict:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-4000:]
    return json.loads(out.strip().splitlines()[-1])


def wait_until(check: Callable[[], bool], proc: subprocess.Popen | None, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the example exited ({proc.returncode}) before {what}: {proc.stderr.read()[-3000:]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


KIT = {"namespace": "_kit/default"}  # where the kit keeps its records (issue 18)


def has_key(url: str, key: str) -> bool:
    try:
        return httpx.get(f"{url}/keys/{key}", params=KIT, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def has_claim(url: str, key: str) -> bool:
    return httpx.get(f"{url}/claims/{key}", params=KIT, timeout=2).status_code == 200


def posted(journal: Path, wf: str) -> bool:
    path = journal / f"{wf}.effects.jsonl"
    return path.exists() and '"executed": true' in path.read_text()


def effect_lines(journal: Path, wf: str) -> list[dict]:
    path = journal / f"{wf}.effects.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# -- the example killed with SIGKILL at different moments ----------------------------------------------------

MOMENTS = {
    # name: (what to wait for before the kill, the step the re-run must resume at)
    "in-fetch": (lambda url, wf, j: has_claim(url, f"workflow:{wf}"), None),
    "in-review": (lambda url, wf, j: has_key(url, f"checkpoint:{wf}:fetch"), "review"),
    "in-summarise": (lambda url, wf, j: has_key(url, f"checkpoint:{wf}:review"), "summarise"),
    # The post went out, its step is not checkpointed: the re-run enters post again and must not post twice.
    "after-the-post": (lambda url, wf, j: posted(j, wf), "post"),
    # Worse: the API applied the post but had not answered, so no dedup record exists. The re-run calls the
    # API again with the same idempotency key (the dedup key), and the API does not apply it twice.
    "inside-the-post-call": (lambda url, wf, j: posted(j, wf), "post"),
}


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_sigkill_at_any_moment_then_resume_posts_once(shared_server, tmp_path, moment):
    url, wf, journal = shared_server.url, f"kill-{moment}", tmp_path / "journal"
    ready, resumes_at = MOMENTS[moment]
    latency = ["--post-latency", "30"] if moment == "inside-the-post-call" else []
    proc = start(url, wf, journal, "--step-delay", "0.6", "--quiet", *latency)
    wait_until(lambda: ready(url, wf, journal), proc, moment)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL

    started = time.monotonic()
    out = finish(start(url, wf, journal, "--quiet"))
    assert time.monotonic() - started < 30  # the killed run's lease token, kept by its journal, gives it back at once
    assert out == {
        "workflow_id": wf,
        "status": "completed",
        "resumed_from": resumes_at,
        "side_effects": {"post_review": 1},
    }
    calls = effect_lines(journal, wf)  # every call the fake API got: applied, or answered as a replay
    assert [e["executed"] for e in calls][:1] == [True] and sum(e["executed"] for e in calls) == 1
    assert {e["idempotency_key"] for e in calls} == {dedup_key("post_review", {"pr": wf})}
    if moment == "inside-the-post-call":  # the gap: the re-run called again, and the key made it a replay
        assert [e["executed"] for e in calls] == [True, False]
    checkpoints = httpx.get(f"{url}/keys", params={"prefix": f"checkpoint:{wf}:", **KIT}).json()["results"]
    steps = [c["metadata"]["step"] for c in checkpoints]
    assert sorted(steps) == ["fetch", "post", "review", "summarise"]  # each step checkpointed once


# -- the memory service killed mid-run -----------------------------------------------------------------------


def test_the_service_dies_mid_run_the_workflow_finishes_on_its_journal_and_flushes_later(server_factory, tmp_path):
    server = server_factory()
    wf, journal = "pr-degraded", tmp_path / "journal"
    proc = start(server.url, wf, journal, "--step-delay", "0.5")
    wait_until(lambda: has_key(server.url, f"checkpoint:{wf}:fetch"), proc, "the fetch checkpoint")
    server.kill()  # SIGKILL the memory service in the middle of the run
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-4000:]
    assert json.loads(out.strip().splitlines()[-1]) == {
        "workflow_id": wf,
        "status": "completed",
        "resumed_from": None,
        "side_effects": {"post_review": 1},
    }
    assert "writing to the local journal" in err and "memory read failed soft" in err
    pending = Journal(journal).pending(wf)
    kinds = [e["body"]["key"].split(":")[0] for e in pending]
    assert kinds.count("checkpoint") >= 3 and "dedup" in kinds and "trace" in kinds

    server.start()  # the service comes back (same data dir): the next run flushes, then replays
    again = finish(start(server.url, wf, journal, "--quiet"))
    assert again == {
        "workflow_id": wf,
        "status": "completed",
        "resumed_from": None,  # a replay resumes nothing
        "side_effects": {"post_review": 1},
    }
    assert Journal(journal).pending(wf) == []
    checkpoints = httpx.get(f"{server.url}/keys", params={"prefix": f"checkpoint:{wf}:", **KIT}).json()["results"]
    assert [c["metadata"]["step"] for c in checkpoints] == ["post", "summarise", "review", "fetch"]  # in order
    key = dedup_key("post_review", {"pr": wf})
    assert httpx.get(f"{server.url}/keys/dedup:{key}", params=KIT).json()["metadata"]["result"]["replayed"] is False
    trace_id = checkpoints[0]["metadata"]["trace_id"]
    trace = json.loads(httpx.get(f"{server.url}/keys/trace:{trace_id}", params=KIT).json()["content"])
    assert {"step review", "step post"} <= {s["name"] for s in trace["spans"]}
    # Delivered once: flushing again (as every later run does) adds nothing.
    total = httpx.get(f"{server.url}/stats", params=KIT).json()["total_memories"]
    finish(start(server.url, wf, journal, "--quiet"))
    # Only the replay's own trace and run record.
    assert httpx.get(f"{server.url}/stats", params=KIT).json()["total_memories"] == total + 2


# -- a dependency failing three times trips the breaker; the cooldown brings it back -------------------------


async def test_a_dependency_failing_three_times_trips_the_breaker_and_recovers_after_the_cooldown(server_factory):
    server = server_factory()

    class Clock:
        now = 0.0

        def __call__(self) -> float:
            return self.now

    clock, metrics = Clock(), Metrics()
    sent = []

    async def count(request: httpx.Request) -> None:
        sent.append(request.url.path)

    async with MemoryClient(server.url, retries=0, timeout=2.0) as client:
        client._http.event_hooks["request"].append(count)

        async def similar_incidents(text: str) -> list:
            return (await client.search(text, limit=3))["results"]

        breaker = CircuitBreaker("memory-search", failure_threshold=3, cooldown=30, clock=clock, metrics=metrics)
        lookup = Agent("incident-lookup", similar_incidents, breaker=breaker, metrics=metrics)
        chain = [lookup, constant([], name="no-history")]
        await client.ingest("the deploy failed because the migration timed out")
        assert len(await lookup("deploy migration")) == 1

        server.kill()  # the dependency goes down
        for _ in range(3):
            with pytest.raises(ServiceUnavailable):
                await lookup("deploy migration")
        assert breaker.state == "open"
        before = len(sent)
        with pytest.raises(CircuitOpen):
            await lookup("deploy migration")
        assert len(sent) == before  # refused without touching the network
        degraded = await fallback(chain, "deploy migration", with_path=True)
        assert degraded.path == ["incident-lookup:CircuitOpen", "no-history:ok"] and degraded.value == []

        server.start()  # back, but the breaker keeps it out until the cooldown has passed
        with pytest.raises(CircuitOpen):
            await lookup("deploy migration")
        clock.now += 30
        assert breaker.state == "half_open"
        assert len(await lookup("deploy migration")) == 1  # the trial call succeeds
        assert breaker.state == "closed"
        assert [(a, b) for a, b, _ in breaker.transitions] == [
            ("closed", "open"),
            ("open", "half_open"),
            ("half_open", "closed"),
        ]
        snap = metrics.snapshot()["incident-lookup"]
        assert snap["errors"] == 3 and snap["rejected"] == 3


# -- SIGTERM mid-run: the current step finishes, exit 0, the next run resumes -------------------------------


def test_sigterm_mid_run_finishes_the_step_exits_0_and_the_next_run_resumes(shared_server, tmp_path):
    url, wf, journal = shared_server.url, "pr-sigterm", tmp_path / "journal"
    proc = start(url, wf, journal, "--step-delay", "1.0")
    wait_until(lambda: has_key(url, f"checkpoint:{wf}:fetch"), proc, "the fetch checkpoint")
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)  # during review
    out = finish(proc, code=0)
    assert time.monotonic() - sent < 15
    assert out["status"] == "stopped" and out["stopped_after"] == "review" and out["next"] == "summarise"
    assert out["side_effects"] == {"post_review": 0}
    assert has_key(url, f"checkpoint:{wf}:review") and not has_key(url, f"checkpoint:{wf}:summarise")

    again = finish(start(url, wf, journal, "--quiet"))
    assert again == {
        "workflow_id": wf,
        "status": "completed",
        "resumed_from": "summarise",
        "side_effects": {"post_review": 1},
    }


def test_sigterm_with_a_step_outliving_the_deadline_cuts_it_off_and_still_exits_0(shared_server, tmp_path):
    url, wf, journal = shared_server.url, "pr-sigterm-deadline", tmp_path / "journal"
    proc = start(url, wf, journal, "--step-delay", "30", "--shutdown-deadline", "0.5")
    wait_until(lambda: has_claim(url, f"workflow:{wf}"), proc, "the run to start")
    proc.send_signal(signal.SIGTERM)  # fetch would take 30 s
    out = finish(proc, code=0)
    assert out["status"] == "stopped" and out["next"] == "fetch" and out["stopped_after"] is None
    assert not has_key(url, f"checkpoint:{wf}:fetch")
    again = finish(start(url, wf, journal, "--quiet"))
    assert again["status"] == "completed" and again["side_effects"] == {"post_review": 1}
