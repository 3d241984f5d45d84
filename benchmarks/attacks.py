"""The memory, metrics and connection attacks of issue 15, run against a real ``memory-spine serve`` process.

Each attack prints what it did to the server: RSS before and after (and the peak, sampled every 20 ms, where a
spike is the point), the size and time of one ``/metrics`` scrape, how long slow connections were held.

    python -m benchmarks.attacks                      # this checkout's code
    python -m benchmarks.attacks --code /work/main    # another checkout's (its PYTHONPATH), to compare

- ``paths``: 10,000 requests to random paths without the token (401 before routing), then one scrape.
- ``cache``: 100 records of 100 KB, then 80 different semantic searches with ``limit: 100``.
- ``batch``: one ``/ingest/batch`` of 160 texts of 100k characters (the real model).
- ``slow``: 8 connections sending their headers a byte a second, 8 sending a body that way, for up to 45 s.
- ``host``: ``Host: evil.example`` (a DNS-rebinding page), and ``ps`` showing the token.

Benchmarks measure; they never assert.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "attack-" + "5b2f0c9e71d4"
MB = 1024 * 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Target:
    """A ``memory-spine serve`` process (code from `code`, real model, a token) on a fresh data dir."""

    def __init__(self, code: Path, work: Path, token_args: list[str]) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(code), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        cmd = [sys.executable, "-m", "memory_spine", "serve", "--port", str(self.port), "--data-dir", str(work)]
        self.log = open(work.parent / f"server-{self.port}.log", "wb")
        self.proc = subprocess.Popen([*cmd, *token_args], stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=code)
        self.ps = psutil.Process(self.proc.pid)
        self.auth = {"Authorization": f"Bearer {TOKEN}"}
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}; see {self.log.name}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server not healthy")

    def rss(self) -> float:
        return self.ps.memory_info().rss / MB

    def peak_during(self, work: Callable[[], Any]) -> tuple[Any, float]:
        """Run `work` while sampling RSS; returns its result and the peak RSS (MB)."""
        peak = [self.rss()]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], self.rss())
                time.sleep(0.02)

        t = threading.Thread(target=sample, daemon=True)
        t.start()
        try:
            result = work()
        finally:
            done.set()
            t.join()
        return result, max(peak[0], self.rss())

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def _scrape(t: Target) -> str:
    started = time.perf_counter()
    r = httpx.get(t.url + "/metrics", headers=t.auth, timeout=600)
    return f"scrape {len(r.content) / MB:.2f} MB in {time.perf_counter() - started:.2f} s"


def attack_paths(t: Target, n: int = 10_000) -> str:
    rng = random.Random(1)
    before = t.rss()
    statuses: dict[int, int] = {}
    with httpx.Client(base_url=t.url, timeout=30) as c:
        for _ in range(n):
            path = "/" + "".join(rng.choices(string.ascii_lowercase + string.digits, k=24))
            code = c.get(path).status_code
            statuses[code] = statuses.get(code, 0) + 1
    after = t.rss()
    return f"{n} random paths {statuses}: RSS {before:.0f} -> {after:.0f} MB; {_scrape(t)}"


def attack_cache(t: Target, records: int = 100, searches: int = 80) -> str:
    rng = random.Random(2)
    words = ["memory", "agent", "checkpoint", "workflow", "claim", "vector", "index", "search", "token", "model"]
    with httpx.Client(base_url=t.url, headers=t.auth, timeout=600) as c:
        for start in range(0, records, 10):
            batch = [
                {"content": f"record {i} " + " ".join(rng.choices(words, k=14_000))[:99_000]}
                for i in range(start, start + 10)
            ]
            c.post("/ingest/batch", json={"records": batch}).raise_for_status()
        before = t.rss()

        def run() -> int:
            sizes = 0
            for i in range(searches):
                body = {"query": f"{rng.choice(words)} {i}", "limit": 100, "mode": "semantic"}
                r = c.post("/search", json=body)
                r.raise_for_status()
                sizes += len(r.content)
            return sizes

        sizes, peak = t.peak_during(run)
        time.sleep(12)  # housekeeping hands freed heap back to the OS every 10 s
        after = t.rss()
        cache = c.get("/stats").json().get("result_cache")
    return (
        f"{searches} searches limit 100 over {records} x 100 KB ({sizes / MB:.0f} MB of answers): RSS {before:.0f}"
        f" -> peak {peak:.0f} -> {after:.0f} MB 12 s later; result cache {cache}"
    )


def attack_batch(t: Target, n: int = 160, chars: int = 100_000) -> str:
    rng = random.Random(3)
    # Random letter strings: ~3 characters a token, as dense as text gets (the most tokens to hold).
    letters = string.ascii_lowercase
    records = [
        {"content": " ".join("".join(rng.choices(letters, k=rng.randint(3, 9))) for _ in range(chars // 6))[:chars]}
        for _ in range(n)
    ]
    before = t.rss()

    def run() -> tuple[int, float]:
        started = time.perf_counter()
        r = httpx.post(t.url + "/ingest/batch", json={"records": records}, headers=t.auth, timeout=1200)
        return r.status_code, time.perf_counter() - started

    (status, seconds), peak = t.peak_during(run)
    time.sleep(12)
    return (
        f"one batch of {n} x {chars} chars: {status} in {seconds:.1f} s; RSS {before:.0f} -> peak {peak:.0f}"
        f" -> {t.rss():.0f} MB 12 s later"
    )


def _hold(t: Target, request: bytes, drip: bytes, limit: float, out: list[float]) -> None:
    """Send `request`, then `drip` a byte a second; record how long the server kept the connection."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", t.port)) as s:
        s.sendall(request)
        s.settimeout(1.0)
        for byte in drip:
            if time.monotonic() - started > limit:
                break
            try:
                s.sendall(bytes([byte]))
                s.recv(4096)  # an answer (408) or the end: the server gave up on us
                break
            except TimeoutError:
                continue
            except OSError:
                break
    out.append(time.monotonic() - started)


