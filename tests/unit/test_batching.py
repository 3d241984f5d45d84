"""CoalescingEmbedder: concurrent calls share runs, results go back to the right caller, errors too."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from memory_spine.embedders import FakeEmbedder
from memory_spine.embedders.batching import CoalescingEmbedder


class SlowFake(FakeEmbedder):
    def __init__(self):
        super().__init__()
        self.batches: list[int] = []

    def embed(self, texts):
        self.batches.append(len(texts))
        time.sleep(0.02)
        if any(t == "boom" for t in texts):
            raise ValueError("boom")
        return super().embed(texts)


def test_concurrent_calls_are_coalesced_and_answered_correctly():
    inner = SlowFake()
    emb = CoalescingEmbedder(inner)
    reference = FakeEmbedder()
    results: dict[int, np.ndarray] = {}

    def call(i: int) -> None:
        results[i] = emb.embed([f"text number {i}", f"other {i}"])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(24):
        np.testing.assert_allclose(results[i], reference.embed([f"text number {i}", f"other {i}"]), atol=1e-6)
    assert sum(inner.batches) == 48
    assert len(inner.batches) < 24  # at least some calls shared a run
    assert max(inner.batches) > 2


def test_a_lone_call_runs_at_once():
    inner = SlowFake()
    emb = CoalescingEmbedder(inner)
    emb.embed(["a"])
    emb.embed(["b"])
    assert inner.batches == [1, 1]


def test_errors_reach_the_callers_of_that_run_and_the_embedder_keeps_working():
    emb = CoalescingEmbedder(SlowFake())
    with pytest.raises(ValueError):
        emb.embed(["boom"])
    assert emb.embed(["fine"]).shape == (1, 384)
