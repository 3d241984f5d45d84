"""A workflow traced in one process is fetched by trace id from another, with every span and parent link."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from workflow_kit import MemoryClient

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One real service for the module (its tests use distinct ids): a process start is most of a test's time."""
    from tests.conftest import ServerProcess

    srv = ServerProcess(tmp_path_factory.mktemp("kit-server") / "data").start()
    yield srv
    srv.stop()


ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).parent / "scripts" / "kit_workflow.py"


async def test_a_trace_is_stored_and_fetched_by_id_with_parent_links(server, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), server.url, "traced-1", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout.splitlines()[-1])
    trace_id = run["trace_id"]
    assert len(trace_id) == 32

    async with MemoryClient(server.url) as client:
        memory = await client.kit.get_key(f"trace:{trace_id}")
    assert memory["tags"] == ["trace", "audit"]
    assert memory["metadata"]["trace_id"] == trace_id and memory["metadata"]["workflow_id"] == "traced-1"
    doc = json.loads(memory["content"])
    assert doc["trace_id"] == trace_id and doc["workflow"] == "crash-test" and doc["status"] == "ok"

    spans = {s["span_id"]: s for s in doc["spans"]}
    assert len(spans) == len(doc["spans"]) == memory["metadata"]["span_count"]
    root = [s for s in spans.values() if s["parent_id"] is None]
    assert len(root) == 1 and root[0]["kind"] == "workflow" and root[0]["outputs"] == "posted traced-1"
    steps = sorted((s for s in spans.values() if s["kind"] == "step"), key=lambda s: s["start"])
    assert [s["name"] for s in steps] == ["step fetch", "step charge", "step post"]
    for s in spans.values():
        if s is not root[0]:
            parent = spans[s["parent_id"]]  # every link resolves inside the stored trace
            assert parent["start"] <= s["start"] and s["end"] <= parent["end"] + 1e-3
        assert s["trace_id"] == trace_id
    assert all(s["parent_id"] == root[0]["span_id"] for s in steps)
    charge = steps[1]
    under_charge = [s for s in spans.values() if s["parent_id"] == charge["span_id"]]
    tool = next(s for s in under_charge if s["kind"] == "tool")
    assert tool["name"] == "idempotent charge" and tool["inputs"] == {"order": "traced-1"}
    memory_calls = [s["name"] for s in spans.values() if s["parent_id"] in {tool["span_id"], charge["span_id"]}]
    assert {"memory.claim", "memory.ingest", "memory.release"} <= set(memory_calls)
    assert steps[0]["outputs"]["diff"] == "+1 -1"
