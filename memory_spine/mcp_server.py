"""The MCP server: Memory Spine's tools for agents that speak the Model Context Protocol.

`memory-spine mcp` serves over stdio (what desktop agents launch); `memory-spine mcp --http` serves streamable
HTTP on 127.0.0.1:8789 at `/mcp`, behind `Authorization: Bearer <token>` when a token is configured.

How the tools reach the core. By default the server is a client of a running `memory-spine serve` (`--url`,
default http://127.0.0.1:8788; `--token` / MEMORY_SPINE_TOKEN). One process owns a data dir (a file lock), and
desktop agents start one stdio server per session, often several at once: as clients they all share the one
service, start without loading a model, and see exactly what the HTTP API sees. `--data-dir` runs the core in
this process instead, for a standalone setup without `serve`; this process then owns the data dir, and a second
owner (a `serve`, or another `mcp --data-dir`) is refused at start with the lock's message, so two processes
never write one data dir. Both modes send every call through `workflow_kit.MemoryClient` (over HTTP, or over
ASGI to the same FastAPI app in-process), so they validate, and fail, exactly like the HTTP API.

Errors: whatever the service refuses (a field out of bounds, an unknown id, a service that is down) comes back
as an MCP tool error (`isError: true`) whose text names the reason; the server itself keeps running.

This module imports the `mcp` SDK and the service lazily, so `memory-spine --help` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import Field

if TYPE_CHECKING:
    from mcp.server.mcpserver import Context, MCPServer

    from workflow_kit.client import MemoryClient

DEFAULT_URL = "http://127.0.0.1:8788"
DEFAULT_HTTP_PORT = 8789
OPEN_PATHS = frozenset({"/health"})

INSTRUCTIONS = (
    "Memory Spine is a long-term memory for agents. memory_store saves a fact, decision or result (with tags, a"
    " JSON metadata object and optionally an exact key); memory_search finds memories by meaning (mode"
    " 'semantic'), by words ('keyword') or both ('hybrid', the default), filtered by tags or metadata; memory_get,"
    " memory_update and memory_delete work on one memory by id; key_get and key_list read memories by exact key"
    " or key prefix. Every change keeps the version it replaces: memory_history lists a memory's versions,"
    " memory_revert goes back to one, memory_deleted lists deleted memories and memory_restore brings one back."
    " claim_acquire, claim_renew, claim_get and claim_release keep two agents from doing the same work at once."
    " checkpoint_save and checkpoint_latest record and resume the steps of a long workflow. Every tool takes an"
    " optional `namespace` (e.g. 'team/agent-7'): memories, keys and claims in one namespace are invisible from"
    " another; leave it out to work in 'default'. memory_namespaces lists the namespaces that hold memories."
)
KEY_TEMPLATE = "memory://keys/{key}"
LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")

Importance = Literal["low", "medium", "high", "critical"]
Mode = Literal["semantic", "keyword", "hybrid"]
T = TypeVar("T")

# -- argument shapes: the service's names, each with a description an LLM can follow ---------------------------
MemoryId = Annotated[str, Field(description="The id of the memory (as returned by memory_store or memory_search).")]
Content = Annotated[str, Field(description="The text to remember. It is embedded for semantic search.")]
Tags = Annotated[
    list[str] | None,
    Field(description='Labels to filter by later, e.g. ["incident", "billing"]. Up to 64 tags of 128 characters.'),
]
ImportanceArg = Annotated[
    Importance | None, Field(description="How much this memory matters: low, medium (the default), high, critical.")
]
IfVersionArg = Annotated[
    int | None,
    Field(
        description="The `version` memory_get returned: change it only if nobody wrote it since (else a"
        " precondition_failed error naming the current version: read it again and redo the change)."
    ),
]
Metadata = Annotated[
    dict[str, Any] | None,
    Field(description="A JSON object stored with the memory (up to 64 KiB), filterable with `where` in search."),
]
Key = Annotated[
    str,
    Field(description="An exact key, e.g. 'project:acme:decision:db' (case-sensitive; ':' separates its parts)."),
]
WorkflowId = Annotated[str, Field(description="The workflow's id: no whitespace and no ':'.")]
NamespaceArg = Annotated[
    str | None,
    Field(
        description="The namespace to work in, e.g. 'team/agent-7': segments of letters, digits and _ - . :"
        " joined by '/'. Memories, keys and claims of one namespace are not seen from another. Leave out for"
        " 'default'."
    ),
]
SearchNamespaceArg = Annotated[
    str | list[str] | None,
    Field(
        description="Where to search: one namespace ('team/agent-7'), a list of them, or a name ending in '/'"
        " ('team/') for that namespace and everything under it. Each result says its `namespace`. Leave out for"
        " 'default'."
    ),
]
StepName = Annotated[str, Field(description="The step's name: no whitespace and no ':'.")]


def _given(**fields: Any) -> dict[str, Any]:
    """The arguments the caller gave (not None), to pass on as keywords: the service's defaults fill the rest."""
    return {k: v for k, v in fields.items() if v is not None}


