"""`memory-spine mcp` as real processes, driven by the `mcp` SDK's own client: over stdio (as desktop agents
launch it) and over streamable HTTP with a bearer token, both as clients of a real `memory-spine serve` (real
model, its own token). List tools, store, search by meaning, get, delete, bad arguments as tool errors. With
`--data-dir` the server runs the core in-process, and the data dir's lock keeps a second owner out either way."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import httpx2  # the HTTP client the mcp SDK's transports take
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import ServerProcess, free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SERVICE_TOKEN = "service-token"
MCP_TOKEN = "mcp-token"
TOOLS = {
    "memory_store",
    "memory_search",
    "memory_get",
    "memory_update",
    "memory_delete",
    "memory_stats",
    "memory_history",
    "memory_revert",
    "memory_deleted",
    "memory_restore",
    "memory_namespaces",
    "conversation_store",
    "checkpoint_save",
    "checkpoint_latest",
    "key_get",
    "key_list",
    "claim_acquire",
    "claim_renew",
    "claim_get",
    "claim_release",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One real service (real model) with a token, for the module."""
    srv = ServerProcess(tmp_path_factory.mktemp("mcp") / "data", args=["--token", SERVICE_TOKEN]).start()
    yield srv
    srv.stop()


def mcp_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "memory_spine", "mcp", *args]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}


async def ok(client: Client, name: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    result = await client.call_tool(name, args or {})
    assert not result.is_error, result.content[0].text
    return result.structured_content


async def fails(client: Client, name: str, args: dict[str, Any]) -> str:
    result = await client.call_tool(name, args)
    assert result.is_error, result
    return result.content[0].text


async def exercise(client: Client) -> None:
    """The tour every transport must pass: tools, store, search, get, delete, bad arguments."""
    tools = (await client.list_tools()).tools
    assert {t.name for t in tools} == TOOLS
    tag = f"run-{uuid4().hex[:8]}"
    deploy = await ok(
        client,
        "memory_store",
        {
            "content": "The deploy failed because the database migration timed out",
            "tags": [tag, "incident"],
            "metadata": {"service": "billing"},
            "importance": "high",
        },
    )
    await ok(client, "memory_store", {"content": "The team lunch is pasta on Friday", "tags": [tag]})
    query = {"query": "why did the release break?", "limit": 1, "tags": [tag], "mode": "semantic"}
    found = await ok(client, "memory_search", query)
    assert [hit["id"] for hit in found["results"]] == [deploy["id"]]  # by meaning: no word in common
    assert [h["id"] for h in (await ok(client, "memory_search", {**query, "mode": None}))["results"]] == [deploy["id"]]
    memory = await ok(client, "memory_get", {"id": deploy["id"]})
    assert memory["metadata"] == {"service": "billing"} and memory["importance"] == "high"
    assert await ok(client, "memory_delete", {"id": deploy["id"]}) == {"deleted": 1}
    assert "not_found" in await fails(client, "memory_get", {"id": deploy["id"]})

    assert "limit" in await fails(client, "memory_search", {"query": "x", "limit": 500})
    assert "invalid_input: content: must not be empty" in await fails(client, "memory_store", {"content": " "})
    assert "workflow_id" in await fails(client, "checkpoint_save", {"workflow_id": "a b", "step": "s"})

    workflow = f"wf-{uuid4().hex[:8]}"
    await ok(client, "checkpoint_save", {"workflow_id": workflow, "step": "fetch", "result": {"n": 1}})
    latest = await ok(client, "checkpoint_latest", {"workflow_id": workflow})
    assert latest["checkpoint"] == {"workflow_id": workflow, "step": "fetch", "result": {"n": 1}}
    stats = await ok(client, "memory_stats")  # the lunch note in `default`; the checkpoint is the kit's
    assert stats["total_memories"] >= 1 and stats["namespaces"].get("_kit/default", 0) >= 1

    key = f"{tag}:decision"
    noted = await ok(client, "memory_store", {"content": "We chose PostgreSQL", "key": key})
    assert str(uuid.UUID(noted["id"])) == noted["id"]  # the same id shape as the HTTP API's
    assert (await ok(client, "key_get", {"key": key}))["memory"]["id"] == noted["id"]
    assert [m["key"] for m in (await ok(client, "key_list", {"prefix": f"{tag}:"}))["results"]] == [key]
    claim = await ok(client, "claim_acquire", {"key": f"{tag}:job", "holder": "agent-a", "lease_seconds": 30})
    renewed = await ok(client, "claim_renew", {"key": f"{tag}:job", "lease_token": claim["lease_token"]})
    assert renewed["fence"] == claim["fence"] and renewed["holder"] == "agent-a"
    await ok(client, "claim_release", {"key": f"{tag}:job", "lease_token": claim["lease_token"]})
    assert (await ok(client, "claim_get", {"key": f"{tag}:job"}))["claimed"] is False
    assert "lease_lost" in await fails(
        client, "claim_renew", {"key": f"{tag}:job", "lease_token": claim["lease_token"]}
    )

    # A desktop agent's own room, and the history of what it changed there.
    ns = {"namespace": f"tour/{tag}"}
    mem = await ok(client, "memory_store", {"content": "Standup is at 9:30", "key": "meeting:standup", **ns})
    await ok(client, "memory_update", {"id": mem["id"], "content": "Standup moved to 10:15", **ns})
    assert (await ok(client, "key_get", {"key": "meeting:standup"}))["found"] is False  # `default` has no such key
    history = await ok(client, "memory_history", {"id": mem["id"], **ns})
    assert [v["content"] for v in history["versions"]] == ["Standup moved to 10:15", "Standup is at 9:30"]
    first = history["versions"][1]["version"]
    assert (await ok(client, "memory_revert", {"id": mem["id"], "version": first, **ns}))[
        "content"
    ] == "Standup is at 9:30"
    await ok(client, "memory_delete", {"id": mem["id"], **ns})
    assert [d["id"] for d in (await ok(client, "memory_deleted", ns))["results"]] == [mem["id"]]
    restored = await ok(client, "memory_restore", {"id": mem["id"], **ns})
    assert restored["content"] == "Standup is at 9:30" and restored["namespace"] == ns["namespace"]
    hits = await ok(client, "memory_search", {"query": "when is the daily meeting?", "mode": "semantic", **ns})
    assert [h["id"] for h in hits["results"]] == [mem["id"]]  # found by meaning again, with its own vector
    listed = (await ok(client, "memory_namespaces", {"namespace": "tour"}))["namespaces"]
    assert {"namespace": ns["namespace"], "memories": 1} in listed


async def test_stdio(server, tmp_path):
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "memory_spine", "mcp", "--url", server.url, "--token", SERVICE_TOKEN],
        env={"PYTHONPATH": str(ROOT)},
        cwd=str(ROOT),
    )
    with open(tmp_path / "mcp-stdio.log", "w") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            assert client.server_info.name == "memory-spine"
            await exercise(client)


