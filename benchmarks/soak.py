"""Concurrency soak: 16 writers and 16 readers over HTTP for a sustained period; zero errors, no lost update.

Writers ingest their own records, PATCH them, delete some, send small batches, and all PATCH one shared "hot"
record, each its own metadata field with a counter: a read-modify-write that loses a concurrent update shows as
a counter behind the writer's last acknowledged value. Readers search (semantic, keyword, hybrid, exact key),
read stable records by id and key, list by tag and read /stats; a stable record must always read back whole.

At the end: every writer's records hold exactly their last acknowledged state, the hot record holds every
writer's last counter, `/stats` index elements equal the live rows, and the server log has no "database is
locked" and no 5xx. Reported: requests served and errors per operation, latency percentiles, and the server's
RSS over time (sampled every second), with its growth over the second half of the run.

    python -m benchmarks.soak --minutes 5 [--writers 16] [--readers 16] [--embedder onnx|fake]

The test suite runs the same code for a few seconds (tests/chaos/test_soak.py).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

WORDS = (
    "deploy migration timeout billing invoice retry queue worker cache index shard replica lease claim ledger"
    " payment refund webhook cron backup restore snapshot rollback canary latency quota token session schema"
).split()
FIELDS = ("content", "tags", "metadata", "importance", "key")
STABLE = 200


def rss_mb(pid: int) -> float:
    """The resident set size of a process, MiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    s = sorted(values)

    def at(q: float) -> float:
        return round(s[min(len(s) - 1, int(q * len(s)))] * 1000, 2)

    return {"n": len(s), "p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "max": round(s[-1] * 1000, 2)}


@dataclass
class Tally:
    """Per-operation latencies and errors, shared by every thread."""

    lat: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    samples: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def call(self, http: httpx.Client, op: str, method: str, path: str, ok: tuple[int, ...] = (200,), **kw: Any):
        started = time.perf_counter()
        try:
            r = http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            self.error(op, f"{op}: {type(exc).__name__} {exc}")
            return None
        elapsed = time.perf_counter() - started
        with self.lock:
            self.lat[op].append(elapsed)
        if r.status_code not in ok:
            self.error(op, f"{op} {method} {path}: {r.status_code} {r.text[:300]}")
            return None
        return r

    def error(self, op: str, message: str) -> None:
        with self.lock:
            self.errors[op] += 1
            if len(self.samples) < 20:
                self.samples.append(message)


def _content(rng: random.Random, tag: str) -> str:
    return f"{tag} {rng.getrandbits(40):010x} " + " ".join(rng.sample(WORDS, 6))


class Writer(threading.Thread):
    def __init__(self, k: int, url: str, tally: Tally, stop: threading.Event, seed: int, max_live: int) -> None:
        super().__init__(name=f"writer-{k}", daemon=True)
        self.k, self.url, self.tally, self.stop, self.rng = k, url, tally, stop, random.Random(seed)
        self.max_live = max_live  # then it deletes as much as it creates: the data stops growing
        self.expected: dict[str, dict[str, Any] | None] = {}  # own records: last acknowledged state
        self.maybe: dict[str, dict[str, Any] | None] = {}  # writes that failed (a timeout may still commit)
        self.hot = 0  # last acknowledged counter written to the hot record
        self.hot_maybe: int | None = None
        self.serial = 0

    def _record(self) -> tuple[str, dict[str, Any]]:
        self.serial += 1
        rid = f"w{self.k}-{self.serial}"
        rec = {
            "content": _content(self.rng, rid),
            "tags": [f"w{self.k}", "soak"],
            "metadata": {"writer": self.k, "n": 0},
            "importance": "medium",
            "key": f"soak:w{self.k}:{self.serial}",
        }
        return rid, rec

    def _write(self, http: httpx.Client, op: str, method: str, path: str, body: Any, after: dict) -> Any:
        r = self.tally.call(http, op, method, path, json=body)
        if r is None:
            self.maybe.update(after)  # uncertain from now on: left alone, and either state is accepted
        else:
            self.expected.update(after)
        return r

    def run(self) -> None:
        t, rng = self.tally, self.rng
        with httpx.Client(base_url=self.url, timeout=60) as http:
            while not self.stop.is_set():
                live = [i for i, r in self.expected.items() if r is not None and i not in self.maybe]
                roll = rng.random()
                if len(live) >= self.max_live and (roll < 0.25 or roll >= 0.9):
                    roll = 0.85  # full: delete instead of creating
                if roll < 0.25 or not live:
                    rid, rec = self._record()
                    self._write(http, "ingest", "POST", "/ingest", {"id": rid, **rec}, {rid: rec})
                elif roll < 0.55:
                    n = self.hot + 1
                    r = t.call(http, "patch_hot", "PATCH", "/memories/hot", json={"metadata": {f"w{self.k}": n}})
                    if r is None:
                        self.hot_maybe = n
                    else:
                        self.hot, self.hot_maybe = n, None
                        if r.json()["metadata"].get(f"w{self.k}") != n:
                            t.error("patch_hot", f"PATCH hot answered {r.json()['metadata']}, without w{self.k}={n}")
                elif roll < 0.8:
                    rid = rng.choice(live)
                    cur = self.expected[rid]
                    assert cur is not None
                    tags = [f"w{self.k}", rng.choice(["soak", "odd", "even"])]
                    meta = {**cur["metadata"], "n": cur["metadata"]["n"] + 1}
                    body = {"metadata": {"n": meta["n"]}, "tags": tags}
                    after = {rid: {**cur, "tags": tags, "metadata": meta}}
                    self._write(http, "patch", "PATCH", f"/memories/{rid}", body, after)
                elif roll < 0.9:
                    rid = rng.choice(live)
                    self._write(http, "delete", "DELETE", f"/memories/{rid}", None, {rid: None})
                else:
                    recs = dict(self._record() for _ in range(5))
                    body = {"records": [{"id": i, **r} for i, r in recs.items()]}
                    self._write(http, "batch", "POST", "/ingest/batch", body, recs)


class Reader(threading.Thread):
    def __init__(self, k: int, url: str, tally: Tally, stop: threading.Event, seed: int, stable: dict) -> None:
        super().__init__(name=f"reader-{k}", daemon=True)
        self.k, self.url, self.tally, self.stop, self.rng, self.stable = (
            k,
            url,
            tally,
            stop,
            random.Random(seed),
            stable,
        )

    def run(self) -> None:
        t, rng = self.tally, self.rng
        ids = list(self.stable)
        with httpx.Client(base_url=self.url, timeout=60) as http:
            while not self.stop.is_set():
                roll = rng.random()
                sid = rng.choice(ids)
                if roll < 0.3:
                    q = " ".join(rng.sample(WORDS, 3))
                    t.call(http, "search", "POST", "/search", json={"query": q, "limit": 10})
                elif roll < 0.4:
                    q = " ".join(rng.sample(WORDS, 2))
                    t.call(http, "search_keyword", "POST", "/search", json={"query": q, "mode": "keyword"})
                elif roll < 0.5:
                    q = " ".join(rng.sample(WORDS, 3))
                    t.call(http, "search_hybrid", "POST", "/search", json={"query": q, "mode": "hybrid", "limit": 5})
                elif roll < 0.6:
                    wf = int(sid.split("-")[1]) % 20
                    r = t.call(http, "search_key", "POST", "/search", json={"query": f"checkpoint:wf-{wf}", "limit": 1})
                    if r and not r.json()["results"]:
                        t.error("search_key", f"checkpoint:wf-{wf} found nothing")
                elif roll < 0.8:
                    r = t.call(http, "get", "GET", f"/memories/{sid}")
                    if r and r.json()["content"] != self.stable[sid]:
                        t.error("get", f"{sid} read back {r.json()['content']!r}")
                elif roll < 0.88:
                    r = t.call(http, "get_key", "GET", f"/keys/{self.stable[sid]}")
                    if r and r.json()["content"] != self.stable[sid]:
                        t.error("get_key", f"key {self.stable[sid]} read back {r.json()['content']!r}")
                elif roll < 0.96:
                    t.call(http, "list", "GET", "/memories", params={"tags": "soak", "limit": 20})
                else:
                    t.call(http, "stats", "GET", "/stats")


@dataclass
class SoakReport:
    seconds: float
    requests: int
    errors: int
    by_op: dict[str, dict[str, float]]
    error_samples: list[str]
    rss: list[tuple[float, float]]
    violations: list[str]
    locked_in_log: int

    @property
    def rss_start(self) -> float:
        return self.rss[0][1] if self.rss else 0.0

    @property
    def rss_end(self) -> float:
        return self.rss[-1][1] if self.rss else 0.0

    @property
    def rss_growth_second_half(self) -> float:
        """RSS growth over the second half of the run, MiB (a leak grows steadily; caches level off)."""
        if len(self.rss) < 2:
            return 0.0
        half = self.rss[-1][0] / 2
        mid = min(self.rss, key=lambda s: abs(s[0] - half))
        return round(self.rss[-1][1] - mid[1], 1)


def seed_records(url: str) -> dict[str, str]:
    """Stable records readers rely on (id -> content, key = content), and the shared hot record."""
    stable = {f"s-{i}": f"checkpoint:wf-{i % 20}:step{i}" for i in range(STABLE)}
    with httpx.Client(base_url=url, timeout=120) as http:
        body = {"records": [{"id": i, "content": c, "tags": ["stable"]} for i, c in stable.items()]}
        http.post("/ingest/batch", json=body).raise_for_status()
        http.post("/ingest", json={"id": "hot", "content": "the record every writer patches"}).raise_for_status()
    return stable


def run_soak(
    server: Any,
    *,
    seconds: float,
    writers: int = 16,
    readers: int = 16,
    max_live: int = 300,
    seed: int = 0,
    log=print,
) -> SoakReport:
    """Run the soak against a started `server` (a tests.conftest.ServerProcess: `.url`, `.proc`, `.log_path`)."""
    stable = seed_records(server.url)
    tally, stop = Tally(), threading.Event()
    ws = [Writer(k, server.url, tally, stop, seed * 1000 + k, max_live) for k in range(writers)]
    rs = [Reader(k, server.url, tally, stop, seed * 1000 + 500 + k, stable) for k in range(readers)]
    pid = server.proc.pid
    rss: list[tuple[float, float]] = [(0.0, round(rss_mb(pid), 1))]
    started = time.monotonic()
    for th in ws + rs:
        th.start()
    next_log = started + 30
    while (now := time.monotonic()) < started + seconds:
        time.sleep(min(1.0, started + seconds - now))
        rss.append((round(time.monotonic() - started, 1), round(rss_mb(pid), 1)))
        if time.monotonic() >= next_log:
            n, errors = sum(len(v) for v in tally.lat.values()), sum(tally.errors.values())
            log(f"  {time.monotonic() - started:6.0f} s  {n} requests, {errors} errors, RSS {rss[-1][1]} MiB")
            next_log += 30
    stop.set()
    for th in ws + rs:
        th.join(timeout=120)
    elapsed = time.monotonic() - started
    violations = verify(server.url, ws)
    log_text = Path(server.log_path).read_text(errors="replace")
    locked = log_text.lower().count("database is locked")
    requests = sum(len(v) for v in tally.lat.values())
    return SoakReport(
        seconds=round(elapsed, 1),
        requests=requests,
        errors=sum(tally.errors.values()),
        by_op={op: {**percentiles(v), "errors": tally.errors.get(op, 0)} for op, v in sorted(tally.lat.items())},
        error_samples=tally.samples,
        rss=rss,
        violations=violations,
        locked_in_log=locked,
    )


def verify(url: str, writers: list[Writer]) -> list[str]:
    """Every writer's records hold their last acknowledged state (or, after a failed write, the state it would
    have made); the hot record every writer's last counter; no record nobody wrote; index elements == rows."""
    bad: list[str] = []
    present = 0
    with httpx.Client(base_url=url, timeout=60) as http:
        hot = http.get("/memories/hot").json()["metadata"]
        for w in writers:
            if hot.get(f"w{w.k}", 0) not in (w.hot, w.hot_maybe):
                bad.append(f"lost update: hot record has w{w.k}={hot.get(f'w{w.k}')}, last acknowledged {w.hot}")
            for rid in set(w.expected) | set(w.maybe):
                r = http.get(f"/memories/{rid}")
                got = {k: r.json()[k] for k in FIELDS} if r.status_code == 200 else None
                present += got is not None
                allowed = [w.expected.get(rid)] + ([w.maybe[rid]] if rid in w.maybe else [])
                if got not in allowed:
                    bad.append(f"{rid}: acknowledged {w.expected.get(rid)}, found {got}")
        stats = http.get("/stats").json()
        if stats["total_memories"] != 1 + STABLE + present:
            bad.append(f"/stats total_memories {stats['total_memories']}, expected {1 + STABLE + present}")
        if stats["index"]["elements"] != stats["total_memories"]:
            bad.append(f"index holds {stats['index']['elements']} elements for {stats['total_memories']} rows")
    return bad


def print_report(rep: SoakReport, log=print) -> None:
    log(f"soak length:        {rep.seconds} s")
    log(f"requests served:    {rep.requests} ({rep.requests / max(rep.seconds, 1e-9):.0f}/s), errors {rep.errors}")
    log(f"'database is locked' in the server log: {rep.locked_in_log}")
    log(f"{'operation':<16}{'n':>8}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}{'max ms':>10}{'errors':>8}")
    for op, s in rep.by_op.items():
        log(f"{op:<16}{s['n']:>8}{s['p50']:>10}{s['p95']:>10}{s['p99']:>10}{s['max']:>10}{s['errors']:>8}")
    log(
        f"server RSS:         start {rep.rss_start} MiB, end {rep.rss_end} MiB, max {max(r for _, r in rep.rss)} MiB,"
        f" growth over the second half {rep.rss_growth_second_half} MiB"
    )
    for sample in rep.error_samples[:10]:
        log(f"  error: {sample}")
    for v in rep.violations[:20]:
        log(f"  VIOLATION {v}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--writers", type=int, default=16)
    p.add_argument("--readers", type=int, default=16)
    p.add_argument("--embedder", default="onnx", choices=["onnx", "fake"])
    p.add_argument("--max-live", type=int, default=300, help="records per writer; then it deletes as it creates")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)

    from tests.conftest import ServerProcess

    data_dir = Path(tempfile.mkdtemp(prefix="soak-")) / "data"
    server = ServerProcess(data_dir, embedder=args.embedder, args=["--log-level", "warning"])
    print(f"data dir {data_dir}, server log {server.log_path}")
    server.start()
    try:
        rep = run_soak(
            server,
            seconds=args.minutes * 60,
            writers=args.writers,
            readers=args.readers,
            max_live=args.max_live,
            seed=args.seed,
        )
        code = server.terminate()
    finally:
        server.stop()
    print_report(rep)
    print(f"SIGTERM exit code:  {code}")
    print("RSS samples (s, MiB): " + " ".join(f"{t:.0f}:{r:.0f}" for t, r in rep.rss[:: max(1, len(rep.rss) // 20)]))
    ok = rep.errors == 0 and not rep.violations and rep.locked_in_log == 0 and code == 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
