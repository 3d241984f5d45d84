"""Concurrency soak, short version: 16 writers and 16 readers over HTTP for a few seconds (benchmarks/soak.py).

Zero errors, zero "database is locked", no lost update (a shared record PATCHed by every writer keeps every
writer's last counter), and the server's RSS levelling off. The long run: `python -m benchmarks.soak --minutes 5`.
"""

from __future__ import annotations

import httpx
import pytest

from benchmarks.soak import print_report, rss_mb, run_soak

pytestmark = pytest.mark.chaos


def test_sixteen_writers_sixteen_readers_no_error_no_lost_update(server_factory):
    # The index is saved every second, so saves (which hold off writes) keep meeting the writers.
    env = {"MEMORY_SPINE_INDEX_SAVE_SECONDS": "0", "MEMORY_SPINE_INDEX_SAVE_CHANGES": "1"}
    server = server_factory(embedder="fake", args=["--log-level", "warning"], env=env)
    rep = run_soak(server, seconds=12, writers=16, readers=16)
    print_report(rep)
    assert rep.requests > 1000
    assert rep.errors == 0, rep.error_samples
    assert not rep.violations, rep.violations[:20]
    assert rep.locked_in_log == 0
    assert server.terminate() == 0


def test_rss_does_not_grow_per_query(server_factory):
    """The same 200 queries over and over: once caches are warm, the server's RSS stays put."""
    server = server_factory(embedder="fake", args=["--log-level", "warning"])
    with httpx.Client(base_url=server.url, timeout=60) as http:
        records = [{"content": f"note {i} about the {i % 17} deploy and the {i % 5} cache"} for i in range(500)]
        http.post("/ingest/batch", json={"records": records}).raise_for_status()
        queries = [f"what happened to deploy {i}" for i in range(200)]

        def rounds(n: int) -> None:
            for _ in range(n):
                for i, q in enumerate(queries):
                    mode = ("semantic", "keyword", "hybrid")[i % 3]
                    http.post("/search", json={"query": q, "mode": mode, "tags_none": ["x"] if i % 2 else None})

        rounds(3)
        warm = rss_mb(server.proc.pid)
        rounds(6)
        end = rss_mb(server.proc.pid)
    print(f"RSS after 600 warm-up queries {warm:.1f} MiB, after 1,200 more {end:.1f} MiB")
    assert end - warm < 8, (warm, end)


def test_a_busy_model_never_holds_a_caller_hostage():
    """Under a steady stream of embed calls every caller returns once its own texts are embedded: the leader of
    a run used to drain the queue until it was empty, so under sustained load its own request never returned."""
    import threading
    import time

    from memory_spine.embedders import FakeEmbedder
    from memory_spine.embedders.batching import CoalescingEmbedder

    class Slow(FakeEmbedder):
        def embed(self, texts):
            time.sleep(0.01)
            return super().embed(texts)

    emb = CoalescingEmbedder(Slow(), max_batch=2)  # more callers than a run takes: the queue never empties
    stop = threading.Event()
    longest: list[float] = []

    def caller(k: int) -> None:
        while not stop.is_set():
            started = time.monotonic()
            emb.embed([f"caller {k} text"])
            longest.append(time.monotonic() - started)

    threads = [threading.Thread(target=caller, args=(k,), daemon=True) for k in range(8)]
    for t in threads:
        t.start()
    time.sleep(2.5)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads), "a caller is still serving the others"
    assert len(longest) > 50 and max(longest) < 1.0, (len(longest), max(longest))
