"""MemorySpineSaver against a real `memory-spine serve` process with the real ONNX model: LangGraph's own
conformance suite (`langgraph-checkpoint-conformance`, base and extended capabilities: 81 tests), the sync methods
from threads with and without a running loop, values over the service's metadata cap (copied, pruned and deleted
with their parts), key prefixes that must not collide, prune keeping what a DeltaChannel is rebuilt from, a graph
run with `ainvoke` that resumes in a new saver, and examples/langgraph_resume.py resuming across processes."""

from __future__ import annotations

import asyncio
import json
import operator
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Annotated, Any, TypedDict
from uuid import uuid4

import pytest
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES
from langgraph.checkpoint.conformance.test_utils import (
    generate_checkpoint,
    generate_config,
    generate_metadata,
)

from workflow_kit import MemoryClient
from workflow_kit.langgraph import MemorySpineSaver

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "langgraph_resume.py"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One real service (real model) for the module: every test uses its own thread ids."""
    from tests.conftest import ServerProcess

    srv = ServerProcess(tmp_path_factory.mktemp("langgraph") / "data").start()
    yield srv
    srv.stop()


async def count_records(url: str, prefix: str) -> int:
    async with MemoryClient(url) as client:  # the checkpointer writes to the kit's namespace
        return len((await client.kit.list(key_prefix=prefix, limit=1000))["results"])


async def test_conformance_all_capabilities(server):
    @checkpointer_test(name="MemorySpineSaver")
    async def memory_spine_saver():
        async with MemorySpineSaver(server.url) as saver:
            yield saver

    report = await validate(memory_spine_saver)
    report.print_report()
    failures = {name: r.failures for name, r in report.results.items() if r.failures}
    assert report.passed_all_base() and not failures, failures
    for cap in ALL_CAPABILITIES:  # base and extended (delete_for_runs, copy_thread, prune): none skipped
        result = report.results[cap.value]
        assert result.detected and result.tests_failed == 0 and result.tests_passed > 0, (cap, result)
    passed = sum(r.tests_passed for r in report.results.values())
    print(f"langgraph-checkpoint-conformance: {passed} passed")


def test_sync_methods_from_a_thread_without_a_loop(server):
    saver = MemorySpineSaver(server.url)
    seen: dict[str, Any] = {}

    def work() -> None:
        thread_id = f"sync-{uuid4()}"
        first = saver.put(generate_config(thread_id), generate_checkpoint(), generate_metadata(step=0), {})
        cp = generate_checkpoint(channel_values={"n": 1}, channel_versions={"n": 1})
        second = saver.put(first, cp, generate_metadata(step=1), {"n": 1})
        saver.put_writes(second, [("n", 2), ("other", "x")], "task-1", "path")
        seen["latest"] = saver.get_tuple(generate_config(thread_id))
        seen["listed"] = [t.checkpoint["id"] for t in saver.list(generate_config(thread_id))]
        seen["limited"] = [t.metadata["step"] for t in saver.list(generate_config(thread_id), limit=1)]
        seen["ids"] = (first["configurable"]["checkpoint_id"], cp["id"])
        saver.delete_thread(thread_id)
        seen["after"] = saver.get_tuple(generate_config(thread_id))

    worker = threading.Thread(target=work)
    worker.start()
    worker.join(60)
    saver.close()
    first_id, second_id = seen["ids"]
    latest = seen["latest"]
    assert latest.checkpoint["id"] == second_id and latest.checkpoint["channel_values"] == {"n": 1}
    assert latest.parent_config["configurable"]["checkpoint_id"] == first_id
    assert latest.pending_writes == [("task-1", "n", 2), ("task-1", "other", "x")]
    assert seen["listed"] == [second_id, first_id]
    assert seen["limited"] == [1]
    assert seen["after"] is None


async def test_sync_methods_inside_a_running_loop(server):
    # A sync call made from async code (a blocking mistake, but LangGraph users make it) still works: it runs on
    # the saver's own loop thread, not on this one.
    with MemorySpineSaver(server.url) as saver:
        thread_id = f"in-loop-{uuid4()}"
        stored = saver.put(generate_config(thread_id), generate_checkpoint(), generate_metadata(), {})
        assert saver.get_tuple(stored).checkpoint["id"] == stored["configurable"]["checkpoint_id"]
        assert (await saver.aget_tuple(stored)).checkpoint["id"] == stored["configurable"]["checkpoint_id"]


async def test_values_over_the_metadata_cap_are_stored_in_parts(server):
    thread_id = f"big-{uuid4()}"
    big = "x" * 300_000  # base64 of its serialised form is ~6x the service's 64 KiB metadata cap
    cp = generate_checkpoint(channel_values={"doc": big, "n": 1}, channel_versions={"doc": 1, "n": 1})
    async with MemorySpineSaver(server.url, max_inline=40_000) as saver:
        stored = await saver.aput(generate_config(thread_id), cp, generate_metadata(), {"doc": 1, "n": 1})
        await saver.aput_writes(stored, [("doc", big + "y")], "task")
        got = await saver.aget_tuple(generate_config(thread_id))
        assert got.checkpoint["channel_values"] == {"doc": big, "n": 1}
        assert got.pending_writes == [("task", "doc", big + "y")]
        assert [t.checkpoint["id"] async for t in saver.alist(generate_config(thread_id))] == [cp["id"]]
        prefix = saver._thread_prefix(thread_id)
        assert await count_records(server.url, prefix) > 10  # a checkpoint, a write and their parts
        await saver.adelete_thread(thread_id)
        assert await count_records(server.url, prefix) == 0
        assert await saver.aget_tuple(generate_config(thread_id)) is None


async def test_thread_and_namespace_prefixes_do_not_collide(server):
    run = uuid4().hex[:8]
    threads = [f"{run}-a", f"{run}-a:b", f"{run}-a%3Ab", f"{run}-" + "long/" * 60, f"{run}-a b"]
    async with MemorySpineSaver(server.url) as saver:
        stored = []
        for tid in threads:
            for ns in ("", "child:1", "child"):
                config = generate_config(tid, checkpoint_ns=ns)
                stored.append(await saver.aput(config, generate_checkpoint(), generate_metadata(), {}))
        for config in stored:  # by exact key: GET /keys/{key} with the encoded parts
            got = await saver.aget_tuple(config)
            assert got is not None and got.config == config
        for tid in threads:
            listed = [t async for t in saver.alist({"configurable": {"thread_id": tid}})]
            assert sorted(t.config["configurable"]["checkpoint_ns"] for t in listed) == ["", "child", "child:1"]
            assert {t.config["configurable"]["thread_id"] for t in listed} == {tid}
            root = [t async for t in saver.alist(generate_config(tid, checkpoint_ns=""))]
            assert len(root) == 1
        await saver.adelete_thread(threads[0])
        assert await saver.aget_tuple(generate_config(threads[0])) is None
        for tid in threads[1:]:
            assert await saver.aget_tuple(generate_config(tid)) is not None
        all_threads = {t.config["configurable"]["thread_id"] async for t in saver.alist(None)}
        assert set(threads[1:]) <= all_threads and threads[0] not in all_threads
        for tid in threads[1:]:
            await saver.adelete_thread(tid)


def test_extended_methods_sync_with_values_in_parts(server):
    # copy_thread, prune and delete_for_runs from a plain thread (what a sync graph calls), on checkpoints and
    # writes too big for one record: every part is copied, and every part of a deleted checkpoint goes with it.
    big = "y" * 120_000
    src, dst = f"ext-src-{uuid4()}", f"ext-dst-{uuid4()}"
    runs = [str(uuid4()), str(uuid4()), str(uuid4())]
    saver = MemorySpineSaver(server.url, max_inline=20_000)
    seen: dict[str, Any] = {}

    def work() -> None:
        parent = generate_config(src)
        for n, run in enumerate(runs):
            cp = generate_checkpoint(channel_values={"doc": big + str(n)}, channel_versions={"doc": n + 1})
            parent = saver.put(parent, cp, generate_metadata(step=n, run_id=run), {"doc": n + 1})
            saver.put_writes(parent, [("doc", big + f"w{n}")], f"task-{n}")
        seen["src_records"] = asyncio.run(count_records(server.url, saver._thread_prefix(src)))
        saver.copy_thread(src, dst)
        seen["copied"] = [
            (t.checkpoint["channel_values"]["doc"][-1], t.pending_writes) for t in saver.list(generate_config(dst))
        ]
        seen["dst_records"] = asyncio.run(count_records(server.url, saver._thread_prefix(dst)))
        saver.delete_for_runs([runs[0]])
        seen["after_runs"] = [t.metadata["run_id"] for t in saver.list(generate_config(dst))]
        saver.prune([dst])
        seen["after_prune"] = [t.metadata["run_id"] for t in saver.list(generate_config(dst))]
        seen["pruned_records"] = asyncio.run(count_records(server.url, saver._thread_prefix(dst)))
        seen["source"] = [t.metadata["run_id"] for t in saver.list(generate_config(src))]
        saver.prune([src, dst], strategy="delete")
        seen["left"] = [asyncio.run(count_records(server.url, saver._thread_prefix(t))) for t in (src, dst)]

    worker = threading.Thread(target=work)
    worker.start()
    worker.join(120)
    saver.close()
    assert seen["copied"] == [
        (str(n), [(f"task-{n}", "doc", big + f"w{n}")]) for n in (2, 1, 0)
    ]  # newest first, as in the source
    assert seen["dst_records"] == seen["src_records"] > 6 * 3  # each checkpoint and write is in several parts
    assert seen["after_runs"] == [runs[2], runs[1]]
    assert seen["after_prune"] == [runs[2]]
    assert seen["pruned_records"] == seen["src_records"] // 3  # the other checkpoints' writes and parts are gone
    assert seen["source"] == [runs[2], runs[1]]  # runs are deleted in every thread; prune left the source alone
    assert seen["left"] == [0, 0]


async def test_prune_unknown_strategy_is_refused(server):
    async with MemorySpineSaver(server.url) as saver:
        with pytest.raises(ValueError, match="keep_latest"):
            await saver.aprune(["t"], strategy="keep_oldest")


def _append(state: list[str], writes: list[list[str]]) -> list[str]:
    return [*state, *(item for write in writes for item in write)]


class Logged(TypedDict, total=False):
    log: Annotated[list[str], DeltaChannel(_append, snapshot_frequency=5)]


async def test_prune_keeps_the_ancestors_a_delta_channel_is_rebuilt_from(server):
    # A DeltaChannel stores only a sentinel in most checkpoints; its value is rebuilt from ancestors' writes back
    # to the last snapshot. keep_latest must keep that chain, or the state silently comes back short.
    from langgraph.graph import END, START, StateGraph

    graph_builder = StateGraph(Logged)
    graph_builder.add_node("a", lambda state: {"log": ["a"]})
    graph_builder.add_node("b", lambda state: {"log": ["b"]})
    graph_builder.add_edge(START, "a")
    graph_builder.add_edge("a", "b")
    graph_builder.add_edge("b", END)
    thread = f"delta-{uuid4()}"
    config = {"configurable": {"thread_id": thread}}
    async with MemorySpineSaver(server.url) as saver:
        graph = graph_builder.compile(checkpointer=saver)
        for n in range(4):
            await graph.ainvoke({"log": [f"in{n}"]}, config)
        expected = [item for n in range(4) for item in (f"in{n}", "a", "b")]
        assert (await graph.aget_state(config)).values["log"] == expected
        before = [t async for t in saver.alist(config)]
        assert before[0].metadata["counters_since_delta_snapshot"]  # the newest checkpoint is not a snapshot

        await saver.aprune([thread])
        kept = [t async for t in saver.alist(config)]
        assert 1 < len(kept) < len(before)
        assert kept[0].checkpoint["id"] == before[0].checkpoint["id"]
        assert (await graph.aget_state(config)).values["log"] == expected
        # What a naive keep_latest would have done: the value is rebuilt from nothing.
        await saver._delete_checkpoints(saver._client(), thread, "", [t.checkpoint["id"] for t in kept[1:]])
        assert (await graph.aget_state(config)).values["log"] != expected
        await saver.adelete_thread(thread)


class Counted(TypedDict, total=False):
    ran: Annotated[list[str], operator.add]
    answer: str


async def test_async_graph_interrupted_resumes_in_a_new_saver(server):
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Command, interrupt

    def ask(state: Counted) -> dict[str, Any]:
        return {"answer": interrupt("which way?"), "ran": ["ask"]}

    def build(saver: MemorySpineSaver) -> Any:
        graph = StateGraph(Counted)
        graph.add_node("first", lambda state: {"ran": ["first"]})
        graph.add_node("ask", ask)
        graph.add_node("last", lambda state: {"ran": ["last"]})
        graph.add_edge(START, "first")
        graph.add_edge("first", "ask")
        graph.add_edge("ask", "last")
        graph.add_edge("last", END)
        return graph.compile(checkpointer=saver)

    config = {"configurable": {"thread_id": f"async-graph-{uuid4()}"}}
    async with MemorySpineSaver(server.url) as saver:
        out = await build(saver).ainvoke({"ran": []}, config)
        assert out["ran"] == ["first"] and out["__interrupt__"][0].value == "which way?"
    async with MemorySpineSaver(server.url) as fresh:
        graph = build(fresh)
        assert (await graph.aget_state(config)).next == ("ask",)
        out = await graph.ainvoke(Command(resume="left"), config)
        assert out == {"ran": ["first", "ask", "last"], "answer": "left"}
        history = [s async for s in graph.aget_state_history(config)]
        assert len(history) >= 4 and history[0].values == out


def run_example(server, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MEMORY_SPINE_URL": server.url}
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *args], capture_output=True, text=True, env=env, timeout=120, cwd=ROOT
    )


async def test_example_graph_resumes_across_processes(server):
    thread = f"example-{uuid4()}"
    started = await asyncio.to_thread(run_example, server, "start", "--thread", thread)
    assert started.returncode == 0, started.stderr
    state = json.loads(started.stdout)
    assert state["values"]["ran"] == ["fetch"] and state["next"] == ["review"]
    assert state["waiting_for"] == [{"question": "publish diff of PR 42?"}]

    crashed = await asyncio.to_thread(run_example, server, "approve", "--thread", thread, "--crash")
    assert crashed.returncode == 17, crashed.stderr  # publish died mid-step, after review's checkpoint

    resumed = await asyncio.to_thread(run_example, server, "resume", "--thread", thread)
    assert resumed.returncode == 0, resumed.stderr
    state = json.loads(resumed.stdout)
    assert state["values"]["ran"] == ["fetch", "review", "publish"]  # each step finished once
    assert state["values"]["approved"] is True and state["values"]["url"].endswith("/pr/42")
    assert state["next"] == [] and state["waiting_for"] == []
    async with MemorySpineSaver(server.url) as saver:
        steps = [t.metadata["step"] async for t in saver.alist({"configurable": {"thread_id": thread}})]
        assert steps == sorted(steps, reverse=True) and steps[-1] == -1
        await saver.adelete_thread(thread)
