"""The storage contract: what the core needs from a backend, cut where the core divides.

- records and keys: put, get, delete, list, key lookups
- tags and filters: count and select records matching a `Filter`
- full text: BM25 keyword search
- vectors: the stored float32 vectors, and the changes since a version (for the derived index)
- claims: atomic conditional ownership of a key with a lease

`MemoryService`, the planner and the index depend on this Protocol, never on sqlite-utils. A backend
raises only `memory_spine.errors` exceptions.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..models import Filter


@dataclass
class NewRecord:
    """A record to write. `vector` None means: keep the stored vector (content unchanged)."""

    id: str
    content: str
    tags: list[str]
    metadata: dict[str, Any]
    importance: str
    key: str | None
    key_parent: str | None
    expires_at: float | None
    vector: np.ndarray | None
    # For an upsert of an existing id: replace fields wholesale (ingest) or keep created_at.
    now: float = 0.0
    # A read-modify-write (PATCH): write only if the stored row still has this version, else VersionChanged.
    if_version: int | None = None


@dataclass
class RestoredRecord(NewRecord):
    """A record written back as exported (import): its own timestamps, and always a vector."""

    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass
class PutResult:
    seq: int
    id: str
    created: bool
    vector_changed: bool


@dataclass
class Changes:
    """What changed in the vectors since a version: for catching the index up."""

    version: int
    upserts: list[tuple[int, np.ndarray]] = field(default_factory=list)
    deletes: list[int] = field(default_factory=list)


class ContentChanged(Exception):
    """put() was told the content was unchanged, but it changed meanwhile: embed and retry."""


class VersionChanged(Exception):
    """put() of a record with `if_version`: the row was written or deleted since that version: read it again."""


class Storage(Protocol):
    dim: int

    # records and keys
    def put(self, records: Sequence[NewRecord]) -> list[PutResult]: ...
    def restore(self, records: Sequence[RestoredRecord]) -> list[PutResult]: ...
    def dump(self, now: float, vectors: bool, batch: int = 1000) -> Iterator[dict[str, Any]]: ...
    def contents(self, ids: Sequence[str]) -> dict[str, str]: ...
    def get(self, id: str, now: float) -> dict[str, Any] | None: ...
    def version_of(self, id: str) -> int | None: ...
    def rows(self, seqs: Sequence[int], flt: Filter | None, now: float) -> dict[int, dict[str, Any]]: ...
    def delete(self, ids: Sequence[str]) -> list[int]: ...
    def delete_where(self, flt: Filter, now: float, dry_run: bool) -> tuple[int, list[int]]: ...
    def list(
        self, flt: Filter | None, now: float, limit: int, cursor: int | None, newest_first: bool
    ) -> tuple[list[dict[str, Any]], int | None]: ...
    def find_key(
        self, key: str, include_children: bool, flt: Filter | None, now: float, limit: int
    ) -> list[dict[str, Any]]: ...
    def newest_per_parent(
        self, prefix: str, now: float, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]: ...

    # tags and filters
    def count(self, flt: Filter | None, now: float) -> int: ...
    def candidate_vectors(self, flt: Filter, now: float) -> tuple[np.ndarray, np.ndarray]: ...

    # full text
    def keyword(self, query: str, flt: Filter | None, now: float, limit: int) -> list[tuple[int, float]]: ...

    # vectors, for the derived index
    def changes_since(self, version: int) -> Changes: ...
    def iter_vectors(self, batch: int = 10_000) -> Iterator[tuple[np.ndarray, np.ndarray]]: ...
    def live_seqs(self) -> np.ndarray: ...
    def max_vector_version(self) -> int: ...
    def purge_expired(self, now: float) -> list[int]: ...

    # claims
    def claim(self, key: str, holder: str, lease: float, now: float) -> tuple[bool, dict[str, Any]]: ...
    def get_claim(self, key: str, now: float) -> dict[str, Any] | None: ...
    def release(self, key: str, holder: str | None, now: float) -> dict[str, Any] | None: ...

    # housekeeping
    def stats(self, now: float) -> dict[str, Any]: ...
    def check(self) -> list[str]: ...
    def close(self) -> None: ...