def attack_slow(t: Target, n: int = 8, limit: float = 45.0) -> str:
    headers = b"POST /ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + TOKEN.encode()
    head_drip = b"\r\nX-Slow: " + b"a" * 200
    body = b'{"content": "' + b"s" * 200 + b'"}'
    body_req = headers + b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode()
    held: dict[str, list[float]] = {"headers": [], "body": []}
    threads = [
        *(
            threading.Thread(target=_hold, args=(t, b"P", headers[1:] + head_drip, limit, held["headers"]))
            for _ in range(n)
        ),
        *(
            threading.Thread(target=_hold, args=(t, body_req + b"\r\n\r\n", body, limit, held["body"]))
            for _ in range(n)
        ),
    ]
    for th in threads:
        th.start()
    time.sleep(0.5)
    started = time.perf_counter()
    health = httpx.get(t.url + "/health", timeout=60).status_code
    health_ms = (time.perf_counter() - started) * 1000
    for th in threads:
        th.join()
    return (
        f"{n} slow-header and {n} slow-body connections (cut off at {limit:.0f} s by us): held"
        f" headers max {max(held['headers']):.1f} s, body max {max(held['body']):.1f} s; /health meanwhile"
        f" {health} in {health_ms:.0f} ms"
    )


def attack_host(t: Target) -> str:
    r = httpx.get(t.url + "/memories", headers={**t.auth, "Host": "evil.example"})
    shown = TOKEN in " ".join(t.ps.cmdline())
    return f"Host: evil.example -> {r.status_code}; token visible in ps: {shown}"


ATTACKS = {
    "paths": attack_paths,
    "cache": attack_cache,
    "batch": attack_batch,
    "slow": attack_slow,
    "host": attack_host,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--code", type=Path, default=ROOT, help="checkout whose memory_spine to run (default: this one)")
    p.add_argument("--only", nargs="*", choices=list(ATTACKS), help="attacks to run (default: all)")
    args = p.parse_args(argv)
    code = args.code.resolve()
    with tempfile.TemporaryDirectory(prefix="ms-attacks-") as tmp:
        token_file = Path(tmp) / "token"
        token_file.write_text(TOKEN + "\n")
        probe = subprocess.run(
            [sys.executable, "-m", "memory_spine", "serve", "--help"],
            env={**os.environ, "PYTHONPATH": str(code)},
            capture_output=True,
            text=True,
            cwd=code,  # `-m` puts the working directory first on sys.path
        ).stdout
        token_args = ["--token-file", str(token_file)] if "--token-file" in probe else ["--token", TOKEN]
        print(f"code: {code}  ({' '.join(token_args[:1])}); load: {os.getloadavg()}", flush=True)
        for name in args.only or list(ATTACKS):
            t = Target(code, Path(tmp) / f"data-{name}", token_args)  # a fresh server per attack
            try:
                print(f"{name:6s} RSS at start {t.rss():.0f} MB; {ATTACKS[name](t)}", flush=True)
            finally:
                t.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
