"""Coalescer: concurrent callers' items go through one function call on one thread, as a batch.

Callers `submit` a list of items and get a `concurrent.futures.Future` of their own results (`await
asyncio.wrap_future(...)` from the event loop: no worker thread is held while waiting). One thread takes
everything queued, oldest first, up to `max_items` items (a caller's items are never split), calls
`fn(items)` once, and hands each caller its slice of the results; if `fn` raises, every caller of that call
gets the exception. A lone caller runs at once, alone; callers arriving while a call runs share the next.

Used for the model (embedders/batching.py: concurrent queries and ingests share model runs) and for writes
(service.py: concurrent single-record ingests share one transaction, a group commit). The thread starts on
the first submit; `close` finishes what is queued, then stops it.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

__all__ = ["Coalescer"]

T = TypeVar("T")


class Coalescer(Generic[T]):
    """Runs `fn` over the items of every caller queued, in one call on one thread."""

    def __init__(self, fn: Callable[[list[T]], Sequence[Any]], *, max_items: int, name: str) -> None:
        self.fn = fn
        self.max_items = max(1, max_items)
        self.name = name
        self._lock = threading.Lock()
        self._queued = threading.Condition(self._lock)
        self._queue: deque[tuple[list[T], Future]] = deque()
        self._thread: threading.Thread | None = None
        self._closing = False
        self.runs = 0  # calls of fn
        self.calls = 0  # submits

    def submit(self, items: Sequence[T]) -> Future:
        """Queue `items`; the future's result is `fn`'s results for exactly these items, in order."""
        mine: Future = Future()
        with self._lock:
            if self._closing:
                raise RuntimeError(f"{self.name} is closed")
            self.calls += 1
            self._queue.append((list(items), mine))
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
                self._thread.start()
            self._queued.notify()
        return mine

    def _serve(self) -> None:
        # The one thread: run while callers wait; at close, finish what is queued, then stop.
        while True:
            with self._lock:
                while not self._queue and not self._closing:
                    self._queued.wait()
                if not self._queue:
                    return
                batch: list[tuple[list[T], Future]] = []
                size = 0
                while self._queue and (not batch or size + len(self._queue[0][0]) <= self.max_items):
                    item = self._queue.popleft()
                    batch.append(item)
                    size += len(item[0])
                self.runs += 1
            try:
                results = self.fn([x for items, _ in batch for x in items])
            except BaseException as exc:  # raised again in each caller's own thread, where it means something
                for _, fut in batch:
                    fut.set_exception(exc)
                continue
            start = 0
            for items, fut in batch:
                fut.set_result(results[start : start + len(items)])
                start += len(items)

    def close(self) -> None:
        """Refuse new items, finish the queued ones, stop the thread (waits up to a minute)."""
        with self._lock:
            self._closing = True
            self._queued.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=60)
