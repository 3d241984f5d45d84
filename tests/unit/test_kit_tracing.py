"""workflow_kit.tracing: a workflow's trace (steps, agents, tools, memory calls) stored by id with parent links
intact, errors marked, JSON logs carrying the ids. In-process service, fake embedder."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import httpx
import pytest

from workflow_kit import MemoryClient, configure_logging, idempotent, record, run_workflow, span
from workflow_kit import tracing as kit_tracing


@pytest.fixture
async def client(app):
    async with MemoryClient("http://memory-spine", transport=httpx.ASGITransport(app=app)) as c:
        yield c


async def stored_trace(client, trace_id):
    memory = await client.kit.get_key(f"trace:{trace_id}")
    assert memory["tags"] == ["trace", "audit"]
    assert memory["metadata"]["trace_id"] == trace_id
    return memory, json.loads(memory["content"])


def assert_tree(doc):
    """One root; every other span's parent is in the trace; all share the trace id."""
    ids = {s["span_id"] for s in doc["spans"]}
    roots = [s for s in doc["spans"] if s["parent_id"] is None]
    assert len(roots) == 1 and roots[0]["kind"] == "workflow"
    assert all(s["parent_id"] in ids for s in doc["spans"] if s is not roots[0])
    assert {s["trace_id"] for s in doc["spans"]} == {doc["trace_id"]}
    return roots[0]


async def test_a_workflow_trace_is_stored_and_fetched_by_id(client):
    async def fetch(ctx):
        ctx.record(inputs={"pr": 42})
        return {"diff": "+1"}

    async def review(ctx):
        with span("security-auditor", kind="agent", inputs={"diff": ctx.outputs["fetch"]["diff"]}):
            record(reasoning="no SQL in the diff, so option B (skip the deep scan)", outputs={"issues": 0})
            with span("grep", kind="tool", pattern="SELECT"):
                pass

        async def side_task():  # a task started in a step inherits the step's span
            with span("style-checker", kind="agent"):
                return "clean"

        style = await asyncio.create_task(side_task())
        await idempotent(ctx.client, "post_review", {"pr": 42}, lambda p: asyncio.sleep(0, "posted"))
        return {"style": style}

    run = await run_workflow(client, "trace-wf", [fetch, review], name="code-review-pipeline")
    memory, doc = await stored_trace(client, run.trace_id)
    assert memory["metadata"]["workflow_id"] == "trace-wf"
    assert doc["trace_id"] == run.trace_id and doc["workflow"] == "code-review-pipeline"
    root = assert_tree(doc)
    by_name = {s["name"]: s for s in doc["spans"]}
    steps = [s for s in doc["spans"] if s["kind"] == "step"]
    assert [s["name"] for s in steps] == ["step fetch", "step review"]
    assert all(s["parent_id"] == root["span_id"] for s in steps)
    auditor = by_name["security-auditor"]
    assert auditor["agent"] == "security-auditor" and auditor["parent_id"] == by_name["step review"]["span_id"]
    assert auditor["inputs"] == {"diff": "+1"} and auditor["outputs"] == {"issues": 0}
    assert auditor["reasoning"].startswith("no SQL")
    assert by_name["grep"]["parent_id"] == auditor["span_id"] and by_name["grep"]["attributes"]["pattern"] == "SELECT"
    assert by_name["style-checker"]["parent_id"] == by_name["step review"]["span_id"]
    assert by_name["step fetch"]["inputs"] == {"pr": 42} and by_name["step fetch"]["outputs"] == {"diff": "+1"}
    assert by_name["idempotent post_review"]["kind"] == "tool"
    memory_spans = [s for s in doc["spans"] if s["kind"] == "memory"]
    assert {"memory.ingest", "memory.list_keys", "memory.claim", "memory.find_key"} <= {
        s["name"].replace("memory.get_key", "memory.find_key") for s in memory_spans
    }
    checkpoints = [
        s
        for s in memory_spans
        if s["name"] == "memory.ingest"
        and s["parent_id"] in {by_name["step fetch"]["span_id"], by_name["step review"]["span_id"]}
    ]
    assert len(checkpoints) >= 2  # each step's checkpoint write is inside its step
    for s in doc["spans"]:
        assert s["end"] >= s["start"] and s["duration_ms"] >= 0 and s["status"] == "ok"
    # The store request itself is not part of the trace, and nothing else was stored as a trace.
    traces = (await client.kit.list(tags=["trace"]))["results"]
    assert [t["key"] for t in traces] == [f"trace:{run.trace_id}"]


async def test_a_failed_step_is_an_error_span_and_the_trace_is_still_stored(client):
    async def boom():
        raise RuntimeError("tool exploded")

    with pytest.raises(RuntimeError):
        await run_workflow(client, "trace-fail", [boom])
    traces = (await client.kit.list(tags=["trace"]))["results"]
    assert len(traces) == 1 and traces[0]["metadata"]["status"] == "error"
    doc = json.loads(traces[0]["content"])
    step_span = next(s for s in doc["spans"] if s["kind"] == "step")
    assert step_span["status"] == "error" and "tool exploded" in step_span["error"]
    assert any(e["name"] == "exception" for e in step_span["events"])