async def test_stdio_without_the_service_token_reports_it(server, tmp_path):
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "memory_spine", "mcp", "--url", server.url], env={"PYTHONPATH": str(ROOT)}
    )
    with open(tmp_path / "mcp-stdio.log", "w") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            assert "unauthorized" in await fails(client, "memory_stats", {})


def start_mcp_http(log_path: Path, *args: str) -> tuple[subprocess.Popen, str]:
    """`memory-spine mcp --http` on a free port with `args`, once it answers /health: (process, base URL)."""
    port = free_port()
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        mcp_command("--http", "--port", str(port), *args), stdout=log, stderr=subprocess.STDOUT, env=env(), cwd=ROOT
    )
    log.close()  # the child holds its own copy
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(log_path.read_text())
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("mcp --http never answered /health:\n" + log_path.read_text())
        time.sleep(0.1)


@pytest.fixture
def mcp_http(server, tmp_path):
    # Both tokens from files, so neither shows in `ps` (the tools reach the service only with the right one).
    (tmp_path / "svc.tok").write_text(SERVICE_TOKEN + "\n")
    (tmp_path / "mcp.tok").write_text(MCP_TOKEN + "\n")
    args = ["--url", server.url, "--token-file", str(tmp_path / "svc.tok")]
    args += ["--http-token-file", str(tmp_path / "mcp.tok")]
    proc, url = start_mcp_http(tmp_path / "mcp-http.log", *args)
    cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
    assert SERVICE_TOKEN.encode() not in cmdline and MCP_TOKEN.encode() not in cmdline
    yield url
    proc.terminate()
    assert proc.wait(timeout=30) == 0  # SIGTERM: graceful stop, exit 0


