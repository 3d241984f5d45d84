"""Records, hybrid search, auth and import/export against a real `memory-spine serve` with the real model."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import httpx
import pytest

from ..conftest import ROOT

pytestmark = pytest.mark.integration

MESSAGES = [
    "connection refused by the upstream database",
    "timeout while waiting for the payment gateway",
    "disk quota exceeded on the build runner",
    "invalid token presented by the client",
]
# Codes that look alike to a sentence model: permutations and neighbours of 4471.
CODES = sorted(
    {"".join(p) for p in itertools.permutations("4471")}
    | {"4417", "4147", "4714", "1447", "7144", "4470", "4472", "4481", "4371", "3471", "4461"}
)


def test_hybrid_finds_every_record_of_an_error_code_that_semantic_mixes_up(server):
    records = [{"id": f"E{c}-{j}", "content": f"error E{c}: {m}"} for c in CODES for j, m in enumerate(MESSAGES)]
    wanted = {f"E4471-{j}" for j in range(len(MESSAGES))}
    with httpx.Client(base_url=server.url, timeout=60) as c:
        assert c.post("/ingest/batch", json={"records": records}).status_code == 200

        def top(mode: str) -> set[str]:
            r = c.post("/search", json={"query": "E4471", "mode": mode, "limit": len(wanted)})
            return {h["id"] for h in r.json()["results"]}

        assert top("keyword") == wanted
        assert top("hybrid") == wanted
        assert top("semantic") != wanted, "the model blurs E4471 with E4461, E4417, ...: semantic misses some"


def test_patch_re_embeds_with_the_real_model(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        c.post("/ingest", json={"id": "m", "content": "the cat sat on the warm windowsill"})
        c.post("/ingest", json={"id": "other", "content": "quarterly revenue grew by four percent"})
        assert c.post("/search", json={"query": "a kitten resting in the sun"}).json()["results"][0]["id"] == "m"
        r = c.patch("/memories/m", json={"content": "the rocket reached orbit after a delayed launch"})
        assert r.status_code == 200
        hits = c.post("/search", json={"query": "spaceflight and satellites", "limit": 1, "mode": "semantic"}).json()[
            "results"
        ]
        assert hits[0]["id"] == "m" and hits[0]["score"] > 0.3
        hits = c.post("/search", json={"query": "a kitten resting in the sun", "limit": 2, "mode": "semantic"}).json()[
            "results"
        ]
        assert all(h["score"] < 0.3 for h in hits)


def test_auth_on_a_real_process(server_factory):
    srv = server_factory(args=["--token", "real-token"])
    env_srv = server_factory(env={"MEMORY_SPINE_TOKEN": "env-token"})
    for s, token in ((srv, "real-token"), (env_srv, "env-token")):
        with httpx.Client(base_url=s.url, timeout=30) as c:
            assert c.get("/health").status_code == 200
            for method, path in (("GET", "/stats"), ("GET", "/metrics"), ("POST", "/search"), ("GET", "/memories")):
                r = c.request(method, path, json={"query": "x"} if method == "POST" else None)
                assert r.status_code == 401 and r.json()["error"]["type"] == "unauthorized", path
            r = c.post("/ingest", json={"content": "x"}, headers={"Authorization": "Bearer wrong"})
            assert r.status_code == 401
            auth = {"Authorization": f"Bearer {token}"}
            assert c.post("/ingest", json={"content": "x"}, headers=auth).status_code == 200
            assert c.get("/stats", headers=auth).json()["total_memories"] == 1
    assert "real-token" not in srv.output() and "env-token" not in env_srv.output()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "memory_spine", *args], cwd=str(ROOT), capture_output=True, text=True, timeout=300
    )


def test_export_then_import_into_a_new_data_dir(server_factory, tmp_path):
    src = server_factory()
    with httpx.Client(base_url=src.url, timeout=60) as c:
        records = [
            {"id": f"r{i}", "content": f"release note {i}: fixed the {w} bug", "tags": [w], "metadata": {"i": i}}
            for i, w in enumerate(["parser", "scheduler", "renderer", "exporter", "cache"] * 4)
        ]
        assert c.post("/ingest/batch", json={"records": records}).status_code == 200
        before = c.post("/search", json={"query": "scheduling problem", "limit": 5}).json()["results"]
    assert src.terminate() == 0
    out = tmp_path / "dump.jsonl"
    done = _cli("export", "--data-dir", str(src.data_dir), "--vectors", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text().splitlines()[0])["model"] == "all-MiniLM-L6-v2"
    new_dir = tmp_path / "imported"
    done = _cli("import", str(out), "--data-dir", str(new_dir), "--batch-size", "7")
    assert done.returncode == 0, done.stderr
    assert "imported 20 memories, skipped 0 already present, embedded 0" in done.stderr
    dst = server_factory(new_dir)
    with httpx.Client(base_url=dst.url, timeout=60) as c:
        after = c.post("/search", json={"query": "scheduling problem", "limit": 5}).json()["results"]
        assert after == before
        assert c.get("/memories/r3").json()["metadata"] == {"i": 3}
