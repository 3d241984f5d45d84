"""Request and response shapes shared by the core and the HTTP API (pydantic v2).

The core takes these models as input; it returns plain dicts shaped like `Memory` / `SearchHit` so the hot
path does not pay for model construction. Unknown fields are rejected (a typo such as `tag` for `tags` would
otherwise silently widen a filter).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Importance = Literal["low", "medium", "high", "critical"]
SearchMode = Literal["semantic", "keyword", "hybrid"]
Granularity = Literal["turn", "record"]
Timestamp = float | datetime


_NS_ONE = (
    "The namespace (e.g. 'team/agent-7'): segments of letters, digits, _ - . : joined by '/'. Else the"
    " ?namespace= query, the X-Memory-Namespace header, or 'default'."
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Fence(_Strict):
    """The claim a write is made under: refused (409 stale_fence) unless `key`'s claim still has this fence."""

    key: str = Field(description="The claimed key (e.g. 'workflow:pr-42').")
    token: int = Field(description="The `fence` the claim returned.", ge=0, le=2**63 - 1)


class MemoryIn(_Strict):
    """One record to ingest. An existing `id` is upserted."""

    content: str = Field(description="The text of the memory; embedded for semantic search.")
    tags: list[str] | None = Field(default=None, description="Labels, filterable with tags/tags_all/tags_none.")
    metadata: dict[str, Any] | None = Field(default=None, description="A JSON object, filterable with `where`.")
    id: str | None = Field(default=None, description="Client-chosen id; generated when absent.")
    importance: Importance | None = Field(default=None, description="low | medium | high | critical.")
    key: str | None = Field(default=None, description="Explicit exact key; else derived from the content.")
    ttl_seconds: float | None = Field(default=None, description="Expire this many seconds after the write.")
    expires_at: Timestamp | None = Field(default=None, description="Expire at this time (ISO 8601 or epoch).")
    fence: Fence | None = Field(
        default=None, description="Write only while this claim is still the key's current one (fencing token)."
    )
    namespace: str | None = Field(default=None, description=_NS_ONE)
    occurred_at: Timestamp | None = Field(
        default=None,
        description="When what it records happened (ISO 8601 or epoch); default: when it is first stored.",
    )


class BatchIn(_Strict):
    """Several records ingested in one transaction, all or nothing."""

    records: list[MemoryIn]
    namespace: str | None = Field(default=None, description="The namespace of records that name none.")


class MemoryRestore(MemoryIn):
    """An exported record written back as it was (import): its id and timestamps are kept."""

    id: str = Field(description="The record's id; a record with this id already present is skipped.")
    created_at: Timestamp | None = Field(default=None, description="Kept as given; the import time when absent.")
    updated_at: Timestamp | None = Field(default=None, description="Kept as given; `created_at` when absent.")


class MemoryPatch(_Strict):
    """A partial update: `metadata` merges top-level keys (null removes one), `tags` replace."""

    content: str | None = None
    tags: list[str] | None = None
    metadata: dict[str, Any] | None = None
    importance: Importance | None = None
    key: str | None = None
    ttl_seconds: float | None = None
    expires_at: Timestamp | None = None
    occurred_at: Timestamp | None = None
    if_version: int | None = Field(
        default=None,
        ge=0,
        le=2**63 - 1,
        description="Write only if the memory is still at this `version` (as read); else 412. Same as If-Match.",
    )
    fence: Fence | None = None


class RevertIn(_Strict):
    """Make a new version of a memory equal to one of its kept versions (content, tags, metadata, importance, key)."""

    version: int = Field(description="The version to go back to (from GET /memories/{id}/history).", ge=0, le=2**63 - 1)
    if_version: int | None = Field(
        default=None, ge=0, le=2**63 - 1, description="Only if the memory is still at this version; else 412."
    )
    fence: Fence | None = None


class RestoreIn(_Strict):
    """Bring a deleted memory back as a new version: the version deleted, or another kept one."""

    version: int | None = Field(
        default=None, ge=0, le=2**63 - 1, description="The kept version to restore; default: the one deleted."
    )
    fence: Fence | None = None


class Filter(_Strict):
    """Conditions a record must meet. All given conditions must hold."""

    tags: list[str] | None = Field(default=None, description="Any of these tags.")
    tags_all: list[str] | None = Field(default=None, description="All of these tags.")
    tags_none: list[str] | None = Field(default=None, description="None of these tags.")
    where: dict[str, Any] | None = Field(
        default=None,
        description="Metadata conditions: {field: value} or {field: {$eq|$ne|$in|$nin|$gt|$gte|$lt|$lte: v}},"
        " combined with $and / $or lists. Dotted fields reach nested objects.",
    )
    created_after: Timestamp | None = None
    created_before: Timestamp | None = None
    occurred_after: Timestamp | None = Field(default=None, description="Happened after this time (`occurred_at`).")
    occurred_before: Timestamp | None = Field(default=None, description="Happened before this time.")
    importance: list[Importance] | Importance | None = None
    key: str | None = Field(default=None, description="Exactly this key.")
    key_prefix: str | None = Field(default=None, description="Keys starting with this prefix.")
    namespace: str | list[str] | None = Field(
        default=None,
        description=_NS_ONE + " A search may name several, and 'team/' selects team and everything under it.",
    )


