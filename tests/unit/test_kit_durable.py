"""workflow_kit.durable: checkpoints, resume by step name, replay, changed steps, JSON-only outputs; the seed's
runner next to ours on the same records. In-process service, fake embedder."""

from __future__ import annotations

import datetime
import importlib.util
import pathlib
import types

import httpx
import pytest

from workflow_kit import MemoryClient, NotJSON, Workflow, WorkflowChanged, run_workflow, step
from workflow_kit.errors import ClaimTimeout, InvalidInput, NotFound

SEED = pathlib.Path(__file__).parents[1] / "integration" / "seed_snippets.py"


@pytest.fixture
def transport(app):
    return httpx.ASGITransport(app=app)


@pytest.fixture
async def client(transport):
    async with MemoryClient("http://memory-spine", transport=transport) as c:
        yield c


def load_seed(transport: httpx.ASGITransport) -> types.ModuleType:
    """The seed's snippets, with `httpx.AsyncClient()` sent to the in-process app."""
    spec = importlib.util.spec_from_file_location("seed_snippets_unit", SEED)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.httpx = types.SimpleNamespace(AsyncClient=lambda: httpx.AsyncClient(transport=transport))
    return module


class Steps:
    """Three steps that count their runs and can be told to fail once."""

    def __init__(self) -> None:
        self.runs: list[str] = []
        self.fail: set[str] = set()

    async def fetch(self, ctx):
        self.runs.append("fetch")
        ctx.state["pr"] = 42
        return {"diff": "+1 -1"}

    async def review(self, ctx):
        self.runs.append("review")
        if "review" in self.fail:
            self.fail.discard("review")
            raise RuntimeError("model timed out")
        return {"ok": True, "saw": ctx.outputs["fetch"]["diff"], "pr": ctx.state["pr"]}

    async def post(self, ctx):
        self.runs.append("post")
        return f"commented on {ctx.state['pr']}: {ctx.outputs['review']['ok']}"

    def list(self):
        return [self.fetch, self.review, self.post]


async def test_runs_every_step_and_checkpoints_each(client):
    s = Steps()
    run = await run_workflow(client, "wf-1", s.list())
    assert s.runs == ["fetch", "review", "post"]
    assert run.ran == ["fetch", "review", "post"] and not run.replayed
    assert run.result == "commented on 42: True"
    assert run.outputs["review"] == {"ok": True, "saw": "+1 -1", "pr": 42}
    for name in ("fetch", "review"):
        rec = await client.latest_checkpoint("wf-1", name)
        assert rec["content"] == f"checkpoint:wf-1:{name}"
        assert rec["tags"] == ["checkpoint", "workflow", "wf-1"]
        assert rec["metadata"]["status"] == "running"
        assert rec["metadata"]["result"] == run.outputs[name]
    last = (await client.latest_checkpoint("wf-1"))["metadata"]
    assert last["step"] == "post" and last["status"] == "completed"
    assert last["steps"] == ["fetch", "review", "post"] and last["state"] == {"pr": 42}
    assert last["trace_id"] == run.trace_id


async def test_a_failed_step_resumes_there_with_outputs_and_state_restored(client):
    s = Steps()
    s.fail.add("review")
    with pytest.raises(RuntimeError, match="model timed out"):
        await run_workflow(client, "wf-2", s.list())
    assert s.runs == ["fetch", "review"]
    assert (await client.latest_checkpoint("wf-2"))["metadata"]["step"] == "fetch"

    s2 = Steps()  # a new process: nothing in memory but the checkpoints
    run = await run_workflow(client, "wf-2", s2.list())
    assert s2.runs == ["review", "post"]  # fetch is not re-run
    assert run.resumed_after == "fetch" and run.ran == ["review", "post"]
    assert run.outputs["review"]["pr"] == 42  # state came back from the checkpoint
    assert run.result == "commented on 42: True"


async def test_a_completed_workflow_returns_its_result_without_running(client):
    await run_workflow(client, "wf-3", Steps().list())
    s = Steps()
    run = await run_workflow(client, "wf-3", s.list())
    assert s.runs == [] and run.replayed and run.ran == []
    assert run.result == "commented on 42: True" and run.outputs["fetch"] == {"diff": "+1 -1"}


@pytest.mark.parametrize(
    "change",
    [
        lambda s: [s.fetch, s.post, s.review],  # reordered
        lambda s: [s.fetch, s.review],  # shortened
        lambda s: [s.fetch, s.review, s.post, ("notify", s.post)],  # extended
        lambda s: [("download", s.fetch), s.review, s.post],  # renamed
    ],
)
async def test_a_changed_step_list_is_reported_not_misresumed(client, change):
    s = Steps()
    s.fail.add("review")
    with pytest.raises(RuntimeError):
        await run_workflow(client, "wf-4", s.list())
    s.runs.clear()
    with pytest.raises(WorkflowChanged, match="wf-4") as info:
        await run_workflow(client, "wf-4", change(s))
    assert info.value.stored == ["fetch", "review", "post"]
    assert s.runs == []


async def test_a_non_json_output_names_the_step_and_is_not_checkpointed(client):
    async def fetch():
        return {"at": datetime.datetime(2026, 1, 1)}

    with pytest.raises(NotJSON, match="output of step 'fetch'"):
        await run_workflow(client, "wf-5", [fetch])
    assert await client.latest_checkpoint("wf-5") is None

    async def leaky(ctx):
        ctx.state["seen"] = {1, 2}
        return 1

    with pytest.raises(NotJSON, match="state after step 'leaky'"):
        await run_workflow(client, "wf-5b", [leaky])


