"""workflow_kit.shutdown: a stop request (or SIGTERM) lets the current step finish and checkpoint, then the run
raises WorkflowStopped and the next run resumes; a step outliving the deadline is cut off and runs again."""

from __future__ import annotations

import asyncio
import os
import signal

import httpx
import pytest

from workflow_kit import MemoryClient, Shutdown, WorkflowStopped, graceful_shutdown, run_workflow


@pytest.fixture
async def kit(app):
    async with MemoryClient("http://memory-spine", transport=httpx.ASGITransport(app=app)) as c:
        yield c


def make_steps(ran: list[str], during_first=None):
    async def fetch(ctx):
        ran.append("fetch")
        if during_first is not None:
            during_first()
        await asyncio.sleep(0.05)  # still working when the stop comes
        return "diff"

    async def review(ctx):
        ran.append("review")
        return "ok"

    async def post(ctx):
        ran.append("post")
        return "posted"

    return [fetch, review, post]


async def test_a_stop_request_finishes_the_step_checkpoints_and_stops(kit):
    stop = Shutdown(deadline=5)
    ran: list[str] = []
    with pytest.raises(WorkflowStopped) as info:
        await run_workflow(kit, "stop-1", make_steps(ran, lambda: stop.request("test")), shutdown=stop)
    assert (info.value.after, info.value.next, info.value.interrupted) == ("fetch", "review", None)
    assert ran == ["fetch"]
    assert (await kit.latest_checkpoint("stop-1"))["metadata"]["step"] == "fetch"

    run = await run_workflow(kit, "stop-1", make_steps(ran), shutdown=Shutdown())
    assert run.resumed_after == "fetch" and ran == ["fetch", "review", "post"]


async def test_sigterm_is_the_stop_request(kit):
    ran: list[str] = []
    async with graceful_shutdown(deadline=5) as stop:
        with pytest.raises(WorkflowStopped):
            await run_workflow(
                kit, "stop-2", make_steps(ran, lambda: os.kill(os.getpid(), signal.SIGTERM)), shutdown=stop
            )
    assert stop.reason == "SIGTERM" and ran == ["fetch"]
    assert (await kit.latest_checkpoint("stop-2"))["metadata"]["step"] == "fetch"


async def test_a_step_outliving_the_deadline_is_cut_off_and_runs_again(kit):
    stop = Shutdown(deadline=0.05)
    ran: list[str] = []

    async def fetch(ctx):
        ran.append("fetch")
        return 1

    async def stuck(ctx):
        ran.append("stuck")
        stop.request()
        await asyncio.sleep(30)

    with pytest.raises(WorkflowStopped) as info:
        await run_workflow(kit, "stop-3", [fetch, stuck], shutdown=stop)
    assert info.value.interrupted == "stuck" and info.value.next == "stuck" and info.value.after == "fetch"
    assert (await kit.latest_checkpoint("stop-3"))["metadata"]["step"] == "fetch"


async def test_a_stop_during_the_last_step_completes_the_run(kit):
    stop = Shutdown()

    async def only(ctx):
        stop.request()
        return "done"

    run = await run_workflow(kit, "stop-4", [only], shutdown=stop)
    assert run.result == "done"
