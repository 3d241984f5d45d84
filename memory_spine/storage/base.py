"""The storage contract: what the core needs from a backend, cut where the core divides.

- records and keys: put, get, delete, list, key lookups
- tags and filters: count and select records matching a `Filter`
- full text: BM25 keyword search
- vectors: the stored float32 vectors, and the changes since a version (for the derived index)
- claims: atomic conditional ownership of a key with a lease
- history: the prior versions of replaced and deleted records (storage/history.py)

and, beside it, `VectorSearch`: semantic, keyword and hybrid search over a backend's vectors and text. The
embedded default answers it with the planner over a derived hnswlib index (`Planner`, which also needs the
`VectorSource` abilities of SQLite's storage); PostgreSQL answers it in SQL (pgvector HNSW, tsvector). Backends are
opened by `memory_spine.storage.open_storage` / `open_search`, which import them lazily.

`MemoryService`, the planner and the index depend on these Protocols, never on sqlite-utils or psycopg. A
backend raises only `memory_spine.errors` exceptions.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..models import Filter
from .search import Cosines, Plan, Scored

OnCommit = Any  # Callable[[results], None]: run after the commit, in commit order


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
    # Written under a claim: (claim key, fence token). Refused with StaleFence unless the key's claim row still
    # carries that fence, checked inside the write's own transaction.
    fence: tuple[str, int] | None = None
    # The namespace the record lives in: (namespace, id) addresses it; the fence's claim is in it too.
    namespace: str = "default"
    # When what it records happened (epoch seconds); None: when it is first stored (an upsert keeps the old one).
    occurred_at: float | None = None
    # What this write is, for the history row of the version it replaces (storage/history.py OPS).
    op: str = "upsert"
    # Write only if no live record has this id (restore of a deleted one), else VersionChanged.
    absent: bool = False
    # The created_at a record written anew keeps (restore: the deleted version's); None: now.
    first_created_at: float | None = None


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


def claim_dict(row: Sequence[Any], iso: Any) -> dict[str, Any]:
    """A claim row (key, holder, acquired_at, expires_at, fence[, namespace]) as the API shows it; `iso` renders
    the backend's times."""
    key, holder, acquired, expires, fence, *rest = row
    return {
        "key": key,
        "namespace": rest[0] if rest else "default",
        "holder": holder,
        "acquired_at": iso(acquired),
        "expires_at": iso(expires),
        "fence": fence,
    }


class ContentChanged(Exception):
    """put() was told the content was unchanged, but it changed meanwhile: embed and retry."""


class VersionChanged(Exception):
    """put() of a record with `if_version`: the row was written or deleted since that version: read it again."""


class StaleFence(Exception):
    """put() of a record with a `fence`: the claim on the fence's key has another fence now (or none)."""

    def __init__(self, key: str, token: int, current: int | None) -> None:
        super().__init__(key, token, current)
        self.key, self.token, self.current = key, token, current


class DirLock(Protocol):
    """A held lock on a data dir (filelock's `FileLock`): storage's `close()` releases it."""

    def release(self) -> None: ...


