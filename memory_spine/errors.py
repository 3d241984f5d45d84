"""The service's exception tree. Nothing here knows about HTTP: `api/errors.py` maps classes to statuses.

MemorySpineError
 ├── InvalidInput(field, problem)
 │    └── PayloadTooLarge
 ├── NotFound
 ├── Conflict(detail)
 │    ├── PreconditionFailed(field, current_version)
 │    ├── LeaseLost         the lease_token is not the key's current claim's (renew, release)
 │    └── StaleFence        a write under a claim whose fence token is no longer the key's current one
 ├── Forbidden             a claim released without its lease_token
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


class PreconditionFailed(Conflict):
    """A conditional write (`If-Match` / `if_version`) named a version the record no longer has."""

    type = "precondition_failed"

    def __init__(self, message: str, *, field: str, current_version: int) -> None:
        super().__init__(message, detail={"current_version": current_version})
        self.field = field
        self.current_version = current_version


class LeaseLost(Conflict):
    """A renew or release presented a lease_token that is not the key's current claim's: the lease is gone."""

    type = "lease_lost"


class StaleFence(Conflict):
    """A write carried a fence token that is no longer the current claim's on that key (a newer holder took it)."""

    type = "stale_fence"


class Forbidden(MemorySpineError):
    """The request lacks the credential the action needs (e.g. a claim's lease_token)."""

    type = "forbidden"


class Unauthorized(MemorySpineError):
    """A token is configured and the request did not present it."""

    type = "unauthorized"


class MisdirectedRequest(MemorySpineError):
    """The request's Host header names a host this service does not answer for (a DNS-rebinding guard)."""

    type = "misdirected_request"


class RequestTimeout(MemorySpineError):
    """The client took too long to send the request's headers or body."""

    type = "request_timeout"


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
