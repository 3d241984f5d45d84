"""The service as a real process: durability across kill -9, index rebuild, clean SIGTERM, refusals."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest

from ..conftest import ROOT, free_port

pytestmark = pytest.mark.integration


def _ingest(url: str, n: int, prefix: str = "note") -> list[str]:
    ids = []
    with httpx.Client(base_url=url) as c:
        for i in range(n):
            r = c.post(
                "/ingest",
                json={
                    "content": f"{prefix} {i}: the build {i} failed on step {i % 7}",
                    "tags": [prefix],
                    "metadata": {"i": i},
                },
            )
            assert r.status_code == 200, r.text
            ids.append(r.json()["id"])
    return ids


def test_acknowledged_ingest_survives_kill_9(server):
    ids = _ingest(server.url, 20)
    # The last write is acknowledged, then the process dies at once: no shutdown, no index save.
    with httpx.Client(base_url=server.url) as c:
        r = c.post("/ingest", json={"content": "checkpoint:wf-kill:step3", "metadata": {"step": "step3"}})
        assert r.status_code == 200
    server.kill()
    server.start()
    with httpx.Client(base_url=server.url) as c:
        for i, id_ in enumerate(ids):
            got = c.get(f"/memories/{id_}").json()
            assert got["metadata"] == {"i": i}
        hit = c.post("/search", json={"query": "checkpoint:wf-kill", "limit": 1}).json()["results"]
        assert hit[0]["metadata"]["step"] == "step3"
        stats = c.get("/stats").json()
        assert stats["total_memories"] == 21
        # the index was caught up from SQLite (nothing was saved before the kill)
        assert stats["index"]["elements"] == 21
        found = c.post("/search", json={"query": "note 13: the build 13 failed on step 6", "limit": 1}).json()
        assert found["results"][0]["id"] == ids[13]


def test_missing_or_truncated_index_is_rebuilt_on_start(server):
    ids = _ingest(server.url, 30)
    assert server.terminate() == 0  # clean stop persists the index
    index = server.data_dir / "index.hnsw"
    assert index.exists() and (server.data_dir / "index.json").exists()

    index.unlink()
    server.start()
    with httpx.Client(base_url=server.url) as c:
        stats = c.get("/stats").json()
        assert stats["index"]["last_open"]["how"] == "rebuilt"
        assert stats["index"]["elements"] == 30
        r = c.post("/search", json={"query": "note 7: the build 7 failed on step 0", "limit": 1}).json()
        assert r["results"][0]["id"] == ids[7]
    assert server.terminate() == 0

    data = index.read_bytes()
    index.write_bytes(data[: len(data) // 3])  # an interrupted flush
    server.start()
    with httpx.Client(base_url=server.url) as c:
        stats = c.get("/stats").json()
        assert stats["index"]["last_open"]["how"] == "rebuilt"
        assert "truncated" in stats["index"]["last_open"]["reason"]
        assert stats["index"]["elements"] == 30
    assert "index_rebuilt" in server.output()


def test_sigterm_exits_zero_and_saves_index(server):
    _ingest(server.url, 5)
    assert server.terminate() == 0
    marker = json.loads((server.data_dir / "index.json").read_text())
    assert marker["elements"] == 5
    server.start()
    with httpx.Client(base_url=server.url) as c:
        last_open = c.get("/stats").json()["index"]["last_open"]
    assert last_open["how"] == "loaded" and last_open["caught_up"] == 0


def test_second_server_on_same_data_dir_refuses(server, server_factory):
    second = server_factory(server.data_dir, start=False)
    second.start(wait=False)
    assert second.proc.wait(timeout=60) != 0
    assert "another memory-spine process" in second.output()
    # the first one is unharmed
    assert httpx.get(server.url + "/health").status_code == 200


def test_non_loopback_bind_without_token_is_refused(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "memory_spine",
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            str(free_port()),
            "--data-dir",
            str(tmp_path / "d"),
            "--embedder",
            "fake",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(ROOT),
    )
    assert r.returncode == 2
    assert "token" in r.stderr and "--insecure" in r.stderr


def test_logs_are_json_lines_with_request_ids(server):
    with httpx.Client(base_url=server.url) as c:
        c.get("/stats", headers={"X-Request-ID": "req-abc-123"})
    # The line is written right after the response is sent: give it a moment to reach the file.
    deadline = time.monotonic() + 10
    while True:
        lines = [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]
        if any(rec.get("request_id") == "req-abc-123" and rec.get("route") == "/stats" for rec in lines):
            break
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.05)
    assert all("level" in rec and "msg" in rec for rec in lines)
