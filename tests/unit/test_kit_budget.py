"""workflow_kit.budget: timeout budgets per call, step and workflow; the remaining budget flows to nested code
and tasks; the block whose budget ran out is the one named. In-process service for the workflow cases."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from workflow_kit import DeadlineExceeded, MemoryClient, deadline, remaining, run_workflow


@pytest.fixture
async def kit(app):
    async with MemoryClient("http://memory-spine", transport=httpx.ASGITransport(app=app)) as c:
        yield c


async def test_a_budget_that_runs_out_raises_deadline_exceeded_naming_it():
    with pytest.raises(DeadlineExceeded) as info:
        async with deadline(0.05, name="agent security"):
            await asyncio.sleep(5)
    assert info.value.name == "agent security" and info.value.seconds == 0.05
    assert isinstance(info.value, TimeoutError)  # code catching TimeoutError keeps working


async def test_the_remaining_budget_flows_to_nested_calls_and_tasks():
    assert remaining() is None
    async with deadline(10, name="workflow"):
        outer = remaining()
        assert 9.5 < outer <= 10
        async with deadline(60, name="step"):  # asks for more than is left: the workflow's budget still rules
            assert remaining() <= outer

            async def child() -> float | None:
                return remaining()

            assert 0 < await asyncio.create_task(child()) <= 10
        async with deadline(0.5, name="call"):
            assert remaining() <= 0.5
    assert remaining() is None


async def test_an_outer_budget_is_reported_by_the_outer_block():
    with pytest.raises(DeadlineExceeded) as info:
        async with deadline(0.05, name="workflow wf"):
            async with deadline(30, name="step slow"):
                await asyncio.sleep(5)
    assert info.value.name == "workflow wf"


async def test_an_inner_budget_running_out_leaves_the_outer_one_running():
    async with deadline(5, name="workflow"):
        with pytest.raises(DeadlineExceeded, match="branch b"):
            async with deadline(0.02, name="branch b"):
                await asyncio.sleep(1)
        assert remaining() > 4  # the outer budget goes on


async def test_no_budget_and_negative_budgets():
    async with deadline(None):
        assert remaining() is None
    with pytest.raises(Exception, match="must be >= 0"):
        async with deadline(-1):
            pass


async def test_step_and_workflow_budgets_in_run_workflow(kit):
    ran = []

    async def quick(ctx):
        ran.append("quick")
        assert remaining() is not None and remaining() <= 0.5
        return 1

    async def slow(ctx):
        ran.append("slow")
        await asyncio.sleep(5)

    with pytest.raises(DeadlineExceeded, match="step slow"):
        await run_workflow(kit, "budget-1", [quick, slow], step_timeout=0.5, trace=False)
    assert (await kit.latest_checkpoint("budget-1"))["metadata"]["step"] == "quick"  # slow not checkpointed

    with pytest.raises(DeadlineExceeded, match="workflow budget-2"):
        await run_workflow(kit, "budget-2", [quick, slow], timeout=0.3, step_timeout=10, trace=False)
