"""`memory-spine check --data-dir D [--repair]`: a JSON summary and an exit code a script can act on.

0: healthy (or repaired); 1: the database fails `PRAGMA integrity_check`, or the index does not hold exactly the
table's rows; 2: the data dir could not be opened (not a database, locked by a server, another model's
vectors). Mismatches are made behind the service's back, the way a hand edit or a bug would make them.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from memory_spine.config import Settings
from memory_spine.index import IndexParams, VectorIndex
from memory_spine.models import MemoryIn, SearchQuery
from memory_spine.service import MemoryService
from memory_spine.storage.sqlite import SQLiteStorage

from ..conftest import ROOT

pytestmark = pytest.mark.chaos
N = 60


def _check(data_dir: Path, *extra: str) -> tuple[int, dict | str]:
    cmd = [sys.executable, "-m", "memory_spine", "check", "--data-dir", str(data_dir), *extra]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=str(ROOT))
    try:
        return r.returncode, json.loads(r.stdout)
    except ValueError:
        return r.returncode, r.stderr


def _settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, embedder="fake", purge_seconds=3600, index_save_seconds=3600)


@pytest.fixture
def data_dir(tmp_path) -> Path:
    d = tmp_path / "d"
    with MemoryService.open(_settings(d)) as svc:
        for i in range(N):
            svc.ingest(MemoryIn(id=f"r{i}", content=f"record {i} on deploy {i % 5}", tags=["t"]))
    return d


def test_a_healthy_dir_is_0_with_a_summary(data_dir):
    rc, report = _check(data_dir, "--embedder", "fake")
    assert rc == 0, report
    assert report == {
        "data_dir": str(data_dir),
        "database": "ok",
        "bad_vectors": [],
        "bad_metadata": [],
        "index": "ok",
        "rows": N,
        "index_elements": N,
        "missing_from_index": 0,
        "extra_in_index": 0,
    }


def test_a_row_deleted_behind_the_service_is_1_then_repaired(data_dir):
    with sqlite3.connect(data_dir / "memories.db") as db:  # no tombstone, no version: catch-up cannot see it
        db.execute("DELETE FROM memories WHERE id = 'r7'")
    rc, report = _check(data_dir, "--embedder", "fake")
    assert rc == 1 and report["extra_in_index"] == 1 and report["rows"] == N - 1, report
    rc, report = _check(data_dir, "--embedder", "fake", "--repair")
    assert rc == 0 and report.get("repaired") is True, report
    rc, report = _check(data_dir, "--embedder", "fake")
    assert rc == 0 and report["index_elements"] == N - 1, report


def test_an_element_missing_from_the_index_is_1_then_repaired(data_dir):
    storage = SQLiteStorage(data_dir / "memories.db", 384)
    try:
        seq = int(storage.get("r11", 0)["seq"])
        index = VectorIndex(data_dir, IndexParams(dim=384))
        index.open(storage)
        index.remove([seq])  # saved with a valid marker: it loads, and lacks r11
        index.save(storage)
    finally:
        storage.close()
    rc, report = _check(data_dir, "--embedder", "fake")
    assert rc == 1 and report["missing_from_index"] == 1, report
    assert _check(data_dir, "--embedder", "fake", "--repair")[0] == 0
    with MemoryService.open(_settings(data_dir)) as svc:
        assert svc.index.last_open["how"] == "loaded"  # the repaired index was saved
        hits = svc.search(SearchQuery(query="record 11 on deploy 1", limit=1, mode="semantic"))["results"]
        assert hits[0]["id"] == "r11"


def test_a_corrupted_database_is_1_and_repair_does_not_hide_it(data_dir):
    db = data_dir / "memories.db"
    with sqlite3.connect(db) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = (
            conn.execute(
                "SELECT pageno FROM dbstat WHERE name = 'idx_memories_created_at' AND pagetype = 'leaf'"
            ).fetchall()
            or conn.execute("SELECT pageno FROM dbstat WHERE name = 'idx_memories_created_at'").fetchall()
        )
    assert pages
    with open(db, "r+b") as f:  # garble one page of an index b-tree: the table itself still reads
        f.seek((pages[0][0] - 1) * page_size + 8)
        f.write(b"\xa5" * (page_size - 8))
    rc, report = _check(data_dir, "--embedder", "fake")
    assert rc == 1 and report["database"] != "ok", report
    assert isinstance(report["database"], list) and report["database"]
    rc, report = _check(data_dir, "--embedder", "fake", "--repair")
    assert rc == 1, report


@pytest.mark.parametrize("case", ["not a database", "another model"])
def test_a_dir_that_cannot_be_opened_is_2_with_the_reason(data_dir, tmp_path, case):
    if case == "not a database":
        bad = tmp_path / "bad"
        bad.mkdir()
        (bad / "memories.db").write_bytes(b"this is not a database" * 500)
        rc, err = _check(bad, "--embedder", "fake")
        assert rc == 2 and "memory-spine:" in err and "database" in err, err
    else:
        rc, err = _check(data_dir)  # the default embedder (onnx) on a dir of fake vectors
        assert rc == 2 and "fake-384" in err, err
