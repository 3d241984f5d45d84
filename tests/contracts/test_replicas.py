"""Two `memory-spine serve` processes on one PostgreSQL database: stateless replicas.

A write through one is found by search through the other at once; workers racing for one key through
different replicas get exactly one winner; a replica killed with SIGKILL mid-stream loses no write it
acknowledged, and the other one keeps serving.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from ..conftest import ServerProcess
from .conftest import postgres_or_skip

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def replicas(pg_cluster, tmp_path_factory: pytest.TempPathFactory):
    """Two replicas for the module (the SIGKILL test, last, kills one), and a way to start more."""
    cluster = postgres_or_skip(pg_cluster)
    url = cluster.create_database("replicas")
    tmp_path: Path = tmp_path_factory.mktemp("replicas")
    started: list[ServerProcess] = []

    def start(name: str) -> ServerProcess:
        srv = ServerProcess(tmp_path / name, embedder="fake", args=["--database", url])
        started.append(srv)
        return srv.start(timeout=60)

    a, b = start("a"), start("b")
    yield a, b, start
    for srv in started:
        srv.stop()
    cluster.drop_database(url)


def test_a_write_on_one_replica_is_found_on_the_other(replicas):
    a, b, _ = replicas
    with httpx.Client(base_url=a.url, timeout=10) as ca, httpx.Client(base_url=b.url, timeout=10) as cb:
        assert ca.get("/health").json()["database"] == {"backend": "postgresql", "status": "ok"}
        wrote = ca.post("/ingest", json={"content": "the billing deploy failed at the migration step", "tags": ["x"]})
        assert wrote.status_code == 200
        rid = wrote.json()["id"]
        for mode in ("semantic", "keyword", "hybrid"):
            hits = cb.post("/search", json={"query": "billing deploy failed", "mode": mode, "limit": 3}).json()
            assert hits["results"][0]["id"] == rid, mode
        ca.post("/ingest", json={"content": "checkpoint:wf-9:fetch", "metadata": {"n": 1}})
        assert cb.post("/search", json={"query": "checkpoint:wf-9"}).json()["results"][0]["metadata"] == {"n": 1}
        assert cb.patch(f"/memories/{rid}", json={"tags": ["y"]}).status_code == 200
        assert ca.get(f"/memories/{rid}").json()["tags"] == ["y"]
        assert cb.delete(f"/memories/{rid}").status_code == 200
        assert ca.get(f"/memories/{rid}").status_code == 404


def test_racing_workers_on_two_replicas_have_one_winner(replicas):
    a, b, _ = replicas
    keys = [f"dedup:race-{i}" for i in range(60)]
    barrier = threading.Barrier(4)

    def worker(n: int) -> list[int]:
        srv = (a, b)[n % 2]
        codes = []
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            barrier.wait()
            for key in keys:
                codes.append(c.post("/claims", json={"key": key, "holder": f"w{n}", "lease_seconds": 30}).status_code)
        return codes

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(worker, range(4)))
    for i, key in enumerate(keys):
        codes = sorted(r[i] for r in results)
        assert codes == [201, 409, 409, 409], key
    with httpx.Client(base_url=b.url, timeout=10) as cb:
        holders = {cb.get(f"/claims/{k}").json()["holder"] for k in keys}
    assert holders <= {"w0", "w1", "w2", "w3"}


def test_sigkill_of_a_replica_loses_nothing_acknowledged(replicas):
    a, b, start = replicas
    acked: list[str] = []
    stop = threading.Event()

    def write_through_a() -> None:
        with httpx.Client(base_url=a.url, timeout=5) as c:
            i = 0
            while not stop.is_set():
                try:
                    r = c.post("/ingest", json={"id": f"k{i}", "content": f"record {i} written through a"})
                except httpx.HTTPError:
                    return  # the replica died under us: this write was never acknowledged
                if r.status_code == 200:
                    acked.append(f"k{i}")
                i += 1

    writer = threading.Thread(target=write_through_a)
    writer.start()
    with httpx.Client(base_url=b.url, timeout=10) as cb:
        for i in range(30):  # writes through b meanwhile
            assert (
                cb.post("/ingest", json={"id": f"b{i}", "content": f"record {i} written through b"}).status_code == 200
            )
        while len(acked) < 50:
            threading.Event().wait(0.01)
        a.kill()
        stop.set()
        writer.join(timeout=30)
        assert len(acked) >= 50
        for rid in acked:
            assert cb.get(f"/memories/{rid}").status_code == 200, rid
        assert cb.get("/stats").json()["total_memories"] >= len(acked) + 30
        hits = cb.post("/search", json={"query": f"record {len(acked) - 1} written through a", "mode": "keyword"})
        assert hits.json()["results"]
    again = start("a2")  # a new replica joins without any state of its own
    with httpx.Client(base_url=again.url, timeout=10) as c:
        assert c.get(f"/memories/{acked[-1]}").status_code == 200
