"""Optimistic concurrency across two `memory-spine serve` replicas of one PostgreSQL database.

Half of 40 racing read-then-PATCH increments go through each replica: with `If-Match` and a retry on 412 all 40
count, because the version check is in the database's write, not in either process.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ..conftest import ServerProcess
from ..integration.test_optimistic_http import WRITERS, race
from .conftest import postgres_or_skip

pytestmark = pytest.mark.timeout(120)


def test_increments_through_two_replicas_all_count(pg_cluster, tmp_path: Path):
    cluster = postgres_or_skip(pg_cluster)
    url = cluster.create_database("optimistic")
    replicas = [ServerProcess(tmp_path / name, embedder="fake", args=["--database", url]) for name in ("a", "b")]
    try:
        for srv in replicas:
            srv.start(timeout=40)
        final, conflicts, seconds = race([s.url for s in replicas], "counter", conditional=True)
        print(f"\ntwo replicas, If-Match: {final}/{WRITERS} increments, {conflicts} retried 412s, {seconds:.2f}s")
        assert final == WRITERS
        assert conflicts > 0, "no write ever raced: the test did not exercise the precondition"
    finally:
        for srv in replicas:
            srv.stop()
        cluster.drop_database(url)
