"""workflow_kit.patterns: sequential chain; fan-out/fan-in with per-branch timeouts and partial results; routing
from the history of similar tasks in memory with a default route; self-improvement capped at 3 attempts,
switching strategy after 2 failures, then escalating. In-process service, fake embedder (word overlap)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from workflow_kit import (
    Agent,
    AllFailed,
    AttemptsExhausted,
    Autonomy,
    CircuitBreaker,
    MemoryClient,
    Metrics,
    Router,
    WorkflowPaused,
    fan_out,
    run_workflow,
    self_improve,
    sequential,
)
from workflow_kit.autonomy import escalations
from workflow_kit.patterns import Attempt


@pytest.fixture
async def kit(app):
    async with MemoryClient("http://memory-spine", transport=httpx.ASGITransport(app=app), retries=0) as c:
        yield c


# -- sequential ----------------------------------------------------------------------------------------------


async def test_sequential_feeds_each_output_to_the_next_stage():
    async def parse(text):
        return text.split()

    def count(words):
        return len(words)

    async def double(n):
        return n * 2

    assert await sequential([parse, count, ("double", double)], "a b c") == 6


async def test_sequential_stops_at_a_failing_stage_and_names_it():
    later = []

    def bad(x):
        raise ValueError("cannot parse")

    with pytest.raises(ValueError) as info:
        await sequential([lambda x: x, ("parse", bad), later.append], "in", name="review")
    assert later == []
    assert "in stage 1 ('parse') of sequential 'review'" in info.value.__notes__


# -- parallel fan-out / fan-in -------------------------------------------------------------------------------


async def test_fan_out_returns_partial_results_and_why_each_branch_failed():
    async def security(diff):
        return {"issues": ["sql injection"]}

    async def style(diff):
        await asyncio.sleep(10)  # hangs: its branch budget ends it

    async def logic(diff):
        raise RuntimeError("model returned garbage")

    started = asyncio.get_running_loop().time()
    out = await fan_out({"security": security, "style": style, "logic": logic}, "+1 -1", timeout=0.1)
    assert asyncio.get_running_loop().time() - started < 2
    assert out.results == {"security": {"issues": ["sql injection"]}}
    assert out.failed["style"].kind == "timeout" and "branch style" in out.failed["style"].error
    assert out.failed["logic"].kind == "error" and out.failed["logic"].error == "RuntimeError: model returned garbage"
    assert out.partial and not out.ok
    assert out.to_dict()["failed"]["style"]["kind"] == "timeout"  # JSON, ready to checkpoint


async def test_per_branch_timeouts_required_count_and_rejections():
    async def slowish(x):
        await asyncio.sleep(0.1)
        return "slow ok"

    async def fast(x):
        return "fast"

    out = await fan_out({"slow": slowish, "fast": fast}, 1, timeout=0.02, timeouts={"slow": 2.0})
    assert out.ok and out.results == {"slow": "slow ok", "fast": "fast"}

    breaker = CircuitBreaker("down", failure_threshold=1, metrics=Metrics())
    breaker.failure(RuntimeError("x"))
    rejected = Agent("down", fast, breaker=breaker, metrics=Metrics())
    out = await fan_out({"down": rejected, "fast": fast}, 1)
    assert out.failed["down"].kind == "rejected"

    async def broken(x):
        raise RuntimeError("no")

    with pytest.raises(AllFailed):
        await fan_out({"a": broken, "b": fast}, 1, required=2)


async def test_fan_out_inside_a_step_checkpoints_the_partial_result(kit):
    async def ok(diff):
        return "fine"

    async def hang(diff):
        await asyncio.sleep(10)

    async def review(ctx):
        return (await fan_out({"ok": ok, "hang": hang}, "d", timeout=0.05)).to_dict()

    run = await run_workflow(kit, "fan-1", [review], trace=False)
    stored = (await kit.latest_checkpoint("fan-1"))["metadata"]["result"]
    assert (
        stored == run.result and stored["results"] == {"ok": "fine"} and stored["failed"]["hang"]["kind"] == "timeout"
    )


# -- conditional routing -------------------------------------------------------------------------------------


async def test_the_router_follows_the_history_of_similar_tasks_with_a_default(kit):
    calls = []

    def agent(name):
        async def run(task):
            calls.append(name)
            return name

        return run

    router = Router(kit, {"sql-expert": agent("sql-expert"), "generalist": agent("generalist")}, default="generalist")
    # No history yet: the default route.
    first = await router.choose("slow sql query on the orders database")
    assert (first.agent, first.why) == ("generalist", "default")

    await router.record("sql query on the users database times out", "sql-expert", True)
    await router.record("sql query on the billing database is slow", "sql-expert", True)
    await router.record("sql query on the orders database deadlocks", "generalist", False)
    await router.record("write release notes for the mobile app", "generalist", True)

    route = await router.choose("slow sql query on the orders database")
    assert route.agent == "sql-expert" and route.why == "history"
    assert route.votes["sql-expert"] > 0 > route.votes.get("generalist", -1)
    assert {e["agent"] for e in route.evidence} >= {"sql-expert"}

    unrelated = await router.choose("plan team offsite during spring")  # no word in common
    assert unrelated.agent == "generalist" and unrelated.why == "default"

    # run() calls the chosen agent and remembers how it went.
    assert await router.run("sql query on the audit database is slow") == "sql-expert"
    hits = (await kit.kit.search("audit database", tags_all=["routing", "router:router"], limit=1))["results"]
    assert hits[0]["metadata"] == {"router": "router", "agent": "sql-expert", "success": True, "detail": None}


async def test_the_router_takes_the_default_route_when_memory_is_out(app, caplog):
    class Down(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request):
            raise httpx.ConnectError("refused", request=request)

    async with MemoryClient("http://memory-spine", transport=Down(), retries=0) as down:
        router = Router(down, {"a": lambda t: "a", "b": lambda t: "b"}, default="b")
        route = await router.choose("anything")
    assert route.agent == "b" and route.why == "default"
    assert any("failed soft" in r.getMessage() for r in caplog.records)


def test_the_default_route_must_exist(kit):
    with pytest.raises(Exception, match="not one of the routes"):
        Router(kit, {"a": print}, default="b")


# -- recursive self-improvement ------------------------------------------------------------------------------


async def test_self_improve_retries_with_feedback_until_accepted():
    seen: list[Attempt] = []

    async def generate(attempt: Attempt) -> str:
        seen.append(attempt)
        return "v2" if attempt.feedback else "v1"

    async def evaluate(code: str):
        return (code == "v2", "test_add fails")

    done = await self_improve(generate, evaluate)
    assert (done.result, done.attempts, done.strategy) == ("v2", 2, "primary")
    assert seen[1].feedback == "test_add fails" and seen[1].previous == "v1"


async def test_self_improve_is_capped_at_three_attempts_and_switches_strategy_after_two():
    seen: list[Attempt] = []

    async def generate(attempt: Attempt) -> str:
        seen.append(attempt)
        return f"code-{attempt.number}"

    with pytest.raises(AttemptsExhausted) as info:
        await self_improve(generate, lambda code: (False, f"{code} fails"), strategies=["patch", "rewrite"])
    assert [(a.number, a.strategy) for a in seen] == [(1, "patch"), (2, "patch"), (3, "rewrite")]
    assert seen[2].feedback == "code-2 fails"
    assert [h["accepted"] for h in info.value.attempts] == [False, False, False]


async def test_self_improve_escalates_and_pauses_the_workflow(kit):
    generated = []

    async def generate(attempt):
        generated.append(attempt.strategy)
        if attempt.number == 3:
            raise RuntimeError("generator crashed")  # a crash is a failed attempt too
        return "bad"

    async def improve(ctx):
        return (await self_improve(generate, lambda out: False, name="codegen")).result

    with pytest.raises(WorkflowPaused) as info:
        await run_workflow(kit, "improve-1", [improve], autonomy=Autonomy(), trace=False)
    assert len(generated) == 3  # the cap holds
    esc = info.value.escalation
    assert esc.kind == "repeated_failure" and "codegen: no acceptable result after 3 attempts" in esc.reason
    assert "generator crashed" in esc.reason
    stored = [r["metadata"] for r in await escalations(kit, "improve-1")]
    assert stored[0]["status"] == "open" and len(stored[0]["detail"]["attempts"]) == 3
