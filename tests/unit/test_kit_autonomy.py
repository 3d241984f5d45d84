"""workflow_kit.autonomy: scope (actions, tools, paths) raises and is traced; the budget ceiling (tokens, cost,
steps, wall clock on a fake clock) checkpoints and stops with BudgetExceeded; escalation on a scope or budget
event, low confidence or repeated failure stores an `escalation` memory and pauses until a person resumes.
In-process service, fake embedder."""

from __future__ import annotations

import httpx
import pytest

from workflow_kit import (
    Agent,
    Autonomy,
    BudgetExceeded,
    Ceiling,
    Escalation,
    MemoryClient,
    Scope,
    ScopeViolation,
    WorkflowPaused,
    charge,
    check_scope,
    confidence,
    idempotent,
    resume,
    run_workflow,
)
from workflow_kit.autonomy import escalations


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def kit(app):
    async with MemoryClient("http://memory-spine", transport=httpx.ASGITransport(app=app)) as c:
        yield c


async def open_escalations(kit, wf):
    return [r["metadata"] for r in await escalations(kit, wf) if r["metadata"]["status"] == "open"]


# -- scope ---------------------------------------------------------------------------------------------------


def test_scope_allows_listed_actions_tools_and_paths_only():
    scope = Scope(actions={"post_review"}, tools={"security", "style"}, paths={"src/*.py", "docs/**"})
    scope.check(action="post_review", tool="style", path="src/app.py")
    scope.check(path="docs/api/index.md")
    for kwargs in (
        {"action": "delete_branch"},
        {"tool": "shell"},
        {"path": "secrets/.env"},
        {"path": "src/../secrets/key.py"},  # resolved before matching
        {"path": "../src/app.py"},
    ):
        with pytest.raises(ScopeViolation):
            scope.check(**kwargs)
    assert Scope().allows("tool", "anything")  # None: unrestricted
    assert not Scope(tools=()).allows("tool", "anything")  # empty: nothing


async def test_a_scope_violation_raises_is_traced_escalates_and_pauses(kit):
    attempts = {"n": 0}

    async def fetch(ctx):
        return {"diff": "+1"}

    async def act(ctx):
        attempts["n"] += 1
        action = "delete_branch" if attempts["n"] == 1 else "post_review"
        return await idempotent(ctx.client, action, {"wf": ctx.workflow_id}, lambda p: "done")

    guard = Autonomy(scope=Scope(actions={"post_review"}))
    with pytest.raises(ScopeViolation) as info:
        await run_workflow(kit, "scope-1", [fetch, act], autonomy=guard)
    assert info.value.kind == "action" and info.value.value == "delete_branch"
    assert isinstance(info.value.escalation, Escalation) and info.value.escalation.kind == "scope"
    [esc] = await open_escalations(kit, "scope-1")
    assert esc["kind"] == "scope" and esc["step"] == "act" and "delete_branch" in esc["reason"]
    record = await kit.kit.get_key(info.value.escalation.key)
    assert record["tags"] == ["escalation", "scope", "scope-1"]

    # Traced: the stored trace of that run has the violation as an event on the step's span.
    import json

    trace_id = esc["trace_id"]
    trace = json.loads((await kit.kit.get_key(f"trace:{trace_id}"))["content"])
    step = next(s for s in trace["spans"] if s["name"] == "step act")
    assert "autonomy.scope_violation" in [e["name"] for e in step["events"]]
    assert step["status"] == "error"

    # Paused: nothing runs until a person resumes.
    with pytest.raises(WorkflowPaused, match="paused for a person"):
        await run_workflow(kit, "scope-1", [fetch, act], autonomy=guard)
    assert attempts["n"] == 1
    assert await resume(kit, "scope-1", note="wrong action, fixed", by="alice") == 1
    run = await run_workflow(kit, "scope-1", [fetch, act], autonomy=guard)
    assert run.result == "done" and run.ran == ["act"]
    assert await open_escalations(kit, "scope-1") == []


async def test_agents_check_their_tool_against_the_scope(kit):
    shell = Agent("shell", lambda cmd: "ran " + cmd)

    async def step_one(ctx):
        check_scope(path="src/main.py")  # allowed
        return await shell("rm -rf /")

    with pytest.raises(ScopeViolation, match="tool 'shell'"):
        await run_workflow(kit, "scope-2", [step_one], autonomy=Autonomy(scope=Scope(tools={"security"})), trace=False)


# -- budget ceiling ------------------------------------------------------------------------------------------


