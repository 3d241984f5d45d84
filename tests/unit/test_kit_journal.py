"""workflow_kit.journal: with the service down, checkpoints, dedup records, escalations and traces go to a local
journal and the workflow finishes; when the service is back they are flushed in order, once; reads fail soft.
In-process service behind a transport that can be switched off."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from workflow_kit import Journal, MemoryClient, ServiceUnavailable, idempotent, recall, run_workflow


class Switch(httpx.AsyncBaseTransport):
    """The in-process app, or a refused connection while `down`."""

    def __init__(self, app) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.down = False
        self.down_after: int | None = None  # go down after this many more requests
        self.requests: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.down_after is not None:
            self.down_after -= 1
            if self.down_after < 0:
                self.down, self.down_after = True, None
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        self.requests.append(f"{request.method} {request.url.path}")
        return await self.inner.handle_async_request(request)


@pytest.fixture
def switch(app):
    return Switch(app)


@pytest.fixture
async def kit(switch):
    async with MemoryClient("http://memory-spine", transport=switch, retries=0) as c:
        yield c


@pytest.fixture
def journal(tmp_path):
    j = Journal(tmp_path / "journal")
    j.breaker.cooldown = 0  # every write tries the service again: no waiting in tests
    return j


def steps(effects: list[str], switch: Switch | None = None):
    async def fetch(ctx):
        effects.append("fetch")
        return {"diff": "+1 -1"}

    async def review(ctx):
        effects.append("review")
        if switch is not None:
            switch.down = True  # the service dies after the first step
        return {"issues": 0, "saw": ctx.outputs["fetch"]["diff"]}

    async def post(ctx):
        async def do_post(params):
            effects.append("posted")
            return {"comment": 1}

        return await idempotent(ctx.client, "post_review", {"wf": ctx.workflow_id}, do_post)

    return [fetch, review, post]


async def keys(kit, prefix):
    return [r["key"] for r in (await kit.kit.list_keys(prefix))["results"]]


async def test_the_workflow_finishes_on_the_journal_and_flushes_in_order_once(kit, switch, journal, caplog):
    caplog.set_level(logging.WARNING, logger="workflow_kit")
    effects: list[str] = []
    run = await run_workflow(kit, "wf-j1", steps(effects, switch), journal=journal, lease_seconds=None)
    assert run.ran == ["fetch", "review", "post"] and run.result == {"comment": 1}
    assert effects == ["fetch", "review", "posted"]
    assert any("writing to the local journal" in r.getMessage() for r in caplog.records)

    pending = journal.pending("wf-j1")
    kinds = [e["body"]["key"].rsplit(":", 1)[0] for e in pending]
    # The trace so far is stored beside each next step (so it lands anywhere among them); the whole one last.
    assert [k for k in kinds if k != "trace"] == [
        "checkpoint:wf-j1",  # review
        "dedup",
        "checkpoint:wf-j1",  # post
        "run:wf-j1",  # the run record's end (its start went out before)
    ]
    assert kinds[-1] == "trace" and kinds.count("trace") >= 2
    switch.down = False
    assert await keys(kit, "checkpoint:wf-j1:") == ["checkpoint:wf-j1:fetch"]  # only what went out before

    assert await journal.flush(kit) == len(pending)
    assert journal.pending("wf-j1") == []
    # In order: the newest write is the last step.
    assert await keys(kit, "checkpoint:wf-j1:") == [
        "checkpoint:wf-j1:post",
        "checkpoint:wf-j1:review",
        "checkpoint:wf-j1:fetch",
    ]
    assert (await kit.latest_checkpoint("wf-j1"))["metadata"]["status"] == "completed"
    (dedup_key,) = [e["body"]["key"] for e in pending if e["body"]["key"].startswith("dedup:")]
    dedup = (await kit.kit.search(dedup_key, limit=1))["results"]
    assert dedup[0]["metadata"]["result"] == {"comment": 1}  # the seed's dedup lookup, in the kit's namespace
    trace = json.loads((await kit.kit.get_key(f"trace:{run.trace_id}"))["content"])
    assert [s["name"] for s in trace["spans"] if s["kind"] == "step"] == ["step fetch", "step review", "step post"]

    # Idempotent: flushing again (or a stale flushed-mark after a crash) writes nothing new.
    total = (await kit.stats())["total_memories"]
    journal._set_delivered("wf-j1", 0)
    assert await journal.flush(kit, "wf-j1") == len(journal.entries("wf-j1"))
    assert (await kit.stats())["total_memories"] == total

    # And a re-run replays; nothing runs twice.
    again = await run_workflow(kit, "wf-j1", steps(effects), journal=journal)
    assert again.replayed and effects == ["fetch", "review", "posted"]


async def test_a_run_started_while_the_service_is_down_resumes_from_the_journal(kit, switch, journal):
    effects: list[str] = []
    first = steps(effects)

    async def broken(ctx):
        raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        await run_workflow(kit, "wf-j2", [first[0], ("review", broken), first[2]], journal=journal)
    switch.down = True
    run = await run_workflow(kit, "wf-j2", steps(effects), journal=journal, lease_seconds=10)
    assert run.resumed_after == "fetch" and run.ran == ["review", "post"]
    assert effects == ["fetch", "review", "posted"]
    # Down and nothing journaled for this id: cannot tell it from a workflow that already ran, so refuse.
    with pytest.raises(ServiceUnavailable):
        await run_workflow(kit, "wf-never-seen", steps([]), journal=journal)


async def test_a_degraded_side_effect_is_not_repeated_before_or_after_the_flush(kit, switch, journal):
    effects: list[str] = []

    async def post(ctx):
        async def do_post(params):
            effects.append("posted")
            return "ok"

        return await idempotent(ctx.client, "notify", {"to": "ops"}, do_post)

    switch.down = True

    async def boom(ctx):
        raise RuntimeError("after the side effect")

    # A journal that already knows this workflow (else a start with the service down is refused).
    journal.append("wf-j3", {"id": "seed", "content": "journal start", "key": "note:wf-j3"})
    with pytest.raises(RuntimeError):
        await run_workflow(kit, "wf-j3", [post, boom], journal=journal, trace=False)
    assert effects == ["posted"]
    # Still down: the dedup record in the journal stops a second execution.
    with pytest.raises(RuntimeError):
        await run_workflow(kit, "wf-j3", [post, boom], journal=journal, trace=False)
    switch.down = False
    # Service back, journal not yet flushed: the runner flushes first, so the claim path sees the record.
    with pytest.raises(RuntimeError):
        await run_workflow(kit, "wf-j3", [post, boom], journal=journal, trace=False)
    assert effects == ["posted"] and journal.pending("wf-j3") == []


async def test_reads_fail_soft_with_a_warning(kit, switch, journal, caplog):
    await kit.ingest("the deploy failed because the migration timed out", tags=["incident"])
    assert len(await recall(kit, "deploy migration timed out", limit=3)) == 1
    switch.down = True
    caplog.set_level(logging.WARNING, logger="workflow_kit.journal")
    assert await recall(kit, "deploy migration", limit=3) == []
    assert "memory read failed soft" in caplog.records[-1].getMessage()


async def test_a_torn_last_line_is_dropped_and_sequence_goes_on(tmp_path):
    j = Journal(tmp_path / "j")
    j.append("wf", {"id": "a", "content": "x", "key": "k:1"})
    with open(j.path("wf"), "ab") as f:
        f.write(b'{"seq": 2, "body": {"id": "b", "con')  # SIGKILL mid-write
    again = Journal(tmp_path / "j")
    assert [e["body"]["id"] for e in again.entries("wf")] == ["a"]
    assert again.append("wf", {"id": "c", "content": "y", "key": "k:2"}) == 2
    assert [e["body"]["id"] for e in Journal(tmp_path / "j").entries("wf")] == ["a", "c"]
    assert Journal(tmp_path / "j").find_key("wf", "k:2")["id"] == "c"


async def test_a_record_the_service_refuses_is_dropped_and_raised_to_its_writer(kit, journal):
    with pytest.raises(Exception, match="content"):
        await journal.write(kit, "wf-j5", {"id": "bad", "content": "", "key": "k:bad"})
    assert await journal.write(kit, "wf-j5", {"id": "good", "content": "fine", "key": "k:good"})
    assert [e["body"]["id"] for e in Journal(journal.directory).entries("wf-j5")] == ["good"]


async def test_pending_records_are_a_metric(kit, switch, journal):
    from workflow_kit import Metrics
    from workflow_kit.metrics import using

    m = Metrics()
    with using(m):
        switch.down = True
        await journal.write(kit, "wf-j6", {"id": "a", "content": "x", "key": "k:a"})
        await journal.write(kit, "wf-j6", {"id": "b", "content": "y", "key": "k:b"})
        assert m.registry.get_sample_value("workflow_kit_journal_pending", {"workflow": "wf-j6"}) == 2
        switch.down = False
        await journal.flush(kit, "wf-j6")
        assert m.registry.get_sample_value("workflow_kit_journal_pending", {"workflow": "wf-j6"}) == 0
