"""What only the PostgreSQL backend has: versioned migrations, its URL, and losing the database while serving."""

from __future__ import annotations

import httpx
import pytest

from memory_spine.config import Settings
from memory_spine.embedders import FakeEmbedder
from memory_spine.errors import InvalidInput, StorageError
from memory_spine.service import MemoryService
from memory_spine.storage.pg_schema import MIGRATIONS

from .conftest import DIM, postgres_or_skip

pytestmark = pytest.mark.timeout(120)


def test_unsupported_database_urls_are_refused(tmp_path):
    with pytest.raises(InvalidInput) as err:
        MemoryService.open(Settings(database="mysql://x/y", data_dir=tmp_path), embedder=FakeEmbedder(dim=DIM))
    assert err.value.field == "database"


def test_migrations_run_once_and_dimensions_are_kept(pg_cluster, tmp_path):
    import psycopg

    cluster = postgres_or_skip(pg_cluster)
    url = cluster.create_database("schema")
    settings = Settings(database=url, data_dir=tmp_path, embedder="fake")
    for _ in range(2):
        MemoryService.open(settings, embedder=FakeEmbedder(dim=DIM)).close()
    with psycopg.connect(url) as conn:
        versions = conn.execute("SELECT version FROM memory_spine_migrations ORDER BY version").fetchall()
        assert versions == [(v,) for v, _, _ in MIGRATIONS]
    with pytest.raises(StorageError, match="dimensional"):
        MemoryService.open(settings, embedder=FakeEmbedder(dim=DIM * 2))
    with psycopg.connect(url, autocommit=True) as conn:  # as a newer release would leave it
        conn.execute("INSERT INTO memory_spine_migrations (version, name) VALUES (%s, 'newer')", (len(MIGRATIONS) + 1,))
    with pytest.raises(StorageError, match="schema version"):
        MemoryService.open(settings, embedder=FakeEmbedder(dim=DIM))
    cluster.drop_database(url)


async def test_losing_the_database_answers_503_not_500(pg_cluster, tmp_path):
    from memory_spine.api import create_app

    cluster = postgres_or_skip(pg_cluster)
    url = cluster.create_database("lost")
    svc = MemoryService.open(Settings(database=url, data_dir=tmp_path, embedder="fake"), embedder=FakeEmbedder(dim=DIM))
    try:
        transport = httpx.ASGITransport(app=create_app(svc))
        async with httpx.AsyncClient(transport=transport, base_url="http://memory-spine") as client:
            assert (await client.post("/ingest", json={"content": "before"})).status_code == 200
            cluster.drop_database(url)  # WITH (FORCE): every pooled connection is cut
            health = await client.get("/health")
            assert health.status_code == 503 and health.json()["database"]["status"] == "error"
            assert url.rsplit("/", 1)[1] not in health.text  # no address on the unauthenticated endpoint
            r = await client.post("/search", json={"query": "before"})
            assert r.status_code == 503 and r.json()["error"]["type"] == "storage_error"
    finally:
        svc.close()