async def test_an_output_over_the_services_cap_names_the_step(client):
    async def small():
        return "s"

    async def huge():
        return "x" * 100_000

    with pytest.raises(InvalidInput, match="checkpoint of step 'huge'"):
        await run_workflow(client, "wf-big", [small, huge])
    # Outputs are stored one per record, so many mid-sized outputs do not add up against the cap.
    steps = [(f"s{i}", lambda: "y" * 30_000) for i in range(4)]
    run = await run_workflow(client, "wf-many", steps)
    assert len(run.outputs) == 4


async def test_outputs_look_the_same_fresh_and_resumed(client):
    async def first():
        return {"pair": (1, 2), 3: "int key"}

    seen = []

    async def second(ctx):
        seen.append(ctx.outputs["first"])
        if len(seen) == 1:
            raise RuntimeError("once")
        return "done"

    with pytest.raises(RuntimeError):
        await run_workflow(client, "wf-6", [first, second])
    await run_workflow(client, "wf-6", [first, second])
    assert seen[0] == seen[1] == {"pair": [1, 2], "3": "int key"}


async def test_step_names_sync_steps_and_the_workflow_class(client):
    wf = Workflow("release")

    @wf.step
    def plan():
        return ["build", "ship"]

    @wf.step(name="ship-it")
    async def ship(ctx):
        return {"shipped": ctx.outputs["plan"], "step": ctx.step, "index": ctx.index}

    run = await wf.run(client, "rel-1")
    assert run.result == {"shipped": ["build", "ship"], "step": "ship-it", "index": 1}

    @step("named")
    async def anon():
        return 1

    run = await run_workflow(client, "wf-7", [anon, ("other", lambda: 2)])
    assert run.outputs == {"named": 1, "other": 2}

    with pytest.raises(InvalidInput, match="unique"):
        await run_workflow(client, "wf-8", [lambda: 1, lambda: 2])
    with pytest.raises(InvalidInput, match="workflow_id"):
        await run_workflow(client, "has space", [anon])
    with pytest.raises(InvalidInput, match="at least one"):
        await run_workflow(client, "wf-9", [])


async def test_the_seeds_resume_breaks_on_named_steps_and_ours_does_not(client, transport):
    """The seed's run_workflow calls steps.index(last["step"]) on a list of functions: a ValueError on every
    resume. The same steps, the same records, resumed by the kit."""
    seed = load_seed(transport)
    runs = []

    async def fetch():
        runs.append("fetch")
        return "diff"

    async def review():
        runs.append("review")
        if runs.count("review") == 1:
            raise RuntimeError("crash")
        return "lgtm"

    with pytest.raises(RuntimeError):
        await seed.run_workflow("seed-1", [fetch, review])  # writes the seed's checkpoint for fetch
    assert (await seed.resume_from_checkpoint("seed-1"))["step"] == "fetch"
    with pytest.raises(ValueError, match="is not in list"):
        await seed.run_workflow("seed-1", [fetch, review])  # the seed cannot resume its own workflow

    run = await run_workflow(client, "seed-1", [fetch, review])  # the kit can, from the seed's records
    assert runs == ["fetch", "review", "review"]
    assert run.outputs == {"fetch": "diff", "review": "lgtm"} and run.resumed_after == "fetch"
    # The kit's own checkpoints go to `_kit/default`, out of the seed's (a user's) searches of `default`.
    assert (await seed.resume_from_checkpoint("seed-1"))["step"] == "fetch"
    assert (await client.latest_checkpoint("seed-1"))["metadata"]["step"] == "review"


async def test_parallel_workflows_keep_their_own_outputs(client):
    import asyncio

    def make(tag):
        async def a():
            await asyncio.sleep(0)
            return tag

        async def b(ctx):
            await asyncio.sleep(0)
            return ctx.outputs["a"] * 2

        return [a, b]

    runs = await asyncio.gather(*(run_workflow(client, f"par-{i}", make(str(i))) for i in range(5)))
    assert [r.result for r in runs] == [str(i) * 2 for i in range(5)]


async def test_two_runs_of_one_id_run_each_step_once(client):
    import asyncio

    runs = []
    inside = asyncio.Event()

    async def slow(ctx):
        runs.append("slow")
        inside.set()
        await asyncio.sleep(0.2)
        return "done"

    first = asyncio.create_task(run_workflow(client, "wf-lock", [slow], holder="w1"))
    await inside.wait()
    second = await run_workflow(client, "wf-lock", [slow], holder="w2")
    first = await first
    assert runs == ["slow"]
    assert first.ran == ["slow"] and second.replayed and second.result == first.result == "done"
    with pytest.raises(NotFound):  # released
        await client.kit.get_claim("workflow:wf-lock")


async def test_a_crashed_runs_lease_is_waited_out_even_under_the_same_holder_name(client):
    import time

    async def work():
        return 1

    await client.kit.claim("workflow:wf-dead", holder="dead", lease_seconds=0.3)
    started = time.monotonic()
    assert (await run_workflow(client, "wf-dead", [work])).ran == ["work"]
    assert time.monotonic() - started >= 0.25

    # "Our" crash: the holder's name is no credential (anyone can read it), so it waits the lease out too.
    await client.kit.claim("workflow:wf-mine", holder="worker-1", lease_seconds=0.3)
    started = time.monotonic()
    assert (await run_workflow(client, "wf-mine", [work], holder="worker-1")).ran == ["work"]
    assert time.monotonic() - started >= 0.25

    await client.kit.claim("workflow:wf-busy", holder="other", lease_seconds=60)
    with pytest.raises(ClaimTimeout, match="other"):
        await run_workflow(client, "wf-busy", [work], wait_timeout=0.1)
    assert (await run_workflow(client, "wf-busy", [work], lease_seconds=None)).ran == ["work"]
