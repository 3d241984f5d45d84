"""Damaged files and hostile disks: the server starts (rebuilding what is derived), refuses clearly, or answers
507/503, and never corrupts the database.

- index files damaged in ways the truncation/garble tests (tests/unit/test_index.py,
  tests/integration/test_server_process.py) do not cover: a marker that is not JSON or not an object, an index
  file of zeros or of nothing, a stale `.tmp` from a save cut short;
- WAL oddities after a kill -9: the WAL lost (what a power cut does to commits SQLite had not checkpointed
  with synchronous=normal), cut mid-frame, or replaced by garbage;
- a read-only data dir (a tmpfs remounted read-only), an immutable database file (chattr +i), a full disk (a
  2 MB tmpfs), each needing root: skipped, with the reason, elsewhere;
- a data dir already served: a second server, `check`, `export` and `import` all refuse with the lock message.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from benchmarks.crash_test import check_data_dir
from memory_spine.config import Settings
from memory_spine.service import MemoryService

from ..conftest import ROOT

pytestmark = pytest.mark.chaos

SAVE_OFTEN = {"MEMORY_SPINE_INDEX_SAVE_SECONDS": "0", "MEMORY_SPINE_INDEX_SAVE_CHANGES": "1"}
QUIET = ["--log-level", "warning"]


def _ingest(url: str, n: int, prefix: str) -> dict[str, str]:
    records = {f"{prefix}-{i}": f"{prefix} record {i} about the deploy of service {i % 7}" for i in range(n)}
    with httpx.Client(base_url=url, timeout=60) as http:
        for rid, content in records.items():
            http.post("/ingest", json={"id": rid, "content": content, "tags": [prefix]}).raise_for_status()
    return records


def _consistent(url: str, expect: dict[str, str]) -> dict:
    """Every expected record readable and findable by vector search; the index holds exactly the rows."""
    with httpx.Client(base_url=url, timeout=60) as http:
        stats = http.get("/stats").json()
        assert stats["total_memories"] == len(expect), stats
        assert stats["index"]["elements"] == stats["total_memories"], stats["index"]
        for rid, content in expect.items():
            assert http.get(f"/memories/{rid}").json()["content"] == content
            hits = http.post("/search", json={"query": content, "limit": 3}).json()["results"]
            assert rid in [h["id"] for h in hits], (rid, stats["index"])
    return stats


# -- index files ----------------------------------------------------------------------------------------------
DAMAGE = {
    "marker not json": lambda d: (d / "index.json").write_text("{not json"),
    "marker a list": lambda d: (d / "index.json").write_text("[1, 2, 3]"),
    "marker wrong types": lambda d: (d / "index.json").write_text(
        json.dumps({**json.loads((d / "index.json").read_text()), "capacity": "lots", "version": None})
    ),
    "marker empty": lambda d: (d / "index.json").write_bytes(b""),
    "index all zeros": lambda d: (d / "index.hnsw").write_bytes(b"\0" * (d / "index.hnsw").stat().st_size),
    "index empty": lambda d: (d / "index.hnsw").write_bytes(b""),
    "index random bytes": lambda d: (d / "index.hnsw").write_bytes(os.urandom((d / "index.hnsw").stat().st_size)),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_index_is_rebuilt_and_logged(tmp_path, caplog, damage):
    settings = Settings(data_dir=tmp_path / "d", embedder="fake", purge_seconds=3600, index_save_seconds=3600)
    from memory_spine.models import MemoryIn

    with MemoryService.open(settings) as svc:
        ids = [svc.ingest(MemoryIn(content=f"record {i} of the {damage} case"))["id"] for i in range(40)]
    DAMAGE[damage](tmp_path / "d")
    with caplog.at_level(logging.WARNING, logger="memory_spine.index"), MemoryService.open(settings) as svc:
        assert svc.index.last_open["how"] == "rebuilt" and svc.index.last_open["reason"]
        assert svc.check()["missing_from_index"] == svc.check()["extra_in_index"] == 0
        from memory_spine.models import SearchQuery

        hit = svc.search(SearchQuery(query=f"record 17 of the {damage} case", limit=1))["results"][0]
        assert hit["id"] == ids[17]
    assert any(getattr(r, "event", None) == "index_rebuilt" for r in caplog.records)


def test_stale_tmp_from_an_interrupted_save_is_harmless(tmp_path):
    settings = Settings(data_dir=tmp_path / "d", embedder="fake", purge_seconds=3600, index_save_seconds=3600)
    from memory_spine.models import MemoryIn

    with MemoryService.open(settings) as svc:
        for i in range(20):
            svc.ingest(MemoryIn(content=f"record {i}"))
    (tmp_path / "d" / "index.hnsw.tmp").write_bytes(os.urandom(5000))  # a save killed mid-write
    (tmp_path / "d" / "index.json.tmp").write_text("{")
    with MemoryService.open(settings) as svc:
        assert svc.index.last_open["how"] == "loaded"
        svc.ingest(MemoryIn(content="after the interrupted save"))
    with MemoryService.open(settings) as svc:
        assert svc.index.last_open["how"] == "loaded" and len(svc.index) == 21


# -- the WAL --------------------------------------------------------------------------------------------------
def test_wal_lost_after_kill_9_rebuilds_the_index_ahead_of_the_database(server_factory):
    """A power cut with synchronous=normal can lose commits SQLite had not checkpointed, after the index (which is
    fsynced) saved them: the index must not be trusted over the database."""
    server = server_factory(embedder="fake", args=QUIET, env=SAVE_OFTEN)
    kept = _ingest(server.url, 12, "kept")
    assert server.terminate() == 0  # checkpointed into memories.db
    server.start()
    _ingest(server.url, 12, "lost")
    marker = server.data_dir / "index.json"
    deadline = time.monotonic() + 20
    while json.loads(marker.read_text())["elements"] < 24:  # wait for the index to save the "lost" records
        assert time.monotonic() < deadline
        time.sleep(0.2)
    server.kill()
    for suffix in ("-wal", "-shm"):
        Path(f"{server.data_dir / 'memories.db'}{suffix}").unlink(missing_ok=True)
    server.start()
    with httpx.Client(base_url=server.url) as http:
        last_open = http.get("/stats").json()["index"]["last_open"]
    assert last_open["how"] == "rebuilt" and "lost writes" in last_open["reason"], last_open
    _consistent(server.url, kept)
    # The rebuilt index is saved soon, with no write to prompt it: a second crash costs no second rebuild.
    deadline = time.monotonic() + 20
    while json.loads(marker.read_text())["elements"] != len(kept):
        assert time.monotonic() < deadline, "the rebuilt index was never saved"
        time.sleep(0.2)
    server.kill()
    server.start()
    with httpx.Client(base_url=server.url) as http:
        assert http.get("/stats").json()["index"]["last_open"]["how"] == "loaded"
    # New records reuse the lost records' seqs: after another kill they must be found, with their own vectors.
    fresh = _ingest(server.url, 6, "fresh")
    server.kill()
    server.start()
    _consistent(server.url, {**kept, **fresh})
    assert "index_rebuilt" in server.output()


def test_wal_cut_mid_frame_or_garbage_after_kill_9_keeps_a_consistent_prefix(server_factory):
    server = server_factory(embedder="fake", args=QUIET)
    base = _ingest(server.url, 12, "base")
    assert server.terminate() == 0
    server.start()
    tail = _ingest(server.url, 16, "tail")
    server.kill()
    db = server.data_dir / "memories.db"
    wal = Path(f"{db}-wal")
    with open(wal, "r+b") as f:
        f.truncate(wal.stat().st_size // 2 + 123)  # mid-frame: SQLite keeps the commits whose frames are whole
    server.start()
    with httpx.Client(base_url=server.url) as http:
        present = {r: c for r, c in tail.items() if http.get(f"/memories/{r}").status_code == 200}
    assert list(tail)[: len(present)] == list(present), "commits are kept as a prefix, in order"
    kept = {**base, **present}
    _consistent(server.url, kept)
    # Garbage in place of the WAL and the shared-memory index (after a clean stop there is no WAL to lose).
    assert server.terminate() == 0
    Path(f"{db}-wal").write_bytes(os.urandom(70_000))
    Path(f"{db}-shm").write_bytes(os.urandom(32_768))
    server.start()
    _consistent(server.url, kept)
    kept.update(_ingest(server.url, 3, "more"))
    assert server.terminate() == 0
    rc, report = check_data_dir(server.data_dir, "fake")
    assert rc == 0 and report["database"] == "ok" and report["rows"] == len(kept), report


# -- hostile disks (root only) --------------------------------------------------------------------------------
@pytest.fixture
def tmpfs(tmp_path) -> Iterator:
    """mount(size) -> a fresh tmpfs of that size under tmp_path; unmounted at teardown."""
    mounts: list[Path] = []

    def mount(size: str) -> Path:
        path = tmp_path / f"mnt{len(mounts)}"
        path.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip()}); needs root")
        mounts.append(path)
        return path

    yield mount
    for path in mounts:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_read_only_data_dir_refuses_to_start_with_a_clear_message(tmpfs, server_factory):
    mnt = tmpfs("16m")
    server = server_factory(mnt, embedder="fake", args=QUIET)
    _ingest(server.url, 3, "r")
    assert server.terminate() == 0
    subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
    for data_dir in (mnt, mnt / "not-yet-made"):
        second = server_factory(data_dir, start=False, embedder="fake", args=QUIET)
        second.log_path = mnt.parent / f"ro-{data_dir.name}.log"
        started = time.monotonic()
        second.start(wait=False)
        assert second.proc.wait(timeout=60) == 1
        assert time.monotonic() - started < 30
        assert "memory-spine: could not start:" in second.output()
        assert "not writable" in second.output() or "Read-only file system" in second.output()
    rc, report = check_data_dir(mnt, "fake")
    assert rc == 2 and "not writable" in report


def test_immutable_database_answers_503_on_write_and_keeps_its_data(tmp_path, server_factory):
    server = server_factory(embedder="fake", args=QUIET)
    records = _ingest(server.url, 5, "r")
    assert server.terminate() == 0
    db = server.data_dir / "memories.db"
    if subprocess.run(["chattr", "+i", str(db)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here (needs root and a file system that supports it)")
    try:
        server.start()
        with httpx.Client(base_url=server.url) as http:
            for method, path, body in [
                ("POST", "/ingest", {"content": "new"}),
                ("PATCH", "/memories/r-1", {"tags": ["x"]}),
                ("DELETE", "/memories/r-2", None),
                ("POST", "/claims", {"key": "k"}),
            ]:
                r = http.request(method, path, json=body)
                assert r.status_code == 503 and r.json()["error"]["type"] == "read_only", (path, r.text)
            assert http.get("/memories/r-1").json()["tags"] == ["r"]
        _consistent(server.url, records)
        server.kill()
    finally:
        subprocess.run(["chattr", "-i", str(db)], check=True)
    server.start()
    _consistent(server.url, records)


def test_full_disk_is_507_reads_go_on_and_the_database_survives(tmpfs, server_factory):
    mnt = tmpfs("3m")
    server = server_factory(mnt, embedder="fake", args=QUIET)
    acked: dict[str, str] = {}
    statuses: list[int] = []
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for i in range(300):
            content = f"record {i} {os.urandom(6).hex()} " + "x" * 15_000  # ~15 KB, three words
            r = http.post("/ingest", json={"id": f"r{i}", "content": content})
            statuses.append(r.status_code)
            if r.status_code == 200:
                acked[f"r{i}"] = content
            else:
                assert r.status_code == 507 and r.json()["error"]["type"] == "storage_full", r.text
                if statuses.count(507) >= 5:
                    break
        assert statuses.count(507) >= 5 and acked, statuses
        batch = http.post("/ingest/batch", json={"records": [{"content": "x " * 20_000}] * 5})
        assert batch.status_code == 507
        assert http.get("/health").status_code == 200
        assert http.get(f"/memories/{next(iter(acked))}").status_code == 200
        assert http.post("/search", json={"query": "record 3"}).status_code == 200
        assert http.get("/stats").json()["total_memories"] == len(acked)
        # Space comes back: writes work again without a restart.
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
        r = http.post("/ingest", json={"id": "after", "content": "written once the disk had room again"})
        assert r.status_code == 200
        acked["after"] = "written once the disk had room again"
    assert server.terminate() == 0
    rc, report = check_data_dir(mnt, "fake")
    assert rc == 0 and report["database"] == "ok" and report["rows"] == len(acked), report
    server.start()
    _consistent(server.url, acked)


# -- one process per data dir ---------------------------------------------------------------------------------
def test_a_served_data_dir_is_refused_by_a_second_server_and_by_the_tools(server_factory, tmp_path):
    server = server_factory(embedder="fake", args=QUIET)
    records = _ingest(server.url, 5, "r")
    second = server_factory(server.data_dir, start=False, embedder="fake", args=QUIET)
    started = time.monotonic()
    second.start(wait=False)
    assert second.proc.wait(timeout=60) == 1
    assert time.monotonic() - started < 30, "refused at once, not after hanging on the lock"
    assert "another memory-spine process is already serving" in second.output()
    lines = tmp_path / "in.jsonl"
    lines.write_text(json.dumps({"id": "imported", "content": "should not get in"}) + "\n")
    cli = [sys.executable, "-m", "memory_spine"]
    data = ["--data-dir", str(server.data_dir), "--embedder", "fake"]
    tools = [["check", *data], ["import", str(lines), *data, "--quiet"]]
    procs = [
        subprocess.Popen([*cli, *a], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT) for a in tools
    ]
    for args, proc in zip(tools, procs, strict=True):
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 2, (args, out, err)
        assert "another memory-spine process is already serving" in err
    # export (and backup) read a served data dir without its lock, from one read-only snapshot.
    exported = subprocess.run([*cli, "export", *data], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert exported.returncode == 0, exported.stderr
    assert {json.loads(line).get("id") for line in exported.stdout.splitlines()[1:]} == set(records)
    # The first server is unharmed and still writes.
    records.update(_ingest(server.url, 2, "later"))
    _consistent(server.url, records)
