"""CoalescingEmbedder: concurrent embed calls share one model run, on one thread.

Callers queue their texts and wait; one model thread takes everything queued (up to `max_batch` texts, oldest
first) as one batch, runs it, hands each caller its vectors, and takes the next. Under many concurrent
single-record ingests or searches the model sees batches instead of a queue of single texts, two runs never
fight over the cores, and a caller waits only for the runs ahead of its own texts (a lone caller: its own).

The queue and the thread are a `Coalescer` (coalesce.py); `submit` lets the event loop await a run without
holding a worker thread. One thread, not whichever caller happens to be waiting: ONNX Runtime runs without its
memory arena, so each run allocates from the calling thread's malloc arena, and runs rotating over the HTTP
worker threads left a batch's peak in every one of them (RSS 975 MiB against 438 MiB after a minute of the
16+16 soak).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future

import numpy as np

from ..coalesce import Coalescer
from .base import Embedder


class CoalescingEmbedder:
    """Wraps an `Embedder`; same interface, safe to call from many threads; `submit` for the event loop."""

    def __init__(self, inner: Embedder, max_batch: int = 256) -> None:
        self.inner = inner
        self.name = inner.name
        self.model = inner.model
        self.dim = inner.dim
        self.max_batch = max_batch
        self._runs = Coalescer(inner.embed, max_items=max_batch, name="memory-spine-embed")

    @property
    def runs(self) -> int:
        return self._runs.runs

    @property
    def calls(self) -> int:
        return self._runs.calls

    def submit(self, texts: Sequence[str]) -> Future:
        """Queue `texts` for the model thread; the future's result is their vectors. From the event loop,
        `await asyncio.wrap_future(embedder.submit(texts))` waits without holding a thread."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not a single string")
        texts = list(texts)
        if not texts:
            done: Future = Future()
            done.set_result(self.inner.embed([]))
            return done
        return self._runs.submit(texts)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.submit(texts).result()

    def close(self) -> None:
        self._runs.close()
        self.inner.close()
