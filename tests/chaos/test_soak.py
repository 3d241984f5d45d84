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
    server = server_factory(embedder="fake", args=["--log-level", "warning"])
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