async def test_reaching_the_token_ceiling_checkpoints_stops_and_resumes_with_usage_restored(kit):
    spend = Agent("llm", lambda tokens: charge(tokens=tokens, cost=tokens / 100_000))
    ran = []

    async def plan(ctx):
        ran.append("plan")
        await spend(600)
        return "plan"

    async def code(ctx):
        ran.append("code")
        await spend(600)  # 1200 > 1000: stops here
        return "code"

    small = Autonomy(ceiling=Ceiling(tokens=1000))
    with pytest.raises(BudgetExceeded) as info:
        await run_workflow(kit, "budget-1", [plan, code], autonomy=small, trace=False)
    assert (info.value.resource, info.value.used, info.value.limit) == ("tokens", 1200, 1000)
    assert "budget ceiling reached: tokens 1200 of 1000" in str(info.value)
    last = (await kit.latest_checkpoint("budget-1"))["metadata"]
    assert last["step"] == "plan" and last["usage"]["tokens"] == 600 and last["usage"]["steps"] == 1
    [esc] = await open_escalations(kit, "budget-1")
    assert esc["kind"] == "budget" and esc["usage"]["tokens"] == 1200

    with pytest.raises(WorkflowPaused):
        await run_workflow(kit, "budget-1", [plan, code], autonomy=small, trace=False)
    await resume(kit, "budget-1", note="raise the ceiling")
    run = await run_workflow(
        kit, "budget-1", [plan, code], autonomy=Autonomy(ceiling=Ceiling(tokens=5000)), trace=False
    )
    assert ran == ["plan", "code", "code"] and run.ran == ["code"]
    assert run.usage["tokens"] == 1800 and run.usage["steps"] == 3  # counted across runs


async def test_steps_and_cost_ceilings(kit):
    agent = Agent("a", lambda: charge(cost=0.2))

    async def busy(ctx):
        for _ in range(5):
            await agent()

    with pytest.raises(BudgetExceeded) as info:
        await run_workflow(kit, "budget-2", [busy], autonomy=Autonomy(ceiling=Ceiling(steps=3)), trace=False)
    assert info.value.resource == "steps" and info.value.used == 4
    with pytest.raises(BudgetExceeded) as info:
        await run_workflow(kit, "budget-3", [busy], autonomy=Autonomy(ceiling=Ceiling(cost=0.5)), trace=False)
    assert info.value.resource == "cost" and info.value.used == pytest.approx(0.6)


async def test_the_wall_clock_ceiling_stops_at_the_next_step_boundary(kit):
    clock = Clock()
    ran = []

    async def long(ctx):
        ran.append("long")
        clock.now += 301  # five minutes pass (on the fake clock)
        return 1

    async def more(ctx):
        ran.append("more")
        return 2

    guard = Autonomy(ceiling=Ceiling(seconds=300), clock=clock)
    with pytest.raises(BudgetExceeded) as info:
        await run_workflow(kit, "budget-4", [long, more], autonomy=guard, trace=False)
    assert info.value.resource == "seconds" and ran == ["long"]
    assert (await kit.latest_checkpoint("budget-4"))["metadata"]["step"] == "long"  # checkpointed, then stopped


# -- escalation ----------------------------------------------------------------------------------------------


async def test_low_confidence_escalates_pauses_and_a_resolved_escalation_lets_the_step_go_on(kit):
    runs = []

    async def judge(ctx):
        runs.append("judge")
        await confidence(0.4, reason="diff touches auth", agent="logic")
        return "verdict"

    guard = Autonomy(min_confidence=0.6)
    with pytest.raises(WorkflowPaused) as info:
        await run_workflow(kit, "conf-1", [judge], autonomy=guard, trace=False)
    esc = info.value.escalation
    assert esc.kind == "low_confidence" and esc.step == "judge" and esc.detail["confidence"] == 0.4
    assert "logic: confidence 0.40 under 0.60: diff touches auth" == esc.reason
    assert await kit.latest_checkpoint("conf-1") is None

    await resume(kit, "conf-1", note="looked at it: fine", by="bob")
    resolved = (await escalations(kit, "conf-1"))[0]["metadata"]
    assert resolved["status"] == "resolved" and resolved["resolved_by"] == "bob"
    run = await run_workflow(kit, "conf-1", [judge], autonomy=guard, trace=False)
    assert run.result == "verdict" and runs == ["judge", "judge"]


async def test_a_custom_handler_sees_the_escalation_and_may_let_the_run_go_on(kit):
    seen: list[Escalation] = []

    async def handler(esc: Escalation) -> bool:
        seen.append(esc)
        return True

    async def judge(ctx):
        return await confidence(0.1)

    run = await run_workflow(kit, "conf-2", [judge], autonomy=Autonomy(min_confidence=0.5, escalate=handler))
    assert run.result == 0.1 and [e.kind for e in seen] == ["low_confidence"]
    assert seen[0].workflow_id == "conf-2" and seen[0].trace_id == run.trace_id
    assert await escalations(kit, "conf-2") == []  # the custom handler stored nothing


async def test_repeated_failure_of_an_agent_escalates(kit):
    calls = []

    def flaky():
        calls.append(1)
        raise ConnectionError("api down")

    api = Agent("api", flaky)

    async def retrying(ctx):
        for _ in range(10):
            try:
                return await api()
            except ConnectionError:
                continue

    with pytest.raises(WorkflowPaused) as info:
        await run_workflow(kit, "fail-1", [retrying], autonomy=Autonomy(max_failures=3), trace=False)
    assert len(calls) == 3  # paused at the third failure in a row, not after ten
    assert info.value.escalation.kind == "repeated_failure"
    assert "agent 'api' failed 3 times in a row" in info.value.escalation.reason
    [esc] = await open_escalations(kit, "fail-1")
    assert esc["detail"]["agent"] == "api"


async def test_outside_a_guarded_workflow_the_helpers_do_nothing():
    check_scope(tool="anything", path="/etc/passwd")
    charge(tokens=10**9)
    assert await confidence(0.0) == 0.0
