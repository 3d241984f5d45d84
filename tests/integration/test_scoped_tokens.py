"""Scoped tokens against a real `memory-spine serve` (real model, admin token from a file): a token made by the
CLI beside the running server works over HTTP at once, holds only its rights, and is refused (401) within the
documented cache window (`token_cache_seconds`, 5 s) after the CLI revokes it; and the cross-namespace leak walk
of tests/contracts/test_token_leaks.py over real HTTP."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ..conftest import ROOT, ServerProcess
from ..contracts.test_token_leaks import ADMIN, seed, walk, walkable


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "memory_spine", *args], capture_output=True, text=True, timeout=60, cwd=str(ROOT)
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> ServerProcess:
    base = tmp_path_factory.mktemp("tokens")
    secret = base / "admin-token"
    secret.write_text(ADMIN + "\n")
    srv = ServerProcess(base / "data", args=["--token-file", str(secret)]).start()
    yield srv
    srv.stop()


def test_cli_token_over_http_then_revoked(served: ServerProcess) -> None:
    data = str(served.data_dir)
    made = cli(
        "token",
        "create",
        "--data-dir",
        data,
        "--namespace",
        "team/",
        "--namespace",
        "default",
        "--read-only",
        "--expires",
        "30d",
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    token_id = made.stderr.split()[2]
    assert token.startswith("mst_") and token not in made.stderr
    h = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=served.url, timeout=30) as c:
        me = c.get("/whoami", headers=h)
        assert me.status_code == 200 and me.json()["namespaces"] == ["team/", "default"]
        assert me.json()["rights"] == ["read"]
        assert c.post("/search", json={"query": "anything"}, headers=h).status_code == 200
        assert c.post("/search", json={"query": "x", "namespace": "team/a/"}, headers=h).status_code == 200
        r = c.post("/search", json={"query": "anything", "namespace": ["team/a", "other"]}, headers=h)
        assert r.status_code == 403 and r.json()["error"]["type"] == "forbidden_namespace"
        assert r.json()["error"]["namespace"] == "other" and r.json()["error"]["field"] == "namespace"
        r = c.post("/ingest", json={"content": "a read-only token cannot write"}, headers=h)
        assert r.status_code == 403 and r.json()["error"]["type"] == "forbidden_right"
        assert c.get("/metrics", headers=h).status_code == 403
        assert c.get("/metrics", headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 200
        listed = cli("token", "list", "--data-dir", data)
        assert listed.returncode == 0 and token_id in listed.stdout and token not in listed.stdout
        assert '"last_used_at": "20' in listed.stdout  # noted on first use
        revoked = cli("token", "revoke", "--data-dir", data, token_id)
        assert revoked.returncode == 0, revoked.stderr
        started = time.monotonic()
        while (r := c.get("/whoami", headers=h)).status_code == 200:
            assert time.monotonic() - started < 6.0, "a revoked token still works past token_cache_seconds (5 s)"
            time.sleep(0.2)
        assert r.status_code == 401 and r.json()["error"]["message"] == "this token was revoked"
        assert r.headers["www-authenticate"] == "Bearer"
        assert c.get("/whoami", headers={"Authorization": "Bearer mst_" + "x" * 43}).status_code == 401


def test_cli_refuses_a_missing_data_dir(tmp_path: Path) -> None:
    r = cli("token", "create", "--data-dir", str(tmp_path / "none"), "--namespace", "a")
    assert r.returncode == 2 and "does not exist" in r.stderr and not (tmp_path / "none").exists()


async def test_no_route_leaks_across_namespaces_over_http(served: ServerProcess, capsys) -> None:
    pytest.importorskip("memory_spine.namespaces")
    from memory_spine.api.app import _route_table, create_app
    from memory_spine.config import Settings

    routes = _route_table(create_app(Settings(embedder="fake")).router.routes)  # the served app's table
    async with httpx.AsyncClient(base_url=served.url, timeout=60) as c:
        walked, requests, statuses = await walk(c, routes, await seed(c))
    assert walked == len(walkable(routes))
    with capsys.disabled():
        print(
            f"\nleak walk (real serve): {walked} routes, {requests} requests, statuses {dict(sorted(statuses.items()))}"
        )