class Storage(Protocol):
    """Records, keys, tags and filters, claims: what every backend stores. Writes take an `on_commit` hook,
    called after the commit and in commit order (the derived index of the embedded default follows it).

    What differs between backends is declared here as a property every backend answers (never probed with
    `hasattr`): `reads_are_local`, `commits`, `lock`, and `bulk()` (a no-op where loads need no preparing).
    """

    backend: str  # "sqlite" | "postgresql": the registry entry in `storage/__init__.py`
    dim: int

    # abilities
    @property
    def reads_are_local(self) -> bool:
        """True when a point read is a lookup in a local file (SQLite): cheap enough for the event loop."""
        ...

    @property
    def commits(self) -> int | None:
        """Write transactions committed since open, when this process is the only writer (an unchanged count
        means unchanged data: what the search result cache keys on); None where others may write unseen."""
        ...

    @property
    def lock(self) -> DirLock | None:
        """The data dir's lock this storage holds (released by `close()`), or None (no dir to hold)."""
        ...

    def bulk(self, rows: int) -> AbstractContextManager[None]:
        """Around a load of `rows` records (import): lets a backend that indexes as it stores index once after."""
        ...

    # records and keys
    def put(self, records: Sequence[NewRecord], on_commit: OnCommit | None = None) -> list[PutResult]: ...
    def restore(self, records: Sequence[RestoredRecord], on_commit: OnCommit | None = None) -> list[PutResult]: ...
    def dump(self, now: float, vectors: bool, batch: int = 1000) -> Iterator[dict[str, Any]]: ...
    # Point reads and writes address a record by (namespace, id); filters carry their namespace selection
    # (`Filter.namespace`, parsed into `Conditions.namespaces`; None there reads every namespace).
    def contents(self, ids: Sequence[str], namespace: str = "default") -> dict[str, str]: ...
    def get(self, id: str, now: float, namespace: str = "default") -> dict[str, Any] | None: ...
    def rows(self, seqs: Sequence[int], flt: Filter | None, now: float) -> dict[int, dict[str, Any]]: ...
    def delete(
        self,
        ids: Sequence[str],
        on_commit: OnCommit | None = None,
        if_version: int | None = None,
        namespace: str = "default",
        now: float | None = None,
    ) -> list[int]: ...
    def delete_where(
        self, flt: Filter, now: float, dry_run: bool, on_commit: OnCommit | None = None
    ) -> tuple[int, list[int]]: ...
    def list(
        self, flt: Filter | None, now: float, limit: int, cursor: int | None, newest_first: bool
    ) -> tuple[list[dict[str, Any]], int | None]: ...
    def find_key(
        self, key: str, include_children: bool, flt: Filter | None, now: float, limit: int
    ) -> list[dict[str, Any]]: ...
    def newest_per_parent(
        self, prefix: str, now: float, limit: int, offset: int, namespace: str = "default"
    ) -> tuple[list[dict[str, Any]], int]: ...
    def namespaces(self, now: float) -> dict[str, int]:
        """Each namespace holding live records -> its count."""
        ...

    # history (storage/history.py): every write that replaces or deletes a record (not the expiry purge) keeps
    # the prior version, vector included, in its own transaction, at most `history_versions` per record.
    history_versions: int

    def history(self, id: str, now: float, limit: int) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]: ...
    def get_version(self, id: str, version: int) -> dict[str, Any] | None: ...
    def as_of(self, id: str, at: float) -> dict[str, Any] | None: ...
    def deleted(self, now: float, limit: int, cursor: int | None) -> tuple[list[dict[str, Any]], int | None]: ...
    def prune_history(self, before: float) -> int: ...

    # tags and filters
    def count(self, flt: Filter | None, now: float) -> int: ...

    # expiry
    def purge_expired(self, now: float, on_commit: OnCommit | None = None) -> list[int]: ...

    # claims
    # A claim row carries a fence (from one counter that only grows, never reused) and the sha256 of its lease
    # token. claim() takes a free or expired key only; renew() and release() need the token's hash.
    # Claims are per namespace: (namespace, key).
    def claim(
        self, key: str, holder: str, lease: float, now: float, token_hash: str, namespace: str = "default"
    ) -> tuple[bool, dict[str, Any]]: ...
    def renew(
        self, key: str, token_hash: str, lease: float, now: float, namespace: str = "default"
    ) -> dict[str, Any] | None: ...
    def get_claim(self, key: str, now: float, namespace: str = "default") -> dict[str, Any] | None: ...
    def release(self, key: str, token_hash: str, now: float, namespace: str = "default") -> dict[str, Any] | None:
        """Release the claim whose lease token hashes to `token_hash`. Returns the claim that blocks the release
        (another lease's), or None when released.

        Raises:
            NotFound: no live claim on the key, and no lapsed one of this token.
        """
        ...

    # housekeeping
    def meta(self, name: str) -> str | None: ...
    def set_meta(self, name: str, value: str) -> None: ...
    def stats(self, now: float, namespace: str = "default") -> dict[str, Any]: ...
    def check(self) -> list[str]: ...
    def ping(self) -> dict[str, Any]: ...
    def close(self) -> None: ...


