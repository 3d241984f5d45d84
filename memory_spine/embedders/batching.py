"""CoalescingEmbedder: concurrent embed calls share one model run.

Leader/follower: a caller that finds the model idle runs its own texts at once (a lone client pays no extra
latency); callers arriving while a run is in flight queue up, and when the run ends one of the callers still
waiting leads the next run with everything queued (up to `max_batch` texts, oldest first). A caller leaves as
soon as its own texts are embedded. Under many concurrent single-record ingests or
searches the model sees batches instead of a queue of single texts, and two runs never fight over the cores.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future

import numpy as np

from .base import Embedder


class CoalescingEmbedder:
    """Wraps an `Embedder`; same interface, safe to call from many threads."""

    def __init__(self, inner: Embedder, max_batch: int = 256) -> None:
        self.inner = inner
        self.name = inner.name
        self.model = inner.model
        self.dim = inner.dim
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified whenever a run ends
        self._busy = False
        self._queue: list[tuple[list[str], Future]] = []
        self.runs = 0
        self.calls = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not a single string")
        texts = list(texts)
        if not texts:
            return self.inner.embed([])
        mine: Future = Future()
        with self._lock:
            self.calls += 1
            self._queue.append((texts, mine))
        # Lead one run at a time, oldest texts first, only while our own texts wait: a leader that drained the
        # queue until it was empty was held hostage by callers arriving behind it (under steady load, forever).
        while True:
            with self._lock:
                while self._busy and not mine.done():
                    self._idle.wait()
                if mine.done():
                    break
                self._busy = True
                batch = self._take()
            try:
                self._run(batch)
            finally:
                with self._lock:
                    self._busy = False
                    self._idle.notify_all()
        return mine.result()

    def _take(self) -> list[tuple[list[str], Future]]:
        # Called under the lock: the oldest queued calls, up to `max_batch` texts (at least one call).
        batch: list[tuple[list[str], Future]] = []
        size = 0
        while self._queue and (not batch or size + len(self._queue[0][0]) <= self.max_batch):
            item = self._queue.pop(0)
            batch.append(item)
            size += len(item[0])
        self.runs += 1
        return batch

    def _run(self, batch: list[tuple[list[str], Future]]) -> None:
        try:
            vectors = self.inner.embed([t for texts, _ in batch for t in texts])
        except BaseException as exc:
            for _, fut in batch:
                fut.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        start = 0
        for texts, fut in batch:
            fut.set_result(vectors[start : start + len(texts)])
            start += len(texts)

    def close(self) -> None:
        self.inner.close()