class SearchQuery(Filter):
    """A search: semantic, keyword (BM25) or hybrid (reciprocal rank fusion), with filters."""

    query: str
    limit: int = Field(default=10, ge=1, le=100)
    mode: SearchMode | None = None
    min_score: float | None = Field(
        default=None,
        description="Drop results whose cosine similarity with the query (`score`) is below this, in every mode:"
        " in keyword mode it makes the search embed the query to score its hits. Exact key answers ignore it.",
    )
    explain: bool = False
    when: str | None = Field(
        default=None,
        description="When it happened, in words ('last week', 'in May 2023', 'two days before 2023-06-09'):"
        " keeps records whose `occurred_at` falls in that range, read against `as_of`.",
    )
    as_of: Timestamp | None = Field(default=None, description="The time `when` is read against; default: now.")
    conversation: str | None = Field(
        default=None, description="Only this conversation's records (`POST /conversations`); ranked as turns."
    )
    granularity: Granularity | None = Field(
        default=None,
        description="`turn` (the default where conversation records are found): each result a different turn,"
        " ranked with the evidence of its window and session; `record`: records ranked on their own.",
    )


class TurnIn(_Strict):
    """One turn of a conversation session."""

    id: str | None = Field(default=None, description="Unique in the conversation; default: '<session>:<position>'.")
    speaker: str
    text: str
    captions: list[str] | None = Field(default=None, description="What a shared image shows, in words.")


class SessionIn(_Strict):
    """One session: its turns, in order, and when it took place (the turns' `occurred_at`)."""

    id: str | None = Field(default=None, description="Unique in the conversation; default: its position from 1.")
    date: Timestamp | None = Field(default=None, description="ISO 8601 or epoch seconds; default: now.")
    turns: list[TurnIn]


class ConversationIn(_Strict):
    """A conversation to store turn by turn (`POST /conversations`); ingesting it again rewrites it."""

    id: str
    sessions: list[SessionIn]
    tags: list[str] | None = None
    namespace: str | None = Field(default=None, description=_NS_ONE)


class DeleteWhere(Filter):
    """Delete every record matching the filter; `dry_run` only counts. An empty filter is refused."""

    dry_run: bool = False


class ClaimIn(_Strict):
    """Claim a key for a while: granted only if no other live holder has it."""

    key: str
    holder: str | None = None
    lease_seconds: float | None = Field(default=None, gt=0, le=86_400)
    lease_token: str | None = Field(
        default=None, description="Renew: the lease_token this claim returned. Leave out to take the claim."
    )
    namespace: str | None = Field(default=None, description="Claims are per namespace. " + _NS_ONE)


class Memory(BaseModel):
    """A stored record as the API returns it."""

    id: str
    namespace: str = Field(default="default", description="The namespace the record lives in.")
    content: str
    tags: list[str]
    metadata: dict[str, Any]
    importance: Importance
    key: str | None = None
    created_at: str
    updated_at: str
    expires_at: str | None = None
    occurred_at: str | None = Field(default=None, description="When it happened; `created_at` unless given.")
    version: int | None = Field(
        default=None,
        description="Changes with every write of the record (GET and PATCH answers; also the ETag):"
        " send it back as `if_version` or `If-Match` to write only if nobody wrote in between.",
    )


class SearchHit(Memory):
    """A search result: the record, how similar it is to the query (`score`) and where it ranked (`rank_score`)."""

    score: float | None = Field(
        description="Cosine similarity of the query's and the record's embeddings (-1..1), whenever the search"
        " scored the record's vector: always in semantic and hybrid mode, in keyword mode only with `min_score`;"
        " null otherwise (keyword mode, exact key answers). The same measure in every mode: `min_score` filters"
        " on it."
    )
    rank_score: float = Field(
        description="What the results are ordered by, higher first: the cosine similarity (semantic), the fused"
        " reciprocal-rank score in (0, 1], 1.0 = first in both lists (hybrid), bm25 / (1 + bm25) (keyword;"
        " PostgreSQL: ts_rank scaled alike), 1.0 (exact key). Comparable only within one search."
    )


class SearchResponse(BaseModel):
    results: list[SearchHit]
    plan: dict[str, Any] | None = None
    time_range: dict[str, Any] | None = Field(
        default=None, description="With `when`: the range applied, {from, to, period, when, as_of} (UTC; null = open)."
    )


class IngestResponse(BaseModel):
    id: str
    key: str | None = None
    created: bool


class BatchResponse(BaseModel):
    ids: list[str]
    created: int


class ListResponse(BaseModel):
    results: list[Memory]
    next_cursor: str | None = None


class Claim(BaseModel):
    key: str
    namespace: str = "default"
    holder: str
    acquired_at: str
    expires_at: str
    fence: int | None = Field(default=None, description="The fencing token: grows with every claim taken.")
    lease_token: str | None = Field(
        default=None, description="Only in the answer that grants the claim: renewing and releasing need it."
    )


class HealthResponse(BaseModel):
    status: str
    version: str
    database: dict[str, Any] | None = None  # {"backend": "sqlite" | "postgresql", "status": "ok" | "error"}
