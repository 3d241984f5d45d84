"""cache.LRU: bounded by entries and by bytes; the service's caches use it with the configured bounds."""

from __future__ import annotations

import numpy as np

from memory_spine import Settings
from memory_spine.cache import LRU, sizeof
from memory_spine.embedders.fake import FakeEmbedder
from memory_spine.models import MemoryIn, SearchQuery
from memory_spine.service import MemoryService


def test_sizeof_counts_strings_arrays_and_containers():
    assert sizeof("x" * 100_000) >= 100_000
    assert sizeof(np.zeros(384, dtype=np.float32)) >= 384 * 4
    nested = {"results": [{"content": "y" * 50_000} for _ in range(4)]}
    assert 200_000 <= sizeof(nested) < 210_000


def test_bounded_by_bytes_evicting_least_recent():
    cache = LRU(size=1000, max_bytes=400_000)
    for i in range(10):
        cache.put(i, "z" * 90_000)
    assert cache.bytes <= 400_000 and len(cache) == 4
    assert cache.get(9) is not None and cache.get(0) is None
    cache.put(1_000, "w" * 200_000)  # over a quarter of the budget: not kept, nothing evicted for it
    assert cache.get(1_000) is None and len(cache) == 4


def test_bounded_by_entries_and_replacing_keeps_the_count_right():
    cache = LRU(size=2, max_bytes=10**9)
    cache.put("a", 1)
    cache.put("a", 2)
    cache.put("b", 3)
    cache.put("c", 4)
    assert len(cache) == 2 and cache.get("a") is None and cache.get("c") == 4
    assert cache.bytes == sum(w for _, w in cache._items.values())


def test_result_cache_holds_at_most_its_bytes(tmp_path):
    settings = Settings(data_dir=tmp_path, result_cache_bytes=2_000_000, max_limit=100)
    with MemoryService.open(settings, embedder=FakeEmbedder()) as svc:
        svc.ingest_batch([MemoryIn(content=f"doc {i} " + "word " * 19_000) for i in range(20)])
        for n in range(1, 21):
            svc.search(SearchQuery(query="word doc", limit=n, mode="keyword"))
        info = svc.stats()["result_cache"]
        assert 0 < info["bytes"] <= 2_000_000, info
        assert info["entries"] < 20
