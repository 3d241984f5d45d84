"""`memory-spine migrate`: an embedded data dir copied into PostgreSQL, vectors included, resumable."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from memory_spine.config import Settings
from memory_spine.embedders import FakeEmbedder
from memory_spine.errors import DataDirLocked
from memory_spine.models import ClaimIn, MemoryIn, SearchQuery
from memory_spine.service import MemoryService

from ..conftest import ROOT
from .conftest import DIM, postgres_or_skip

pytestmark = pytest.mark.timeout(120)
# PostgreSQL only: without its driver these tests skip, saying so.
migrate_mod = pytest.importorskip("memory_spine.migrate", reason="psycopg is not installed")


@pytest.fixture
def source(tmp_path):
    """A data dir with 300 records (tags, metadata, keys, one expired) and a live claim."""
    settings = Settings(data_dir=tmp_path / "src", embedder="fake", purge_seconds=3600)
    with MemoryService.open(settings, embedder=FakeEmbedder(dim=DIM)) as svc:
        svc.ingest_batch(
            [
                MemoryIn(
                    id=f"m{i}", content=f"memory number {i} about topic {i % 7}", tags=[f"t{i % 3}"], metadata={"i": i}
                )
                for i in range(299)
            ]
        )
        svc.ingest(MemoryIn(content="checkpoint:wf-1:fetch", metadata={"step": "fetch"}))
        svc.ingest(MemoryIn(id="gone", content="expired already", expires_at=time.time() - 1))
        svc.claim(ClaimIn(key="dedup:held", holder="w1", lease_seconds=600))
        vectors = {row["id"]: row["vector"] for row in svc.dump(vectors=True)}
    return settings, vectors


def test_migrate_copies_everything_and_resumes(source, pg_cluster, monkeypatch, tmp_path):
    cluster = postgres_or_skip(pg_cluster)
    url = cluster.create_database("migrate")
    settings, vectors = source
    monkeypatch.setattr(migrate_mod, "BULK_ROWS", 10)  # take the bulk path: drop the HNSW index, build it after
    real_copy = migrate_mod.PostgresStorage.copy_in
    calls = {"n": 0}

    def crash_on_third(self, rows):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("interrupted mid-migration")
        return real_copy(self, rows)

    monkeypatch.setattr(migrate_mod.PostgresStorage, "copy_in", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        migrate_mod.migrate_data_dir(settings.data_dir, url, batch_size=50, progress=False)
    monkeypatch.setattr(migrate_mod.PostgresStorage, "copy_in", real_copy)
    report = migrate_mod.migrate_data_dir(settings.data_dir, url, batch_size=50, progress=False)
    assert report["resumed_after_seq"] == 100 and report["copied"] == 200 and report["claims"] == 1
    assert "index_seconds" in report

    pg = Settings(database=url, embedder="fake", data_dir=tmp_path / "unused")
    with MemoryService.open(pg, embedder=FakeEmbedder(dim=DIM)) as svc:
        copied = {row["id"]: row["vector"] for row in svc.dump(vectors=True)}
        assert copied.keys() == vectors.keys() and "gone" not in copied
        assert all(np.array_equal(np.frombuffer(copied[k], "<f4"), np.frombuffer(v, "<f4")) for k, v in vectors.items())
        assert svc.get("m7")["metadata"] == {"i": 7} and svc.get("m7")["tags"] == ["t1"]
        assert svc.search(SearchQuery(query="checkpoint:wf-1"))["results"][0]["metadata"] == {"step": "fetch"}
        hit = svc.search(SearchQuery(query="memory number 42 about topic 0", limit=1, mode="semantic", explain=True))
        assert hit["results"][0]["id"] == "m42" and hit["plan"]["plan"] == "exact"  # under exact_below
        assert svc.get_claim("dedup:held")["holder"] == "w1"
        assert svc.check()["database"] == "ok"
    again = migrate_mod.migrate_data_dir(settings.data_dir, url, progress=False)
    assert again["copied"] == 0
    cluster.drop_database(url)


def test_migrate_command_refuses_a_served_data_dir(source, pg_cluster):
    cluster = postgres_or_skip(pg_cluster)
    url = cluster.create_database("migrate")
    settings, _ = source
    with MemoryService.open(settings, embedder=FakeEmbedder(dim=DIM)):
        with pytest.raises(DataDirLocked):
            migrate_mod.migrate_data_dir(settings.data_dir, url, progress=False)
    done = subprocess.run(
        [sys.executable, "-m", "memory_spine", "migrate", "--data-dir", str(settings.data_dir), "--database", url],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert '"copied": 300' in done.stdout and "migrate" in done.stderr  # the progress bar
    cluster.drop_database(url)


def test_import_into_postgres_indexes_after_a_large_load(source, pg_cluster, monkeypatch, tmp_path):
    from memory_spine.storage import postgres
    from memory_spine.transfer import export_jsonl, import_jsonl

    cluster = postgres_or_skip(pg_cluster)
    url = cluster.create_database("import")
    settings, vectors = source
    path = tmp_path / "export.jsonl"
    with MemoryService.open(settings, embedder=FakeEmbedder(dim=DIM)) as svc, open(path, "w") as f:
        export_jsonl(svc, f, vectors=True)
    monkeypatch.setattr(postgres, "BULK_ROWS", 10)
    dropped = []
    real_drop = postgres.PostgresStorage.drop_vector_index
    monkeypatch.setattr(postgres.PostgresStorage, "drop_vector_index", lambda s: dropped.append(1) or real_drop(s))
    pg = Settings(database=url, embedder="fake", data_dir=tmp_path / "unused")
    with MemoryService.open(pg, embedder=FakeEmbedder(dim=DIM)) as svc:
        report = import_jsonl(svc, path, batch_size=64, progress=False)
        assert report["imported"] == 300 and report["embedded"] == 0 and dropped == [1]
        assert svc.storage.has_vector_index() and svc.check()["database"] == "ok"
        assert import_jsonl(svc, path, progress=False)["skipped"] == 300  # a re-run skips what is there
    cluster.drop_database(url)
