"""The service's exception tree. Nothing here knows about HTTP: `api/errors.py` maps classes to statuses.

MemorySpineError
 ├── InvalidInput(field, problem)
 │    └── PayloadTooLarge
 ├── NotFound
 ├── Conflict(detail)
 ├── Unauthorized
 ├── NotReady
 ├── QueryTimeout
 ├── StorageError
 │    ├── StorageFull
 │    └── ReadOnlyStorage
 └── DataDirLocked
"""

from __future__ import annotations

from typing import Any


class MemorySpineError(Exception):
    """Root of every error the service raises on purpose."""

    type = "error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(MemorySpineError):
    """A request field is missing, of the wrong type, or out of bounds."""

    type = "invalid_input"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}", field=field)
        self.problem = problem


class PayloadTooLarge(InvalidInput):
    """The request (or one field of it) is over a configured size cap."""

    type = "payload_too_large"


class NotFound(MemorySpineError):
    """No live record (or claim) answers to the given id or key."""

    type = "not_found"


class Conflict(MemorySpineError):
    """The write lost a race: e.g. a claim held by another live holder."""

    type = "conflict"

    def __init__(self, message: str, *, detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.detail = detail or {}


class Unauthorized(MemorySpineError):
    """A token is configured and the request did not present it."""

    type = "unauthorized"


class NotReady(MemorySpineError):
    """The service is still loading its index or model."""

    type = "not_ready"


class QueryTimeout(MemorySpineError):
    """A query ran past its budget of time (`max_query_seconds`) and was stopped; nothing was changed."""

    type = "query_timeout"


class StorageError(MemorySpineError):
    """The database refused a write for a reason outside the request."""

    type = "storage_error"


class StorageFull(StorageError):
    """The disk holding the data directory is full."""

    type = "storage_full"


class ReadOnlyStorage(StorageError):
    """The data directory or database cannot be written."""

    type = "read_only"


class DataDirLocked(MemorySpineError):
    """Another memory-spine process already serves this data directory."""

    type = "data_dir_locked"