async def test_streamable_http_with_a_bearer_token(mcp_http):
    async with httpx.AsyncClient() as plain:
        for headers in ({}, {"Authorization": f"Bearer {SERVICE_TOKEN}"}):
            r = await plain.post(f"{mcp_http}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    headers = {"Authorization": f"Bearer {MCP_TOKEN}"}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120)) as http:
        async with Client(streamable_http_client(f"{mcp_http}/mcp", http_client=http)) as client:
            await exercise(client)


def test_data_dir_held_by_serve_is_refused(server):
    done = subprocess.run(
        mcp_command("--data-dir", str(server.data_dir), "--embedder", "onnx"),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env(),
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 2
    assert "another memory-spine process is already serving" in done.stderr


async def test_standalone_data_dir_owns_its_dir(tmp_path):
    data = tmp_path / "standalone"
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "memory_spine", "mcp", "--data-dir", str(data), "--embedder", "fake"],
        env={"PYTHONPATH": str(ROOT)},
    )
    with open(tmp_path / "mcp-standalone.log", "w") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            stored = await ok(client, "memory_store", {"content": "kept in-process", "tags": ["solo"]})
            found = await ok(client, "memory_search", {"query": "kept in-process", "mode": "keyword"})
            assert [hit["id"] for hit in found["results"]] == [stored["id"]]
            assert "limit" in await fails(client, "memory_search", {"query": "x", "limit": 0})
            # While it runs, a `serve` on the same dir refuses to start instead of sharing it.
            other = ServerProcess(data, embedder="fake").start(wait=False)
            try:
                assert other.proc.wait(timeout=120) != 0
                assert "another memory-spine process is already serving" in other.output()
            finally:
                other.stop()
            assert (await ok(client, "memory_get", {"id": stored["id"]}))["content"] == "kept in-process"
    # Closed cleanly: the dir is free again, and the record is there for the next owner.
    again = ServerProcess(data, embedder="fake").start()
    try:
        r = httpx.get(f"{again.url}/memories/{stored['id']}", timeout=10)
        assert r.status_code == 200 and r.json()["tags"] == ["solo"]
    finally:
        again.stop()


def readme_configs() -> list[dict[str, Any]]:
    """The `mcpServers` entries of the README's MCP section, as a user pastes them into a client."""
    text = (ROOT / "README.md").read_text()
    start = text.index("\n## MCP server\n")
    section = text[start : text.index("\n## ", start + 1)]
    return [
        json.loads(block)["mcpServers"]["memory-spine"] for block in re.findall(r"```json\n(.*?)```", section, re.S)
    ]


async def test_the_readme_client_configs_start_as_pasted(server, tmp_path):
    stdio, http = readme_configs()
    # stdio: the command and args as given; the service's URL and token in place of the example's.
    env = {**stdio["env"], "MEMORY_SPINE_URL": server.url, "MEMORY_SPINE_TOKEN": SERVICE_TOKEN, "PYTHONPATH": str(ROOT)}
    env["PATH"] = os.environ["PATH"]
    params = StdioServerParameters(command=stdio["command"], args=stdio["args"], env=env, cwd=str(ROOT))
    with open(tmp_path / "mcp-stdio.log", "w") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            assert {t.name for t in (await client.list_tools()).tools} == TOOLS
            assert (await ok(client, "memory_stats"))["total_memories"] >= 0
    # HTTP: the URL (on a free port) and headers as given, against `mcp --http --http-token change-me`.
    token = http["headers"]["Authorization"].removeprefix("Bearer ")
    proc, url = start_mcp_http(
        tmp_path / "mcp-http.log", "--url", server.url, "--token", SERVICE_TOKEN, "--http-token", token
    )
    try:
        assert http["type"] == "http" and http["url"].endswith("/mcp")
        async with httpx2.AsyncClient(headers=http["headers"], timeout=httpx2.Timeout(30, read=120)) as web:
            async with Client(streamable_http_client(f"{url}/mcp", http_client=web)) as client:
                assert {t.name for t in (await client.list_tools()).tools} == TOOLS
                assert (await ok(client, "memory_namespaces"))["namespaces"] is not None
    finally:
        proc.terminate()
        proc.wait(timeout=30)