async def test_every_run_gets_its_own_trace(client):
    async def one():
        return 1

    first = await run_workflow(client, "t-a", [one])
    again = await run_workflow(client, "t-a", [one])  # replay: nothing runs, but it is traced
    other = await run_workflow(client, "t-b", [one])
    assert len({first.trace_id, again.trace_id, other.trace_id}) == 3
    for run in (first, again, other):
        await stored_trace(client, run.trace_id)


async def test_client_calls_outside_a_workflow_store_no_trace(client):
    await client.ingest("plain")
    await client.search("plain")
    assert (await client.kit.list(tags=["trace"]))["results"] == []


async def test_big_recorded_values_are_cut(client):
    async def big(ctx):
        ctx.record(inputs="x" * 50_000, reasoning="y" * 50_000)
        return "small"

    run = await run_workflow(client, "t-big", [big])
    _, doc = await stored_trace(client, run.trace_id)
    step_span = next(s for s in doc["spans"] if s["kind"] == "step")
    assert step_span["inputs"]["truncated"] is True
    assert len(step_span["inputs"]["head"]) == kit_tracing.MAX_RECORDED_CHARS


async def test_json_logs_carry_trace_and_span_ids(client):
    stream = io.StringIO()
    handler = configure_logging(stream=stream, logger="test.kit.agent")
    agent_log = logging.getLogger("test.kit.agent")
    try:

        async def decide(ctx):
            agent_log.info("chose rollback", extra={"options": ["retry", "rollback"]})
            return "rollback"

        run = await run_workflow(client, "t-log", [decide])
        agent_log.info("outside")
    finally:
        agent_log.removeHandler(handler)
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["message"] == "chose rollback" and inside["options"] == ["retry", "rollback"]
    assert inside["trace_id"] == run.trace_id and len(inside["span_id"]) == 16
    _, doc = await stored_trace(client, run.trace_id)
    assert inside["span_id"] == next(s["span_id"] for s in doc["spans"] if s["kind"] == "step")
    assert "trace_id" not in outside and inside["level"] == "info" and inside["ts"].endswith("Z")


class NoTraces(httpx.AsyncBaseTransport):
    """The in-process app, except that storing a trace fails with 500."""

    def __init__(self, app):
        self.inner = httpx.ASGITransport(app=app)
        self.refused = 0

    async def handle_async_request(self, request):
        if request.url.path == "/ingest" and b'"audit"' in request.content:
            self.refused += 1
            return httpx.Response(500, json={"error": {"type": "internal", "message": "disk on fire"}})
        return await self.inner.handle_async_request(request)


async def test_a_trace_that_cannot_be_stored_does_not_fail_the_workflow(app, caplog):
    transport = NoTraces(app)
    async with MemoryClient("http://memory-spine", transport=transport, retries=1) as c:

        async def ok():
            return "fine"

        async def bad():
            raise KeyError("the step's own error")

        assert (await run_workflow(c, "t-lost", [ok])).result == "fine"
        with pytest.raises(KeyError, match="own error"):  # not masked by the failed trace write
            await run_workflow(c, "t-lost-2", [bad])
    assert transport.refused == 4  # two traces, each tried twice
    assert sum("trace not stored" in r.getMessage() for r in caplog.records) == 2


async def test_a_trace_over_the_content_cap_sheds_detail_but_keeps_its_tree(tmp_path):
    from memory_spine.api import create_app
    from memory_spine.config import Settings
    from memory_spine.service import MemoryService

    service = MemoryService.open(Settings(data_dir=tmp_path / "d", embedder="fake", max_content_chars=6000))
    try:
        transport = httpx.ASGITransport(app=create_app(service))
        async with MemoryClient("http://ms", transport=transport) as c:

            async def wordy(ctx):
                ctx.record(inputs="i" * 3000, reasoning="r" * 3000)
                return "ok"

            run = await run_workflow(c, "t-cap-1", [wordy])
            _, doc = await stored_trace(c, run.trace_id)
            assert doc["truncated"] is True and "dropped_memory_spans" not in doc
            assert all("inputs" not in s for s in doc["spans"])
            assert_tree(doc)

            async def chatty(ctx):
                for i in range(40):
                    await ctx.client.find_key(f"k{i}")
                return "ok"

            run = await run_workflow(c, "t-cap-2", [chatty])
            memory, doc = await stored_trace(c, run.trace_id)
            assert doc["dropped_memory_spans"] >= 40 and memory["metadata"]["span_count"] >= 42
            assert [s["kind"] for s in doc["spans"]] == ["workflow", "step"]
            assert_tree(doc)
    finally:
        service.close()