def _reason(exc: Exception) -> str:
    """The text of a tool error: the service's error type and message (which names the field)."""
    from workflow_kit.errors import ServiceUnavailable

    kind = getattr(exc, "type", "error")
    message = getattr(exc, "message", None) or str(exc)
    if isinstance(exc, ServiceUnavailable) and "cannot reach" in message:
        return f"{kind}: {message}. Is `memory-spine serve` running there?"
    return f"{kind}: {message}"


def build_server(client_factory: Callable[[], MemoryClient]) -> MCPServer:
    """The MCP server with Memory Spine's tools, sending every call through one lazily made MemoryClient.

    Args:
        client_factory: makes the MemoryClient on first use (inside the server's event loop, where its
            connection pool will live).
    """
    import warnings
    import weakref

    from mcp.server.mcpserver import Context, MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.shared.exceptions import MCPDeprecationWarning
    from mcp.types import (
        Completion,
        CompletionArgument,
        CompletionContext,
        EmptyResult,
        LoggingLevel,
        PromptReference,
        ResourceTemplateReference,
        SetLevelRequestParams,
        ToolAnnotations,
    )
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response

    from workflow_kit.client import check_step_name, check_workflow_id
    from workflow_kit.errors import WorkflowKitError

    from ._version import __version__

    # The SDK reads the tools' signatures with `inspect.signature(eval_str=True)`, which resolves `ctx: Context`
    # in this module's globals; the SDK is imported here, lazily, so the name is published here too.
    globals()["Context"] = Context

    server: MCPServer = MCPServer(
        "memory-spine",
        title="Memory Spine",
        description="Long-term memory and workflow checkpoints for agents.",
        instructions=INSTRUCTIONS,
        version=__version__,
    )
    holder: list[MemoryClient] = []

    def client() -> MemoryClient:
        if not holder:
            holder.append(client_factory())
        return holder[0]

    # logging/setLevel: the lowest level each client session wants as `notifications/message` (until it sets one,
    # it gets warnings and worse). Keyed weakly, so a closed session's entry goes with it.
    levels: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()

    def connection(session: Any) -> Any:
        # A ServerSession is made per request; the connection under it is what lives as long as the client's
        # session (the SDK keeps it private, so fall back to the per-request object if it ever moves).
        return getattr(session, "_connection", session)

    async def set_level(ctx: Any, params: SetLevelRequestParams) -> EmptyResult:
        levels[connection(ctx.session)] = params.level
        return EmptyResult()

    # MCPServer has no decorator for logging/setLevel; its low-level server takes the handler (and then
    # advertises the `logging` capability).
    server._lowlevel_server.add_request_handler("logging/setLevel", SetLevelRequestParams, set_level)

    async def log(ctx: Context, level: LoggingLevel, data: dict[str, Any]) -> None:
        session = ctx.request_context.session
        if LOG_LEVELS.index(level) < LOG_LEVELS.index(levels.get(connection(session), "warning")):
            return
        with warnings.catch_warnings():  # deprecated for the 2026 protocol revision only; clients use it today
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await session.send_log_message(
                level=level, data=data, logger="memory-spine", related_request_id=ctx.request_id
            )

    async def call(
        ctx: Context, tool: str, op: Callable[[MemoryClient], Awaitable[T]], namespace: str | None = None
    ) -> T:
        # The one place service errors become tool errors (and `error` log messages for the sessions that want
        # them); anything else is a bug the SDK reports as one. `namespace`: the tool's, else the client's.
        try:
            result = await op(client() if namespace is None else client().in_namespace(namespace))
        except WorkflowKitError as exc:
            await log(ctx, "error", {"tool": tool, "error": _reason(exc)})
            raise ToolError(_reason(exc)) from exc
        await log(ctx, "debug", {"tool": tool, "done": True})
        return result

    # The hints clients show users before a call. Every tool stays inside this memory (open_world_hint=False).
    # `destructive`: it may remove or overwrite what another call cannot bring back (a delete, a released claim);
    # an update is not, its prior version is kept (memory_revert). `idempotent`: a second identical call changes
    # nothing more (a delete, a restore, a store or conversation under the same id).
    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    def writes(*, destructive: bool = False, idempotent: bool = False) -> ToolAnnotations:
        return ToolAnnotations(
            read_only_hint=False, destructive_hint=destructive, idempotent_hint=idempotent, open_world_hint=False
        )

    @server.tool(annotations=writes())
    async def memory_store(
        ctx: Context,
        content: Content,
        id: Annotated[
            str | None, Field(description="Your id for the memory; storing the same id again replaces it.")
        ] = None,
        tags: Tags = None,
        importance: ImportanceArg = None,
        metadata: Metadata = None,
        key: Annotated[
            str | None,
            Field(
                description="An exact key to find this memory by later with key_get / key_list, e.g."
                " 'user:ana:preferred-language'. Without one, the key is derived from the content."
            ),
        ] = None,
        namespace: NamespaceArg = None,
    ) -> dict[str, Any]:
        """Store a memory (a fact, decision, result or note) for later recall. Returns {id, key, created}.

        Each call without an `id` stores a new memory; with the `id` of an existing one it replaces that memory
        (created: false), whose previous version memory_history keeps."""
        fields = _given(id=id, tags=tags, importance=importance, metadata=metadata, key=key)
        return await call(ctx, "memory_store", lambda c: c.ingest(content, **fields), namespace)

    @server.tool(annotations=read_only)
    async def memory_search(
        ctx: Context,
        query: Annotated[
            str,
            Field(
                description="What to look for, in words. `checkpoint:{workflow_id}` finds that workflow's newest"
                " checkpoint exactly."
            ),
        ],
        limit: Annotated[int, Field(ge=1, le=100, description="How many results at most (1-100).")] = 10,
        tags: Annotated[list[str] | None, Field(description="Only memories carrying any of these tags.")] = None,
        min_score: Annotated[
            float | None,
            Field(
                description="Drop results whose cosine similarity with the query (their `score`) is below this,"
                " in every mode (e.g. 0.3 keeps loosely related ones)."
            ),
        ] = None,
        mode: Annotated[
            Mode | None,
            Field(
                description="semantic (by meaning), keyword (BM25 on the words) or hybrid (both, fused; the"
                " service's default unless configured otherwise)."
            ),
        ] = None,
        where: Annotated[
            dict[str, Any] | None,
            Field(
                description='Metadata conditions, e.g. {"service": "billing"} or {"severity": {"$gte": 3}}'
                " ($eq $ne $in $nin $gt $gte $lt $lte, $and/$or lists)."
            ),
        ] = None,
        namespace: SearchNamespaceArg = None,
        when: Annotated[
            str | None,
            Field(
                description="When it happened, in words: 'last week', 'in May 2023', 'two days before 2023-06-09'"
                " (against as_of, default now). The answer's time_range says the range applied."
            ),
        ] = None,
        as_of: Annotated[str | None, Field(description="The time `when` is read against (ISO 8601).")] = None,
        conversation: Annotated[
            str | None, Field(description="Only this conversation's turns (conversation_store), each turn once.")
        ] = None,
    ) -> dict[str, Any]:
        """Search memories by meaning, words or both, best first. Returns {results: [memory + score + rank_score]}:
        `score` is the cosine similarity with the query (null in keyword mode without min_score, and for exact key
        answers), `rank_score` what the results are ordered by."""
        given = _given(when=when, as_of=as_of, conversation=conversation)
        return await call(
            ctx,
            "memory_search",
            lambda c: c.search(
                query, limit=limit, tags=tags, min_score=min_score, mode=mode, where=where, namespace=namespace, **given
            ),
        )

    @server.tool(annotations=writes(idempotent=True))
    async def conversation_store(
        ctx: Context,
        id: Annotated[str, Field(description="The conversation's id; storing the same id again rewrites it.")],
        sessions: Annotated[
            list[dict[str, Any]],
            Field(
                description='Sessions in order: [{"id": "s1", "date": "2023-05-08T13:56:00Z", "turns": [{"id": "t1",'
                ' "speaker": "Ann", "text": "...", "captions": ["a photo of ..."]}]}]; ids are optional.'
            ),
        ],
        tags: Tags = None,
        namespace: NamespaceArg = None,
    ) -> dict[str, Any]:
        """Store a conversation turn by turn (each turn searchable with the context of its neighbours and its
        session; `memory_search` with `conversation` ranks its turns). Returns {id, turns, records, created}."""
        body = {"id": id, "sessions": sessions, **_given(tags=tags)}
        return await call(ctx, "conversation_store", lambda c: c.ingest_conversation(body), namespace)

    @server.tool(annotations=read_only)
    async def memory_get(
        ctx: Context,
        id: MemoryId,
        namespace: NamespaceArg = None,
        as_of: Annotated[
            str | None,
            Field(
                description="Read the memory as it was at this time (ISO 8601, e.g. '2026-11-24T06:10:00Z'): the"
                " version live then, from its history. Leave out for the current version."
            ),
        ] = None,
    ) -> dict[str, Any]:
        """Fetch one memory by id: {id, namespace, content, tags, metadata, importance, key, created_at, updated_at,
        version}. Fails with not_found if there is no such memory (or, with as_of, it did not exist then)."""
        return await call(ctx, "memory_get", lambda c: c.get(id, as_of=as_of), namespace)

    @server.tool(annotations=writes())
    async def memory_update(
        ctx: Context,
        id: MemoryId,
        content: Annotated[str | None, Field(description="New text (re-embedded).")] = None,
        tags: Annotated[list[str] | None, Field(description="New tags; they replace the old ones.")] = None,
        importance: ImportanceArg = None,
        metadata: Annotated[
            dict[str, Any] | None,
            Field(description="Keys to merge into the metadata; a null value removes that key."),
        ] = None,
        if_version: IfVersionArg = None,
        namespace: NamespaceArg = None,
    ) -> dict[str, Any]:
        """Change part of a memory; fields left out stay as they are. Returns the updated memory (with its new
        `version`). The version it replaces is kept: memory_history shows it, memory_revert brings it back."""
        given = _given(content=content, tags=tags, importance=importance, metadata=metadata, if_version=if_version)
        return await call(ctx, "memory_update", lambda c: c.update(id, **given), namespace)

    @server.tool(annotations=writes(destructive=True, idempotent=True))
    async def memory_delete(
        ctx: Context, id: MemoryId, if_version: IfVersionArg = None, namespace: NamespaceArg = None
    ) -> dict[str, Any]:
        """Delete one memory by id: searches, keys and memory_get no longer find it. Returns {deleted: 1}.

        Its last version is kept for the history's retention (by default 30 days): memory_deleted lists it and
        memory_restore brings it back until then."""
        return await call(ctx, "memory_delete", lambda c: c.delete(id, if_version=if_version), namespace)

    @server.tool(annotations=read_only)
    async def memory_history(
        ctx: Context,
        id: MemoryId,
        limit: Annotated[
            int | None,
            Field(
                ge=1, le=1000, description="How many earlier versions at most (default 100); the current one comes too."
            ),
        ] = None,
        namespace: NamespaceArg = None,
    ) -> dict[str, Any]:
        """A memory's versions, newest first: the current one and the earlier ones kept after each update,
        replacement, revert or delete (by default its last 10, for 30 days). Works for deleted memories too.

        Returns {id, current_version (null when deleted), deleted_at, versions: [{version, current, valid_from,
        valid_until, ended_by (patch, upsert, revert, restore, delete, delete_where), changed (the fields that
        differ from the version before), content, tags, metadata, importance, key, ...}]}. Pass a `version` to
        memory_revert to go back to it, or to memory_restore if the memory is deleted.
        """
        return await call(ctx, "memory_history", lambda c: c.history(id, **_given(limit=limit)), namespace)

    @server.tool(annotations=writes())
    async def memory_revert(
        ctx: Context,
        id: MemoryId,
        version: Annotated[
            int, Field(ge=1, description="The version to go back to: a `version` number from memory_history.")
        ],
        if_version: IfVersionArg = None,
        namespace: NamespaceArg = None,
    ) -> dict[str, Any]:
        """Undo changes to a memory: write a NEW version whose content, tags, metadata, importance and key are
        those of the earlier `version` (its expiry stays the current one's). The current version is kept in the
        history, so a revert can be reverted too. Returns the memory with its new `version`.

        Fails with not_found (field version) if that version is not kept, conflict if the memory is deleted (use
        memory_restore instead)."""
        given = _given(if_version=if_version)
        return await call(ctx, "memory_revert", lambda c: c.revert(id, version, **given), namespace)

    @server.tool(annotations=read_only)
    async def memory_deleted(
        ctx: Context,
        limit: Annotated[int, Field(ge=1, le=1000, description="How many memories at most (1-1000).")] = 50,
        cursor: Annotated[
            str | None, Field(description="The next_cursor of the previous answer, for the next page.")
        ] = None,
        namespace: NamespaceArg = None,
    ) -> dict[str, Any]:
        """List the namespace's deleted memories that can still be restored, most recently deleted first.

        Returns {results: [{id, content, tags, metadata, ..., version, deleted_at, deleted_by}], next_cursor}; each
        result is the memory as it was when deleted. Bring one back with memory_restore."""
        given = _given(cursor=cursor)
        return await call(ctx, "memory_deleted", lambda c: c.deleted(limit=limit, **given), namespace)

    @server.tool(annotations=writes(idempotent=True))
    async def memory_restore(
        ctx: Context,
        id: MemoryId,
        version: Annotated[
            int | None,
            Field(
                ge=1,
                description="A kept version to restore (from memory_history); leave out for the version deleted.",
            ),
        ] = None,
        namespace: NamespaceArg = None,
    ) -> dict[str, Any]:
        """Bring back a deleted memory (see memory_deleted) under its id, as a new version: as it was when deleted,
        or as the kept `version`. It is found by search again at once. Returns the memory.

        Fails with conflict while the memory exists (use memory_revert to change it back), not_found when nothing
        of it is kept any more."""
        return await call(ctx, "memory_restore", lambda c: c.restore(id, **_given(version=version)), namespace)

    @server.tool(annotations=read_only)
    async def memory_namespaces(
        ctx: Context,
        namespace: Annotated[
            str | None,
            Field(
                description="Only this namespace and the ones under it ('team' lists team, team/a, team/a/b);"
                " leave out for every namespace."
            ),
        ] = None,
    ) -> dict[str, Any]:
        """List the namespaces that hold memories, with how many each: {namespaces: [{namespace, memories}]},
        sorted by name. Names starting with '_' are system namespaces (`_kit/<namespace>` holds the workflow
        kit's checkpoints and traces for <namespace>)."""

        from workflow_kit.errors import InvalidInput

        from .errors import InvalidInput as Refused
        from .namespaces import validate

        async def listed(c: MemoryClient) -> dict[str, Any]:
            root = None if namespace is None else namespace.removesuffix("/")
            try:
                root = None if root is None else validate(root)  # as the service names a malformed one
            except Refused as exc:
                raise InvalidInput("namespace", exc.problem) from exc
            every = (await c.namespaces())["namespaces"]
            if root is None:
                return {"namespaces": every}
            return {"namespaces": [n for n in every if n["namespace"] == root or n["namespace"].startswith(root + "/")]}

        return await call(ctx, "memory_namespaces", listed)

    @server.tool(annotations=read_only)
    async def memory_stats(ctx: Context, namespace: NamespaceArg = None) -> dict[str, Any]:
        """How many memories the namespace holds, per tag, how many each namespace holds, and the state of the
        index and embedding model."""
        return await call(ctx, "memory_stats", lambda c: c.stats(), namespace)

    @server.tool(annotations=writes())
    async def checkpoint_save(
        ctx: Context,
        workflow_id: WorkflowId,
        step: StepName,
        result: Annotated[Any, Field(description="The step's result (any JSON value).")] = None,
        data: Annotated[
            dict[str, Any] | None, Field(description="More JSON fields to keep with the checkpoint.")
        ] = None,
        namespace: NamespaceArg = None,
    ) -> dict[str, Any]:
        """Record that a workflow step finished, so the workflow can resume after it.

        Stored as Memory Spine's checkpoint record: content `checkpoint:{workflow_id}:{step}`, metadata
        {workflow_id, step, result, ...data}. Returns {id, key, created}.
        """

        async def save(c: MemoryClient) -> dict[str, Any]:
            check_workflow_id(workflow_id)
            check_step_name(step)
            return await c.checkpoint(workflow_id, step, {**(data or {}), "result": result})

        return await call(ctx, "checkpoint_save", save, namespace)

    @server.tool(annotations=read_only)
    async def checkpoint_latest(
        ctx: Context, workflow_id: WorkflowId, namespace: NamespaceArg = None
    ) -> dict[str, Any]:
        """The newest checkpoint of a workflow, to resume after its step.

        Returns {found: true, checkpoint: {workflow_id, step, result, ...}, id, saved_at}, or {found: false}.
        """

        async def latest(c: MemoryClient) -> dict[str, Any]:
            check_workflow_id(workflow_id)
            # The kit's namespace (`_kit/<namespace>`), else the namespace itself (checkpoints from before namespaces).
            hits = (await c.kit.search(f"checkpoint:{workflow_id}", limit=1)).get("results") or []
            hits = hits or (await c.search(f"checkpoint:{workflow_id}", limit=1)).get("results") or []
            if not hits:
                return {"found": False, "checkpoint": None}
            return {
                "found": True,
                "checkpoint": hits[0]["metadata"],
                "id": hits[0]["id"],
                "saved_at": hits[0]["updated_at"],
            }

        return await call(ctx, "checkpoint_latest", latest, namespace)

    @server.tool(annotations=read_only)
    async def key_get(ctx: Context, key: Key, namespace: NamespaceArg = None) -> dict[str, Any]:
        """Fetch the memory stored under exactly this key (the newest, if several share it).

        Returns {found: true, memory: {id, content, tags, metadata, key, ...}} or {found: false} when no memory
        holds the key. Use key_list to find keys you only know the start of.
        """

        async def get(c: MemoryClient) -> dict[str, Any]:
            memory = await c.find_key(key)
            return {"found": memory is not None, "memory": memory}

        return await call(ctx, "key_get", get, namespace)

    @server.tool(annotations=read_only)
    async def key_list(
        ctx: Context,
        prefix: Annotated[
            str,
            Field(
                min_length=1,
                description="The start of the keys, e.g. 'project:acme:' for every key under project:acme.",
            ),
        ],
        limit: Annotated[int, Field(ge=1, le=1000, description="How many memories at most (1-1000).")] = 50,
        namespace: NamespaceArg = None,
    ) -> dict[str, Any]:
        """List the memories whose key starts with `prefix`, newest first. Returns {results: [memory]}."""
        return await call(ctx, "key_list", lambda c: c.list_keys(prefix, limit=limit), namespace)

    @server.tool(annotations=writes())
    async def claim_acquire(
        ctx: Context,
        key: Annotated[
            str, Field(description="What to claim: a key naming the work, e.g. 'task:issue-42' or 'file:src/app.py'.")
        ],
        holder: Annotated[
            str | None, Field(description="Who claims it (e.g. your agent's name); generated when left out.")
        ] = None,
        lease_seconds: Annotated[
            float | None,
            Field(gt=0, le=86_400, description="How long the claim lasts unless renewed (the service's default)."),
        ] = None,
        lease_token: Annotated[
            str | None,
            Field(description="To renew your own claim (as claim_renew does): its lease_token. Leave out to claim."),
        ] = None,
        namespace: NamespaceArg = None,
    ) -> dict[str, Any]:
        """Claim a piece of work so no other agent does it at the same time; the claim expires after its lease.

        Returns the claim exactly as the service grants it: its key, holder, expiry, fence (a number that grows
        with every claim) and a secret lease_token: keep it, claim_renew and claim_release need it. Fails with a
        `conflict` error naming the current holder while someone else holds the claim: then do something else or
        try again later.
        """
        given = _given(holder=holder, lease_seconds=lease_seconds, lease_token=lease_token)
        return await call(ctx, "claim_acquire", lambda c: c.claim(key, **given), namespace)

    @server.tool(annotations=writes())
    async def claim_renew(
        ctx: Context,
        key: Key,
        lease_token: Annotated[
            str, Field(description="The lease_token that claim_acquire returned for this claim (its proof).")
        ],
        lease_seconds: Annotated[
            float | None,
            Field(gt=0, le=86_400, description="The new lease, counted from now (the service's default)."),
        ] = None,
        namespace: NamespaceArg = None,
    ) -> dict[str, Any]:
        """Extend your claim before it expires, while the work goes on: it lasts lease_seconds from now. Returns
        the claim (same fence, later expires_at).

        Fails with a `lease_lost` error if the claim expired or someone else holds it now: stop the work, another
        agent may be doing it."""
        given = _given(lease_seconds=lease_seconds)
        return await call(ctx, "claim_renew", lambda c: c.claim(key, lease_token=lease_token, **given), namespace)

    @server.tool(annotations=read_only)
    async def claim_get(ctx: Context, key: Key, namespace: NamespaceArg = None) -> dict[str, Any]:
        """Who holds the claim on `key` right now: {claimed: true, claim: {...}} or {claimed: false}."""
        from workflow_kit.errors import NotFound

        async def get(c: MemoryClient) -> dict[str, Any]:
            try:
                return {"claimed": True, "claim": await c.get_claim(key)}
            except NotFound:
                return {"claimed": False, "claim": None}

        return await call(ctx, "claim_get", get, namespace)

    @server.tool(annotations=writes(destructive=True, idempotent=True))
    async def claim_release(
        ctx: Context,
        key: Key,
        lease_token: Annotated[
            str, Field(description="The lease_token that claim_acquire returned for this claim (its proof).")
        ],
        namespace: NamespaceArg = None,
    ) -> dict[str, Any]:
        """Give up a claim when the work is done (or abandoned), so others may take it at once.

        Pass the lease_token claim_acquire returned: the holder's name is no proof. Fails with a `lease_lost`
        error if the claim is someone else's now (yours expired and was taken), `not_found` if nobody holds it.
        """
        return await call(ctx, "claim_release", lambda c: c.release(key, lease_token=lease_token), namespace)

    @server.resource(
        KEY_TEMPLATE,
        name="memory-by-key",
        description="The memory stored under an exact key, as JSON (its `key` argument completes by prefix).",
        mime_type="application/json",
    )
    async def key_resource(key: str) -> str:
        from workflow_kit.errors import NotFound

        try:
            return json.dumps(await client().get_key(key))
        except NotFound as exc:
            raise ValueError(f"no memory holds the key {key!r}") from exc

    @server.completion()
    async def complete(
        ref: PromptReference | ResourceTemplateReference,
        argument: CompletionArgument,
        context: CompletionContext | None,
    ) -> Completion:
        """completion/complete: the `key` of memory://keys/{key} completes to stored keys starting with the
        typed text (at least one character); anything else has no suggestions (an empty list, as the spec allows)."""
        if not (isinstance(ref, ResourceTemplateReference) and ref.uri == KEY_TEMPLATE and argument.name == "key"):
            return Completion(values=[], total=0, has_more=False)
        if not argument.value:  # the service lists keys by a prefix of at least one character
            return Completion(values=[], total=0, has_more=False)
        try:
            found = (await client().list_keys(argument.value, limit=101)).get("results") or []
        except WorkflowKitError:
            return Completion(values=[], total=0, has_more=False)
        keys = list(dict.fromkeys(m["key"] for m in found if m.get("key")))
        return Completion(values=keys[:100], has_more=len(keys) > 100)

    @server.custom_route("/health", methods=["GET"])
    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    return server


