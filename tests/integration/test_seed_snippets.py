"""The seed document's own snippets, unmodified, against a real `memory-spine serve` with the real model."""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import threading
from pathlib import Path

import httpx
import pytest

from . import seed_snippets as seed

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent


@pytest.fixture
def seed_url(server):
    seed.MEMORY_URL = server.url
    yield server
    seed.MEMORY_URL = "http://127.0.0.1:8788"


async def test_resume_finds_exactly_this_workflows_latest_checkpoint(seed_url):
    # A neighbour whose id extends ours, written last, and prose that merely talks about checkpoints.
    await seed.checkpoint("wf-1", "fetch", {"result": "diff-1"})
    await seed.checkpoint("wf-1", "review", {"result": "2 findings"})
    await seed.checkpoint("wf-12", "summarise", {"result": "neighbour"})
    async with httpx.AsyncClient() as c:
        await c.post(f"{seed_url.url}/ingest", json={"content": "notes on checkpoint:wf-1 and how checkpoints work"})
    last = await seed.resume_from_checkpoint("wf-1")
    assert last is not None
    assert last["workflow_id"] == "wf-1"
    assert last["step"] == "review"
    assert last["result"] == "2 findings"
    # and the neighbour resolves to itself
    assert (await seed.resume_from_checkpoint("wf-12"))["step"] == "summarise"
    assert await seed.resume_from_checkpoint("wf-2") is None


async def test_seed_run_workflow_runs_fresh_and_its_resume_bug_is_real(seed_url):
    calls: list[str] = []

    async def fetch():
        calls.append("fetch")
        return "diff"

    async def review():
        calls.append("review")
        return "ok"

    assert await seed.run_workflow("wf-seed", [fetch, review]) == "complete"
    assert calls == ["fetch", "review"]
    last = await seed.resume_from_checkpoint("wf-seed")
    assert last["step"] == "review" and last["result"] == "ok"
    # The seed resumes with steps.index(name) on a list of functions: a ValueError workflow_kit fixes.
    with pytest.raises(ValueError):
        await seed.run_workflow("wf-seed", [fetch, review])


async def test_idempotent_action_runs_once_and_distinguishes_params(seed_url):
    executed: list[dict] = []

    async def send(params):
        executed.append(params)
        return {"sent_to": params["channel"]}

    first = await seed.idempotent_action("notify", {"channel": "#ops", "text": "deploy done"}, send)
    again = await seed.idempotent_action("notify", {"text": "deploy done", "channel": "#ops"}, send)
    other = await seed.idempotent_action("notify", {"channel": "#dev", "text": "deploy done"}, send)
    assert first == again == {"sent_to": "#ops"}
    assert other == {"sent_to": "#dev"}
    assert [p["channel"] for p in executed] == ["#ops", "#dev"]


async def test_trace_ingest_without_metadata_is_stored(seed_url):
    trace = seed.create_trace("code-review-pipeline")
    span = seed.trace_agent(trace, "security-auditor")
    seed.complete_span(span, "Found 2 issues", status="ok")
    async with httpx.AsyncClient() as c:
        r = await c.post(f"{seed_url.url}/ingest", json={"content": json.dumps(trace), "tags": ["trace", "audit"]})
        assert r.status_code == 200, r.text
        got = (await c.get(f"{seed_url.url}/memories/{r.json()['id']}")).json()
    assert json.loads(got["content"])["trace_id"] == trace["trace_id"]
    assert got["tags"] == ["trace", "audit"]


async def test_semantic_search_ranks_by_meaning(seed_url):
    docs = {
        "db": "The deployment failed because the database migration timed out after 30 seconds.",
        "cat": "My cat likes to sleep in the sun on the windowsill all afternoon.",
        "recipe": "Whisk two eggs with flour and milk to make pancake batter.",
    }
    async with httpx.AsyncClient(base_url=seed_url.url) as c:
        for key, text in docs.items():
            await c.post("/ingest", json={"content": text, "id": key})
        r = await c.post("/search", json={"query": "why did the release break? schema change too slow", "limit": 3})
        ids = [h["id"] for h in r.json()["results"]]
        assert ids[0] == "db"
        r = await c.post("/search", json={"query": "breakfast cooking", "limit": 1})
        assert r.json()["results"][0]["id"] == "recipe"


def _health_stub() -> http.server.ThreadingHTTPServer:
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()
            self.wfile.write(b'{"status":"ok"}')

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@pytest.mark.skipif(shutil.which("curl") is None, reason="the seed's script needs curl")
def test_seed_health_script_passes(server, tmp_path):
    # The script also checks the seed's ML Router (8901) and AgentZ (8001): stand-ins answer their /health.
    router, agentz = _health_stub(), _health_stub()
    try:
        script = (HERE / "seed_health_check.sh").read_text()
        script = script.replace("127.0.0.1:8788", f"127.0.0.1:{server.port}")
        script = script.replace("127.0.0.1:8901", f"127.0.0.1:{router.server_address[1]}")
        script = script.replace("127.0.0.1:8001", f"127.0.0.1:{agentz.server_address[1]}")
        path = tmp_path / "check.sh"
        path.write_text(script)
        empty = subprocess.run(["bash", str(path)], capture_output=True, text=True, timeout=60)
        assert empty.returncode == 0, empty.stdout + empty.stderr
        assert "Memory count: 0" in empty.stdout and "WARN: Memory Spine is empty" in empty.stdout
        httpx.post(f"{server.url}/ingest", json={"content": "hello"})
        full = subprocess.run(["bash", str(path)], capture_output=True, text=True, timeout=60)
        assert full.returncode == 0, full.stdout + full.stderr
        assert "Memory count: 1" in full.stdout and "All checks passed" in full.stdout
        assert "WARN" not in full.stdout
    finally:
        router.shutdown()
        agentz.shutdown()
