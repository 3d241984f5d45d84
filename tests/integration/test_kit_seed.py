"""The seed's own snippets (seed_snippets.py, verbatim; only MEMORY_URL rebound) and the kit on the same
real memory-spine process: checkpoints, dedup records, traces.

The seed's records land in, and are found in, `default`; the kit keeps its own in `_kit/default`, so a user's
search never meets them (issue 18's "chocolate cake recipe" story), and still honours the seed's (or a version
from before namespaces) checkpoints and dedup records found in `default`."""

from __future__ import annotations

import importlib.util
import json
import types
from pathlib import Path

import pytest

from workflow_kit import MemoryClient, idempotent, record, run_workflow, span

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One real service for the module (its tests use distinct ids): a process start is most of a test's time."""
    from tests.conftest import ServerProcess

    srv = ServerProcess(tmp_path_factory.mktemp("kit-server") / "data").start()
    yield srv
    srv.stop()


SEED = Path(__file__).parent / "seed_snippets.py"  # loaded as a module of its own, so rebinding is local


def load_seed(url: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("seed_snippets_live", SEED)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.MEMORY_URL = url
    return module


async def test_checkpoints_interoperate(server):
    seed = load_seed(server.url)
    runs: list[str] = []

    async def fetch():
        runs.append("fetch")
        return "diff"

    async def review():
        runs.append("review")
        if runs.count("review") == 1:
            raise RuntimeError("crash")
        return "lgtm"

    async def post():
        runs.append("post")
        return "posted"

    with pytest.raises(RuntimeError):
        await seed.run_workflow("wf-seed", [fetch, review, post])
    with pytest.raises(ValueError):  # the seed's resume: steps.index("fetch") on a list of functions
        await seed.run_workflow("wf-seed", [fetch, review, post])

    async with MemoryClient(server.url) as client:
        assert (await client.latest_checkpoint("wf-seed"))["metadata"] == {
            "workflow_id": "wf-seed",
            "step": "fetch",
            "result": "diff",
        }
        run = await run_workflow(client, "wf-seed", [fetch, review, post])
    assert run.resumed_after == "fetch" and run.outputs == {"fetch": "diff", "review": "lgtm", "post": "posted"}
    assert runs == ["fetch", "review", "review", "post"]
    # The kit's checkpoints are in `_kit/default`: the seed (reading `default`) still sees only its own.
    assert (await seed.resume_from_checkpoint("wf-seed"))["step"] == "fetch"
    async with MemoryClient(server.url) as client:
        last = await client.latest_checkpoint("wf-seed")
        assert last["metadata"]["step"] == "post" and last["namespace"] == "_kit/default"
        await run_workflow(client, "wf-seed-2", [("only", lambda: 1)])
        assert (await client.latest_checkpoint("wf-seed-2"))["metadata"]["step"] == "only"
    assert await seed.resume_from_checkpoint("wf-seed-2") is None


async def test_dedup_records_interoperate(server):
    seed = load_seed(server.url)
    calls: list[str] = []

    def doer(who):
        async def execute(params):
            calls.append(who)
            return {"by": who, **params}

        return execute

    async with MemoryClient(server.url) as client:
        # The seed's dedup record (in `default`) is honoured by the kit ...
        assert await seed.idempotent_action("notify", {"to": "#ops"}, doer("seed")) == {"by": "seed", "to": "#ops"}
        assert await idempotent(client, "notify", {"to": "#ops"}, doer("kit")) == {"by": "seed", "to": "#ops"}
        # ... and the kit's own (in `_kit/default`) is out of `default`, where the seed's code looks.
        assert await idempotent(client, "open_issue", {"t": "x"}, doer("kit")) == {"by": "kit", "t": "x"}
        assert await idempotent(client, "open_issue", {"t": "x"}, doer("kit")) == {"by": "kit", "t": "x"}
    assert calls == ["seed", "kit"]


def seed_reader(trace: dict) -> list[str]:
    """What a reader of the seed's traces does: walk spans by agent, status and duration."""
    return [
        f"{s['agent']}:{s['status']}:{int(s['duration_ms']) >= 0}:{s.get('result_summary', '')}" for s in trace["spans"]
    ]


async def test_traces_have_the_seeds_shape(server):
    seed = load_seed(server.url)
    trace = seed.create_trace("code-review-pipeline")
    seed.complete_span(seed.trace_agent(trace, "security-auditor"), "Found 2 issues", status="ok")

    async def audit(ctx):
        with span("security-auditor", kind="agent", inputs={"diff": "..."}):
            record(outputs="Found 2 issues", reasoning="two string-built SQL queries")
        return "Found 2 issues"

    async with MemoryClient(server.url) as client:
        # The seed's way of storing a trace, next to the kit's.
        await client.ingest(json.dumps(trace), tags=["trace", "audit"])
        run = await run_workflow(client, "review-9", [audit], name="code-review-pipeline")
        stored = json.loads((await client.kit.get_key(f"trace:{run.trace_id}"))["content"])
        seeds = [json.loads(m["content"]) for m in (await client.list(tags=["trace"], limit=100))["results"]]
        kits = [json.loads(m["content"]) for m in (await client.kit.list(tags=["trace"], limit=100))["results"]]
    assert trace["trace_id"] in {t["trace_id"] for t in seeds}  # the seed's, in `default`
    assert run.trace_id in {t["trace_id"] for t in kits} and run.trace_id not in {t["trace_id"] for t in seeds}
    assert set(trace) <= set(stored)  # trace_id, workflow, started_at, spans
    assert set(trace["spans"][0]) <= set(stored["spans"][0])  # agent, trace_id, start, end, status, ...
    assert "security-auditor:ok:True:Found 2 issues" in seed_reader(stored)
    assert seed_reader(trace) == ["security-auditor:ok:True:Found 2 issues"]


async def test_a_users_search_never_meets_the_kits_records(server):
    """Issue 18's story: after a kit workflow (checkpoints, dedup, run record, trace), a default search for
    "chocolate cake recipe" returns the user's recipe and nothing of the kit's; stats count only the user's."""

    async def bake(ctx):
        await idempotent(ctx.client, "preheat", {"oven": 180}, lambda p: {"ok": True})
        with span("baker", kind="agent", inputs={"recipe": "chocolate cake"}):
            record(outputs="cake baked", reasoning="the chocolate cake recipe said 180 degrees")
        return "cake"

    async with MemoryClient(server.url, namespace="bakery") as client:
        await client.ingest("Chocolate cake recipe: 200 g dark chocolate, 4 eggs, 180 degrees for 35 minutes")
        run = await run_workflow(client, "cake-1", [("bake", bake)], name="chocolate-cake-recipe")
        assert run.ran == ["bake"] and run.trace_id
        hits = (await client.search("chocolate cake recipe", limit=20))["results"]
        assert [h["namespace"] for h in hits] == ["bakery"] and hits[0]["content"].startswith("Chocolate cake")
        kit_hits = (await client.kit.search("chocolate cake recipe", limit=20))["results"]
        assert kit_hits and {h["namespace"] for h in kit_hits} == {"_kit/bakery"}
        assert {t for h in kit_hits for t in h["tags"]} & {"checkpoint", "trace", "dedup", "run"}
        stats = await client.stats()
        assert stats["namespace"] == "bakery" and stats["total_memories"] == 1
        assert set(stats["tags"]) == set(), stats["tags"]
        assert stats["namespaces"]["_kit/bakery"] >= 3