class BearerAuth:
    """ASGI middleware: every HTTP request but /health must carry `Authorization: Bearer <token>`.

    The comparison is constant-time; the token is never logged.
    """

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.token = token.encode()

    def _allowed(self, scope: dict[str, Any]) -> bool:
        if scope.get("path") in OPEN_PATHS:
            return True
        header = dict(scope.get("headers") or []).get(b"authorization", b"")
        scheme, _, value = header.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(value.strip(), self.token)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan" or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = json.dumps(
            {"error": {"type": "unauthorized", "message": "send 'Authorization: Bearer <token>'"}}
        ).encode()
        headers = [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})


# -- command line ------------------------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of `memory-spine mcp`."""
    p.add_argument("--url", help=f"the memory-spine service to use (default {DEFAULT_URL}; env MEMORY_SPINE_URL)")
    p.add_argument("--token", help="bearer token of that service (env MEMORY_SPINE_TOKEN; shown by ps)")
    p.add_argument(
        "--token-file",
        dest="token_file",
        help="read that token from the file's first line instead (env MEMORY_SPINE_TOKEN_FILE; kept out of ps)",
    )
    p.add_argument(
        "--data-dir",
        dest="data_dir",
        type=Path,
        help="run the core in this process on this data dir instead of using --url (no `serve` may hold it)",
    )
    p.add_argument("--embedder", choices=["onnx", "sentence-transformers", "fake"], help="with --data-dir")
    p.add_argument("--model-cache", dest="model_cache", type=Path, help="with --data-dir")
    p.add_argument("--http", action="store_true", help="serve streamable HTTP (at /mcp) instead of stdio")
    p.add_argument("--host", default="127.0.0.1", help="with --http: address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_HTTP_PORT, help=f"with --http (default {DEFAULT_HTTP_PORT})")
    p.add_argument(
        "--http-token",
        dest="http_token",
        help="with --http: token MCP clients must send (env MEMORY_SPINE_MCP_TOKEN; default: the --token); without"
        " --token it is also sent to the service, so a scoped token scopes the tools",
    )
    p.add_argument(
        "--http-token-file",
        dest="http_token_file",
        help="with --http: read that token from the file's first line (env MEMORY_SPINE_MCP_TOKEN_FILE)",
    )
    p.add_argument("--insecure", action="store_true", help="with --http: allow a non-loopback bind without a token")
    p.add_argument("--log-level", dest="log_level", default="warning", help="stderr JSON logs (default warning)")


@contextlib.contextmanager
def _backend(args: argparse.Namespace) -> Iterator[tuple[Callable[[], MemoryClient], str]]:
    """The factory of the tools' MemoryClient, and a description of where it goes; owns the in-process service."""
    from workflow_kit.client import MemoryClient

    token = args.token or os.environ.get("MEMORY_SPINE_TOKEN") or None
    if args.data_dir is None:
        url = (args.url or os.environ.get("MEMORY_SPINE_URL") or DEFAULT_URL).rstrip("/")
        yield (lambda: MemoryClient(url, token=token, retries=2)), f"the memory-spine service at {url}"
        return

    import httpx

    from .api.app import create_app
    from .config import Settings
    from .service import MemoryService

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    given = {k: getattr(args, k) for k in ("data_dir", "embedder", "model_cache") if getattr(args, k) is not None}
    # stdout may be the MCP channel: whatever loading the model prints goes to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        service = MemoryService.open(Settings(**given))
    try:
        app = create_app(service)
        yield (
            lambda: MemoryClient("http://memory-spine", transport=httpx.ASGITransport(app=app), retries=0),
            f"the data dir {service.settings.data_dir} (in-process)",
        )
    finally:
        service.close()


def _read_token_files(args: argparse.Namespace) -> None:
    """Fill `args.token` / `args.http_token` from their files (flag or environment; a token on the command line is
    visible to `ps`); ValueError naming the flag on a bad one."""
    from .config import read_token_file

    for value, file_flag, env, flag in (
        ("token", "token_file", "MEMORY_SPINE_TOKEN_FILE", "--token-file"),
        ("http_token", "http_token_file", "MEMORY_SPINE_MCP_TOKEN_FILE", "--http-token-file"),
    ):
        given = getattr(args, file_flag, None)
        if given and getattr(args, value):
            raise ValueError(f"give --{value.replace('_', '-')} or {flag}, not both")
        path = given or os.environ.get(env)
        if path and not getattr(args, value):
            try:
                setattr(args, value, read_token_file(Path(path)))
            except ValueError as exc:
                raise ValueError(f"{flag}: {exc}") from exc


def _share_tokens(args: argparse.Namespace) -> str | None:
    """The token MCP clients must send (`--http-token`, else the service's `--token`); and without a `--token`,
    the `--http-token` becomes the service's bearer too (set on `args.token`), so a scoped token (memory-spine
    token create) given to an MCP server scopes every tool call it makes."""
    service_token = args.token or os.environ.get("MEMORY_SPINE_TOKEN") or None
    http_token = args.http_token or os.environ.get("MEMORY_SPINE_MCP_TOKEN") or service_token
    if service_token is None and http_token:
        args.token = http_token
    return http_token


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    """`memory-spine mcp`: serve the tools over stdio, or over streamable HTTP with `--http`."""
    try:
        import anyio
        from mcp.server.mcpserver import MCPServer  # noqa: F401  (only to fail early and clearly)
    except ImportError:
        print("memory-spine: the MCP server needs the `mcp` package: pip install 'mcp>=2.3,<3'", file=sys.stderr)
        return 2
    from .errors import MemorySpineError
    from .logs import setup_logging

    setup_logging(args.log_level)  # JSON lines on stderr, installed before the SDK's own logging set-up
    if args.data_dir is not None and args.url:
        print("memory-spine: give --url (a running service) or --data-dir (run one here), not both", file=sys.stderr)
        return 2
    try:
        _read_token_files(args)
    except ValueError as exc:
        print(f"memory-spine: {exc}", file=sys.stderr)
        return 2
    http_token = _share_tokens(args)
    from .api.hosts import is_loopback

    if args.http and not is_loopback(args.host) and not http_token and not args.insecure:
        print(
            f"memory-spine: refusing to serve MCP on {args.host}, which is not a loopback address, without a token"
            " (--http-token or --token); pass --insecure if the network is trusted.",
            file=sys.stderr,
        )
        return 2
    try:
        with _backend(args) as (factory, where):
            server = build_server(factory)
            if not args.http:
                print(f"memory-spine mcp: stdio, tools use {where}", file=sys.stderr)
                if args.data_dir is not None:
                    # A client stopping us with SIGTERM should still get the service closed (index saved).
                    signal.signal(signal.SIGTERM, _interrupt)
                anyio.run(server.run_stdio_async)
                return 0
            import uvicorn

            app: Any = server.streamable_http_app(host=args.host)
            if http_token:
                app = BearerAuth(app, http_token)
            auth = "a bearer token" if http_token else "no token"
            print(
                f"memory-spine mcp: streamable HTTP on http://{args.host}:{args.port}/mcp ({auth}), tools use {where}",
                file=sys.stderr,
            )
            config = uvicorn.Config(app, host=args.host, port=args.port, log_config=None, access_log=False)
            # uvicorn re-raises the signal that stopped it once it has shut down gracefully; as in `serve`, make
            # that a no-op, so the in-process service is closed below and a clean stop exits 0.
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: None)
            uvicorn.Server(config).run()
            return 0
    except MemorySpineError as exc:  # e.g. DataDirLocked: another process owns the data dir
        print(f"memory-spine: {exc.message}", file=sys.stderr)
        return 2
