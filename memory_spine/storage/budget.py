"""The query budget: a filtered read or delete may keep the database busy for `max_query_seconds`, no longer.

The service runs each such call in `query_budget(seconds)`. SQLite's progress handler (installed on every
connection by storage/sqlite.py) calls `over_budget()` every few thousand virtual-machine steps: the first call
starts the clock, and once the budget is spent the statement is interrupted, its transaction rolled back, and
the call fails with `QueryTimeout` (HTTP 503, type `query_timeout`). On PostgreSQL each connection taken under a
budget gets `statement_timeout` set to what is `remaining()` (storage/postgres.py), and every pooled connection
has the whole budget as its default ceiling. The clock starts at the first database step, not at the call, so
time spent waiting for the embedder does not count against the query.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from ..errors import QueryTimeout

PROGRESS_STEPS = 20_000  # SQLite virtual-machine steps between two checks (tens of microseconds)


class _Scope:
    __slots__ = ("seconds", "started", "spent")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started: float | None = None
        self.spent = False


_SCOPE: ContextVar[_Scope | None] = ContextVar("memory_spine_query_budget", default=None)


@contextmanager
def query_budget(seconds: float) -> Iterator[None]:
    """Run the block under a budget of `seconds` of database work (0 or less: none; an outer budget wins)."""
    if seconds <= 0 or _SCOPE.get() is not None:
        yield
        return
    scope = _Scope(seconds)
    token = _SCOPE.set(scope)
    try:
        yield
    except QueryTimeout:
        raise
    except Exception as exc:
        if scope.spent:  # whatever the interrupted statement surfaced as (sqlite3.OperationalError, StorageError)
            raise QueryTimeout(
                f"the query ran past its budget of {seconds:g} s and was stopped (max_query_seconds)"
            ) from exc
        raise
    finally:
        _SCOPE.reset(token)


def remaining() -> float | None:
    """Seconds left in the current budget (its clock starts at the first call), None outside one.

    Raises:
        QueryTimeout: the budget is already spent.
    """
    scope = _SCOPE.get()
    if scope is None:
        return None
    now = time.monotonic()
    if scope.started is None:
        scope.started = now
    left = scope.seconds - (now - scope.started)
    if left <= 0:
        scope.spent = True
        raise QueryTimeout(f"the query ran past its budget of {scope.seconds:g} s and was stopped (max_query_seconds)")
    return left


def over_budget() -> int:
    """SQLite's progress handler: nonzero stops the running statement. Outside a budget, always 0."""
    scope = _SCOPE.get()
    if scope is None:
        return 0
    now = time.monotonic()
    if scope.started is None:
        scope.started = now
        return 0
    if now - scope.started > scope.seconds:
        scope.spent = True
        return 1
    return 0