class VectorSource(Storage, Protocol):
    """A `Storage` that also serves a derived vector index and the planner over it (the embedded default:
    hnswlib over SQLite): candidates for a filter, stored vectors by seq, BM25, and the changes since a version.
    """

    # candidates and vectors, for the planner's plans
    def tag_count_upto(self, tags: Sequence[str], cap: int) -> int: ...
    def present_namespaces(self) -> frozenset[str]: ...
    def candidate_seqs(self, flt: Filter, now: float, cap: int) -> np.ndarray | None: ...
    def matching(self, seqs: Sequence[int], flt: Filter | None, now: float) -> set[int]: ...
    def vectors(self, seqs: Sequence[int]) -> tuple[np.ndarray, np.ndarray]: ...
    def namespace_count_upto(self, flt: Filter | Any, cap: int) -> int: ...
    def candidate_vectors(self, flt: Filter | Any, now: float, cap: int) -> tuple[np.ndarray, np.ndarray] | None: ...
    def keyword(
        self, query: str, flt: Filter | None, now: float, limit: int, total: int | None = None
    ) -> list[tuple[int, float]]: ...

    # the derived index's life
    def exclusive(self) -> AbstractContextManager[Any]: ...
    def changes_since(self, version: int) -> Changes: ...
    def iter_vectors(self, batch: int = 10_000) -> Iterator[tuple[np.ndarray, np.ndarray]]: ...
    def live_seqs(self) -> np.ndarray: ...
    def max_vector_version(self) -> int: ...
    def forget_tombstones(self, upto_version: int) -> None: ...


class VectorSearch(Protocol):
    """Semantic, keyword and hybrid search: the planner's contract, on any backend.

    Each search returns (seq, score) pairs best first, the hydrated rows by seq, and the `Plan` it ran (for
    `"explain": true`); semantic scores are cosine similarities, keyword scores BM25 mapped into [0, 1), and
    hybrid's the fused rank, with each hit's cosine similarity beside them (storage/search.py, `hybrid`).
    Whenever at least `limit` live records match the filter, exactly `limit` come back (hybrid: that pass
    `min_score`, when given).
    Exact-key queries never get here: the service answers them from the key index in every mode.
    """

    @property
    def index(self) -> Any:
        """The embedded default's hnswlib `VectorIndex` (index.py); None where the database indexes."""
        ...

    def semantic(
        self, vector: np.ndarray, flt: Filter | None, limit: int, now: float
    ) -> tuple[Scored, dict[int, dict[str, Any]], Plan]: ...
    def keyword(
        self, query: str, flt: Filter | None, limit: int, now: float
    ) -> tuple[Scored, dict[int, dict[str, Any]], Plan]: ...
    def hybrid(
        self, query: str, vector: np.ndarray, flt: Filter | None, limit: int, now: float, min_score: float | None
    ) -> tuple[Scored, dict[int, dict[str, Any]], Plan, Cosines]: ...
    def similarity(self, vector: np.ndarray, seqs: Sequence[int]) -> Cosines:
        """The cosine similarity of each of these records' stored vectors with `vector` (records gone are left
        out): exact, for hits a plan found without scoring their vectors."""
        ...

    # kept in step with storage: called after each commit, in commit order (no-ops where the database indexes)
    def added(self, seqs: np.ndarray, vectors: np.ndarray) -> None: ...
    def removed(self, seqs: Sequence[int]) -> None: ...

    def maintain(self, force: bool = False) -> dict[str, Any] | None: ...
    def info(self) -> dict[str, Any]: ...
    def check(self, repair: bool) -> dict[str, Any]: ...
    def close(self) -> None: ...
    def __len__(self) -> int: ...
