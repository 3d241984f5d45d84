"""Shared fixtures.

In-process (fast, fake embedder): `settings`, `service`, `app`, `client` (an httpx.AsyncClient over ASGI).
Real process (integration): `server` starts `python -m memory_spine serve` on a free loopback port with a temp
data dir and the real ONNX model, polls /health, fails with the server's output if it never gets healthy,
and terminates it at teardown; `server_factory` starts more, or restarts one on the same data dir.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """A real `memory-spine serve` process."""

    def __init__(
        self,
        data_dir: Path,
        *,
        embedder: str = "onnx",
        port: int | None = None,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.embedder = embedder
        self.port = port or free_port()
        self.args = list(args or [])
        self.env = dict(env or {})
        self.proc: subprocess.Popen | None = None
        self.log_path = self.data_dir.parent / f"server-{self.data_dir.name}-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0, wait: bool = True) -> ServerProcess:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **self.env}
        cmd = [
            sys.executable,
            "-m",
            "memory_spine",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--embedder",
            self.embedder,
            *self.args,
        ]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT))
        if wait:
            self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 90.0) -> float:
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                r = httpx.get(self.url + "/health", timeout=1.0)
                if r.status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server not healthy after {timeout}s:\n{self.output()}")

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-8000:]
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        return self.proc.returncode

    def restart(self, timeout: float = 90.0) -> ServerProcess:
        self.kill()
        return self.start(timeout)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                self.terminate(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        if getattr(self, "_log", None):
            self._log.close()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator:
    started: list[ServerProcess] = []

    def make(data_dir: Path | None = None, *, start: bool = True, **kw) -> ServerProcess:
        d = data_dir or tmp_path / f"data{len(started)}"
        srv = ServerProcess(d, **kw)
        started.append(srv)
        if start:
            srv.start()
        return srv

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture
def server(server_factory) -> ServerProcess:
    """A real memory-spine process with the ONNX model on a temp data dir."""
    return server_factory()


# -- in-process ------------------------------------------------------------------------------------------------
@pytest.fixture
def settings(tmp_path: Path):
    from memory_spine.config import Settings

    return Settings(data_dir=tmp_path / "data", embedder="fake", purge_seconds=3600, index_save_seconds=3600)


@pytest.fixture
def service(settings):
    from memory_spine.service import MemoryService

    svc = MemoryService.open(settings)
    yield svc
    svc.close()


@pytest.fixture
def app(service):
    from memory_spine.api import create_app

    return create_app(service)


@pytest.fixture
async def client(app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://memory-spine") as c:
        yield c


@pytest.fixture(scope="module")
def module_server(tmp_path_factory) -> Iterator[ServerProcess]:
    """One real memory-spine process (real model) for a whole test module; its tests keep apart by their own
    keys, collections or prefixes, so the module pays for one start."""
    srv = ServerProcess(tmp_path_factory.mktemp("module") / "data").start()
    yield srv
    srv.stop()
