"""The MCP tools in-process: the `mcp` SDK's own client against `build_server`, whose MemoryClient reaches the
app over ASGI (fake embedder). Tool names and schemas, every tool's answer (keys and claims included),
seed-compatible checkpoint records, logging/setLevel filtering the log messages, completion/complete of keys, ids
shaped like the HTTP API's, and every failure coming back as a tool error that names the reason while the server
keeps serving."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from mcp import Client
from mcp.types import LoggingMessageNotificationParams, PromptReference, ResourceTemplateReference

from memory_spine.mcp_server import BearerAuth, build_server
from workflow_kit import MemoryClient

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

READ_ONLY = {
    *("memory_search", "memory_get", "memory_stats", "memory_history", "memory_deleted", "memory_namespaces"),
    *("checkpoint_latest", "key_get", "key_list", "claim_get"),
}
# A delete removes a memory from every read, a release gives the claim to whoever asks next; an update or revert
# keeps the version it replaces (memory_revert brings it back), so neither is destructive.
DESTRUCTIVE = {"memory_delete", "claim_release"}
# A second identical call changes nothing more: the same conversation id rewritten with the same turns, a delete
# or release already done (not_found), a restore already done (conflict: the memory is live).
IDEMPOTENT = {"conversation_store", "memory_delete", "memory_restore", "claim_release"}


@pytest.fixture
def kit(app) -> MemoryClient:
    return MemoryClient("http://memory-spine", transport=httpx.ASGITransport(app=app))


@pytest.fixture
def server(app):
    # The SDK's Client holds anyio task groups, which must be entered and left in one task: each test opens its
    # own `async with Client(server)` rather than sharing one from an async fixture.
    return build_server(lambda: MemoryClient("http://memory-spine", transport=httpx.ASGITransport(app=app)))


async def call(client: Client, name: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    result = await client.call_tool(name, args or {})
    assert not result.is_error, result.content[0].text
    return result.structured_content


async def error(client: Client, name: str, args: dict[str, Any]) -> str:
    result = await client.call_tool(name, args)
    assert result.is_error, result
    return result.content[0].text


async def test_tools_have_descriptions_and_schemas(server):
    async with Client(server) as mcp:
        tools = {t.name: t for t in (await mcp.list_tools()).tools}
        assert set(tools) == TOOLS
        for tool in tools.values():
            assert tool.description and len(tool.description) > 30, tool.name
            assert tool.input_schema["type"] == "object"
            for name, prop in tool.input_schema.get("properties", {}).items():
                assert prop.get("description"), f"{tool.name}.{name} has no description"
        search = tools["memory_search"].input_schema
        assert search["required"] == ["query"]
        assert search["properties"]["limit"]["maximum"] == 100 and search["properties"]["limit"]["minimum"] == 1
        assert set(search["properties"]) == {
            *("query", "limit", "tags", "min_score", "mode", "where", "namespace"),
            *("when", "as_of", "conversation"),
        }
        modes = [s for s in search["properties"]["mode"]["anyOf"] if "enum" in s][0]["enum"]
        assert modes == ["semantic", "keyword", "hybrid"]
        store = tools["memory_store"].input_schema
        assert store["required"] == ["content"]
        assert set(store["properties"]) == {"id", "content", "tags", "importance", "metadata", "key", "namespace"}
        for tool in tools.values():  # every tool works in a namespace of the caller's choosing
            assert "namespace" in tool.input_schema["properties"], tool.name
        for name, tool in tools.items():  # the hints a client shows before a call: each tool's, by kind
            hints = tool.annotations
            assert hints.open_world_hint is False, name  # nothing outside this memory
            if name in READ_ONLY:
                assert hints.read_only_hint is True, name
                continue
            assert hints.read_only_hint is False, name
            assert hints.destructive_hint is (name in DESTRUCTIVE), name
            assert hints.idempotent_hint is (name in IDEMPOTENT), name


async def test_store_get_update_search_delete(server):
    async with Client(server) as mcp:
        stored = await call(
            mcp,
            "memory_store",
            {
                "content": "the billing deploy failed on a migration timeout",
                "tags": ["incident"],
                "importance": "high",
                "metadata": {"service": "billing", "severity": 3},
            },
        )
        assert stored["created"] is True
        memory = await call(mcp, "memory_get", {"id": stored["id"]})
        assert memory["content"].startswith("the billing deploy")
        assert memory["tags"] == ["incident"] and memory["importance"] == "high"
        assert memory["metadata"] == {"service": "billing", "severity": 3}

        updated = await call(mcp, "memory_update", {"id": stored["id"], "metadata": {"severity": 4}, "tags": ["x"]})
        assert updated["metadata"] == {"service": "billing", "severity": 4} and updated["tags"] == ["x"]

        found = await call(mcp, "memory_search", {"query": "billing migration timeout", "mode": "keyword", "limit": 5})
        assert [hit["id"] for hit in found["results"]] == [stored["id"]]
        assert found["results"][0]["rank_score"] > 0 and found["results"][0]["score"] is None  # keyword: no cosine
        found = await call(mcp, "memory_search", {"query": "billing migration timeout", "mode": "hybrid"})
        assert found["results"][0]["score"] > 0.3
        filtered = await call(mcp, "memory_search", {"query": "billing", "where": {"severity": {"$gte": 5}}})
        assert filtered["results"] == []

        again = await call(mcp, "memory_store", {"id": stored["id"], "content": "replaced"})
        assert again == {"id": stored["id"], "key": None, "created": False}
        assert (await call(mcp, "memory_stats"))["total_memories"] == 1
        assert await call(mcp, "memory_delete", {"id": stored["id"]}) == {"deleted": 1}
        assert "not_found" in await error(mcp, "memory_get", {"id": stored["id"]})


async def test_checkpoints_are_the_seed_records(server, kit):
    async with Client(server) as mcp:
        assert await call(mcp, "checkpoint_latest", {"workflow_id": "wf-1"}) == {"found": False, "checkpoint": None}
        saved = await call(mcp, "checkpoint_save", {"workflow_id": "wf-1", "step": "fetch", "result": {"n": 3}})
        assert saved["key"] == "checkpoint:wf-1:fetch"
        await call(
            mcp, "checkpoint_save", {"workflow_id": "wf-1", "step": "review", "result": "ok", "data": {"by": "a"}}
        )
        await call(mcp, "checkpoint_save", {"workflow_id": "wf-12", "step": "other", "result": None})

        # What the seed's checkpoint() would have written, and what its resume_from_checkpoint() reads back,
        # in the kit's namespace (`_kit/default`), out of users' searches.
        record = await kit.kit.get(saved["id"])
        assert record["content"] == "checkpoint:wf-1:fetch"
        assert record["metadata"] == {"workflow_id": "wf-1", "step": "fetch", "result": {"n": 3}}
        assert record["tags"] == ["checkpoint", "workflow", "wf-1"]
        seed = (await kit.kit.search("checkpoint:wf-1", limit=1))["results"][0]["metadata"]
        assert (await kit.search("checkpoint:wf-1", limit=1))["results"] == []

        latest = await call(mcp, "checkpoint_latest", {"workflow_id": "wf-1"})
        assert latest["found"] is True
        assert latest["checkpoint"] == seed == {"workflow_id": "wf-1", "step": "review", "by": "a", "result": "ok"}
        assert (await call(mcp, "checkpoint_latest", {"workflow_id": "wf-12"}))["checkpoint"]["step"] == "other"


async def test_bad_arguments_are_tool_errors_naming_the_field(server):
    async with Client(server) as mcp:
        # Refused by the tool's JSON schema, before any request.
        assert "limit" in await error(mcp, "memory_search", {"query": "x", "limit": 101})
        assert "mode" in await error(mcp, "memory_search", {"query": "x", "mode": "fuzzy"})
        assert "content" in await error(mcp, "memory_store", {"tags": ["no content"]})
        assert "importance" in await error(mcp, "memory_store", {"content": "x", "importance": "urgent"})
        # Refused by the service, which names the field.
        assert "invalid_input: content: must not be empty" in await error(mcp, "memory_store", {"content": "   "})
        text = await error(mcp, "memory_store", {"content": "x", "tags": ["t"] * 65})
        assert "tags" in text and "64" in text
        assert "where" in await error(mcp, "memory_search", {"query": "x", "where": {'a"b': 1}})
        assert "not_found" in await error(mcp, "memory_update", {"id": "nope", "content": "x"})
        assert "not_found" in await error(mcp, "memory_delete", {"id": "nope"})
        # Refused by the kit's checks on the seed's key formats.
        assert "workflow_id" in await error(mcp, "checkpoint_save", {"workflow_id": "a:b", "step": "s"})
        assert "step" in await error(mcp, "checkpoint_save", {"workflow_id": "wf", "step": "two words"})
        assert "workflow_id" in await error(mcp, "checkpoint_latest", {"workflow_id": "wf 1"})
        # ...and the server still serves.
        assert (await call(mcp, "memory_store", {"content": "still here"}))["created"] is True


async def test_an_unreachable_service_is_a_tool_error():
    server = build_server(lambda: MemoryClient("http://127.0.0.1:9", retries=0, timeout=2.0))
    async with Client(server) as client:
        text = await error(client, "memory_stats", {})
        assert "cannot reach http://127.0.0.1:9" in text and "memory-spine serve" in text
        assert "not_ready" in await error(client, "memory_search", {"query": "x"})


async def test_bearer_auth_guards_everything_but_health():
    server = build_server(lambda: MemoryClient("http://127.0.0.1:9"))
    app = BearerAuth(server.streamable_http_app(), "s3cret")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as http:
        assert (await http.get("/health")).json()["status"] == "ok"
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
            r = await http.post("/mcp", json={}, headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
            assert r.json()["error"]["type"] == "unauthorized"


async def test_keys_by_exact_key_and_prefix(server):
    async with Client(server) as mcp:
        assert await call(mcp, "key_get", {"key": "user:ana:lang"}) == {"found": False, "memory": None}
        first = await call(mcp, "memory_store", {"content": "Ana writes Portuguese", "key": "user:ana:lang"})
        await call(mcp, "memory_store", {"content": "Ana is in Lisbon", "key": "user:ana:city"})
        await call(mcp, "memory_store", {"content": "Bo is in Oslo", "key": "user:bo:city"})
        got = await call(mcp, "key_get", {"key": "user:ana:lang"})
        assert got["found"] is True and got["memory"]["id"] == first["id"]
        assert got["memory"]["content"] == "Ana writes Portuguese"
        listed = await call(mcp, "key_list", {"prefix": "user:ana:"})
        assert [m["key"] for m in listed["results"]] == ["user:ana:city", "user:ana:lang"]  # newest first
        assert [m["key"] for m in (await call(mcp, "key_list", {"prefix": "user:", "limit": 1}))["results"]] == [
            "user:bo:city"
        ]
        assert "limit" in await error(mcp, "key_list", {"prefix": "user:", "limit": 0})
        assert "prefix" in await error(mcp, "key_list", {"prefix": ""})


async def test_claims_acquire_get_release_with_what_the_claim_returned(server):
    async with Client(server) as mcp:
        assert await call(mcp, "claim_get", {"key": "task:42"}) == {"claimed": False, "claim": None}
        mine = await call(mcp, "claim_acquire", {"key": "task:42", "holder": "agent-a", "lease_seconds": 60})
        assert mine["holder"] == "agent-a"
        assert (await call(mcp, "claim_get", {"key": "task:42"}))["claim"]["holder"] == "agent-a"
        assert "conflict" in await error(mcp, "claim_acquire", {"key": "task:42", "holder": "agent-b"})
        # The holder's name proves nothing: renewing and releasing take the lease token the claim returned.
        assert "conflict" in await error(mcp, "claim_acquire", {"key": "task:42", "holder": "agent-a"})
        renewed = await call(mcp, "claim_acquire", {"key": "task:42", "lease_token": mine["lease_token"]})
        assert renewed["fence"] == mine["fence"] and renewed["expires_at"] >= mine["expires_at"]
        proof = {"lease_token": mine["lease_token"]}
        assert "lease_lost" in await error(mcp, "claim_release", {"key": "task:42", "lease_token": "not-mine"})
        assert "lease_token" in await error(mcp, "claim_release", {"key": "task:42", "holder": "agent-a"})
        await call(mcp, "claim_release", {"key": "task:42", **proof})
        assert (await call(mcp, "claim_get", {"key": "task:42"}))["claimed"] is False
        assert "not_found" in await error(mcp, "claim_release", {"key": "task:42", **proof})
        assert (await call(mcp, "claim_acquire", {"key": "task:42", "holder": "agent-b"}))["holder"] == "agent-b"


async def test_set_level_filters_the_log_messages(server):
    received: list[LoggingMessageNotificationParams] = []

    async def on_log(params: LoggingMessageNotificationParams) -> None:
        received.append(params)

    # logging/setLevel belongs to the handshake protocol versions (2025-06-18, 2025-11-25: what desktop clients and
    # the conformance suite speak); from 2026-07-28 a client opts in per request instead, which the SDK handles.
    async with Client(server, logging_callback=on_log, mode="legacy") as mcp:
        assert mcp.server_capabilities.logging is not None
        await error(mcp, "memory_get", {"id": "missing-1"})  # default level: warning, so the error is sent
        await call(mcp, "memory_stats")  # a debug message: filtered
        assert [(m.level, m.data["tool"]) for m in received] == [("error", "memory_get")]
        assert "not_found" in received[0].data["error"]

        await mcp.set_logging_level("debug")
        await call(mcp, "memory_stats")
        assert [(m.level, m.data["tool"]) for m in received[1:]] == [("debug", "memory_stats")]

        await mcp.set_logging_level("critical")
        await error(mcp, "memory_get", {"id": "missing-2"})
        await call(mcp, "memory_stats")
        assert len(received) == 2


async def test_completion_of_keys_and_the_key_resource(server):
    async with Client(server) as mcp:
        assert mcp.server_capabilities.completions is not None
        for key in ("project:acme:db", "project:acme:cache", "project:zeta:db"):
            await call(mcp, "memory_store", {"content": f"decision on {key}", "key": key})
        template = ResourceTemplateReference(uri="memory://keys/{key}")
        done = await mcp.complete(template, {"name": "key", "value": "project:acme:"})
        assert sorted(done.completion.values) == ["project:acme:cache", "project:acme:db"]
        assert done.completion.has_more is False
        every = await mcp.complete(template, {"name": "key", "value": "p"})
        assert len(every.completion.values) == 3
        assert (await mcp.complete(template, {"name": "key", "value": ""})).completion.values == []
        # Anything else completes to nothing, without an error.
        nothing = await mcp.complete(PromptReference(name="no_such_prompt"), {"name": "arg1", "value": "x"})
        assert nothing.completion.values == []

        templates = (await mcp.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == ["memory://keys/{key}"]
        read = await mcp.read_resource("memory://keys/project:acme:db")
        assert json.loads(read.contents[0].text)["content"] == "decision on project:acme:db"


async def test_generated_ids_look_like_the_http_apis(server, kit, client):
    # One id shape whatever path created the record: the service's own (HTTP without an id), the kit's client,
    # the kit's checkpoints, and MCP's memory_store / checkpoint_save.
    async with Client(server) as mcp:
        ids = [
            (await client.post("/ingest", json={"content": "over http"})).json()["id"],
            (await kit.ingest("through the kit"))["id"],
            (await kit.checkpoint("wf-ids", "step-a", {"n": 1}))["id"],
            (await call(mcp, "memory_store", {"content": "through mcp"}))["id"],
            (await call(mcp, "checkpoint_save", {"workflow_id": "wf-ids", "step": "step-b"}))["id"],
        ]
    for memory_id in ids:
        assert str(uuid.UUID(memory_id)) == memory_id, ids  # canonical: lower-case hex with dashes


def test_token_files_fill_the_tokens_and_a_bad_one_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    import argparse

    from memory_spine import mcp_server

    for name in ("MEMORY_SPINE_TOKEN_FILE", "MEMORY_SPINE_MCP_TOKEN_FILE", "MEMORY_SPINE_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    parser = argparse.ArgumentParser()
    mcp_server.add_arguments(parser)
    service, clients = tmp_path / "service", tmp_path / "clients"
    service.write_text("s3cret-service\nignored\n")
    clients.write_text("s3cret-clients\n")
    args = parser.parse_args(["--token-file", str(service), "--http-token-file", str(clients)])
    mcp_server._read_token_files(args)
    assert (args.token, args.http_token) == ("s3cret-service", "s3cret-clients")
    monkeypatch.setenv("MEMORY_SPINE_TOKEN_FILE", str(service))  # the environment works as the flag does
    args = parser.parse_args([])
    mcp_server._read_token_files(args)
    assert args.token == "s3cret-service"
    monkeypatch.delenv("MEMORY_SPINE_TOKEN_FILE")

    empty = tmp_path / "empty"
    empty.write_text("\n")
    for argv, words in (
        (["--token-file", str(empty)], "empty"),
        (["--token-file", str(tmp_path / "missing")], "cannot read"),
        (["--token", "x", "--token-file", str(service)], "not both"),
        (["--http-token-file", str(empty)], "--http-token-file"),
    ):
        assert mcp_server.run(parser.parse_args(argv)) == 2, argv
        err = capsys.readouterr().err
        assert words in err and err.startswith("memory-spine: ") and err.count("\n") == 1, err
        assert "s3cret" not in err


async def test_tools_work_in_the_namespace_they_are_given(server):
    async with Client(server) as mcp:
        await call(mcp, "memory_store", {"content": "the billing db is postgres", "id": "m", "namespace": "team/a"})
        await call(mcp, "memory_store", {"content": "the billing db is mysql", "id": "m", "namespace": "team/b"})
        assert (await call(mcp, "memory_get", {"id": "m", "namespace": "team/b"}))["content"].endswith("mysql")
        found = await call(mcp, "memory_search", {"query": "billing db", "mode": "keyword", "namespace": "team/"})
        assert sorted(h["namespace"] for h in found["results"]) == ["team/a", "team/b"]
        assert (await call(mcp, "memory_search", {"query": "billing db", "mode": "keyword"}))["results"] == []
        claim = await call(mcp, "claim_acquire", {"key": "task:1", "namespace": "team/a"})
        assert claim["namespace"] == "team/a"
        assert (await call(mcp, "claim_get", {"key": "task:1"}))["claimed"] is False
        assert "namespace" in await error(mcp, "memory_get", {"id": "m", "namespace": "a//b"})


async def test_conversation_store_and_search_by_conversation(server):
    sessions = [
        {
            "id": "s1",
            "date": "2023-05-08T13:56:00Z",
            "turns": [
                {"speaker": "Ann", "text": "We adopted a corgi named Biscuit."},
                {"speaker": "Bo", "text": "Lovely! Send a photo."},
            ],
        }
    ]
    async with Client(server) as mcp:
        stored = await call(mcp, "conversation_store", {"id": "c1", "sessions": sessions, "tags": ["chat"]})
        assert stored["turns"] == 2 and stored["records"] == 2 + 2 + 1
        found = await call(
            mcp, "memory_search", {"query": "corgi", "conversation": "c1", "when": "May 2023", "mode": "keyword"}
        )
        assert [h["id"] for h in found["results"]][0] == "c1#turn:s1:1"
        assert found["time_range"]["from"] == "2023-05-01T00:00:00Z"
        assert "sessions[0].turns[0].text" in await error(
            mcp, "conversation_store", {"id": "c2", "sessions": [{"turns": [{"speaker": "Ann", "text": ""}]}]}
        )


async def test_history_revert_deleted_and_restore(server):
    async with Client(server) as mcp:
        ns = {"namespace": "team/a"}
        stored = await call(mcp, "memory_store", {"content": "the db is mysql", "id": "db", "tags": ["t1"], **ns})
        first = (await call(mcp, "memory_get", {"id": "db", **ns}))["version"]
        await call(mcp, "memory_update", {"id": "db", "content": "the db is postgres", "tags": ["t2"], **ns})
        history = await call(mcp, "memory_history", {"id": stored["id"], **ns})
        assert [v["content"] for v in history["versions"]] == ["the db is postgres", "the db is mysql"]
        assert (
            history["versions"][0]["changed"] == ["content", "tags"] and history["versions"][1]["ended_by"] == "patch"
        )
        assert history["versions"][1]["version"] == first and history["deleted_at"] is None
        await call(mcp, "memory_update", {"id": "db", "importance": "high", **ns})
        one = await call(mcp, "memory_history", {"id": "db", "limit": 1, **ns})  # one earlier version, and the live
        assert [v["content"] for v in one["versions"]] == ["the db is postgres"] * 2
        assert "not_found" in await error(mcp, "memory_history", {"id": "db"})  # another namespace's record

        reverted = await call(mcp, "memory_revert", {"id": "db", "version": first, **ns})
        assert reverted["content"] == "the db is mysql" and reverted["tags"] == ["t1"]
        assert reverted["version"] > history["current_version"]
        # Found by meaning again as the old text (the version's own vector came back).
        found = await call(mcp, "memory_search", {"query": "the db is mysql", "mode": "semantic", **ns})
        assert found["results"][0]["id"] == "db"
        stale = await error(mcp, "memory_revert", {"id": "db", "version": first, "if_version": first, **ns})
        assert "precondition_failed" in stale
        assert "version" in await error(mcp, "memory_revert", {"id": "db", "version": 999_999, **ns})
        assert "version" in await error(mcp, "memory_revert", {"id": "db", "version": 0, **ns})  # the schema's

        assert await call(mcp, "memory_deleted", ns) == {"results": [], "next_cursor": None}
        assert "conflict" in await error(mcp, "memory_restore", {"id": "db", **ns})  # live: revert it instead
        await call(mcp, "memory_delete", {"id": "db", **ns})
        gone = await call(mcp, "memory_deleted", ns)
        assert [(d["id"], d["content"], d["deleted_by"]) for d in gone["results"]] == [
            ("db", "the db is mysql", "delete")
        ]
        assert (await call(mcp, "memory_deleted", {}))["results"] == []  # `default` lost nothing
        assert "conflict" in await error(mcp, "memory_revert", {"id": "db", "version": first, **ns})  # restore first
        deleted = await call(mcp, "memory_history", {"id": "db", **ns})
        assert deleted["current_version"] is None and deleted["deleted_at"]

        restored = await call(mcp, "memory_restore", {"id": "db", **ns})
        assert restored["content"] == "the db is mysql" and restored["namespace"] == "team/a"
        assert (await call(mcp, "memory_get", {"id": "db", **ns}))["version"] == restored["version"]
        assert (await call(mcp, "memory_deleted", ns))["results"] == []
        await call(mcp, "memory_delete", {"id": "db", **ns})
        older = await call(mcp, "memory_restore", {"id": "db", "version": history["current_version"], **ns})
        assert older["content"] == "the db is postgres"
        assert "not_found" in await error(mcp, "memory_restore", {"id": "never-was", **ns})


async def test_memory_get_as_of_reads_the_version_live_then(server):
    async with Client(server) as mcp:
        await call(mcp, "memory_store", {"content": "v1", "id": "m"})
        then = (await call(mcp, "memory_get", {"id": "m"}))["updated_at"]
        await call(mcp, "memory_update", {"id": "m", "content": "v2"})
        assert (await call(mcp, "memory_get", {"id": "m", "as_of": then}))["content"] == "v1"
        assert (await call(mcp, "memory_get", {"id": "m"}))["content"] == "v2"
        assert "not_found" in await error(mcp, "memory_get", {"id": "m", "as_of": "2001-01-01T00:00:00Z"})
        assert "as_of" in await error(mcp, "memory_get", {"id": "m", "as_of": "yesterday-ish"})


async def test_memory_namespaces_lists_them_with_counts_and_a_subtree(server):
    async with Client(server) as mcp:
        for ns in ("team", "team/a", "team/a", "team/ab", "teammate", "other"):
            await call(mcp, "memory_store", {"content": f"a note in {ns}", "namespace": ns})
        every = (await call(mcp, "memory_namespaces"))["namespaces"]
        assert every == [
            {"namespace": n, "memories": c}
            for n, c in (("other", 1), ("team", 1), ("team/a", 2), ("team/ab", 1), ("teammate", 1))
        ]
        team = (await call(mcp, "memory_namespaces", {"namespace": "team"}))["namespaces"]
        assert [n["namespace"] for n in team] == ["team", "team/a", "team/ab"]  # not `teammate`
        assert [
            n["namespace"] for n in (await call(mcp, "memory_namespaces", {"namespace": "team/a/"}))["namespaces"]
        ] == ["team/a"]
        assert (await call(mcp, "memory_namespaces", {"namespace": "nobody"}))["namespaces"] == []
        assert "invalid_input: namespace:" in await error(mcp, "memory_namespaces", {"namespace": "a//b"})


async def test_claim_renew_extends_only_with_the_lease_token(server):
    async with Client(server) as mcp:
        mine = await call(mcp, "claim_acquire", {"key": "task:7", "holder": "a", "lease_seconds": 5, "namespace": "x"})
        renewed = await call(
            mcp,
            "claim_renew",
            {"key": "task:7", "lease_token": mine["lease_token"], "lease_seconds": 600, "namespace": "x"},
        )
        assert renewed["fence"] == mine["fence"] and renewed["holder"] == "a"
        assert renewed["expires_at"] > mine["expires_at"]
        assert "lease_lost" in await error(
            mcp, "claim_renew", {"key": "task:7", "lease_token": "guess", "namespace": "x"}
        )
        assert "lease_lost" in await error(mcp, "claim_renew", {"key": "task:7", "lease_token": mine["lease_token"]})
        assert "lease_seconds" in await error(
            mcp, "claim_renew", {"key": "task:7", "lease_token": mine["lease_token"], "lease_seconds": 0}
        )
