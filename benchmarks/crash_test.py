"""Crash test: concurrent clients write over HTTP while the server is killed with SIGKILL; nothing acknowledged is lost.

Each cycle starts the server on the same data dir, verifies everything written so far, then lets `workers`
clients ingest, upsert, PATCH, delete and batch-ingest records (each client owns its ids, so every id's history
is a line) until the server is killed in one of three ways:

- `random`: at a random instant;
- `save`:   while the index is being persisted (saves are made constant through MEMORY_SPINE_INDEX_SAVE_*; the
            kill lands a few milliseconds after `index.hnsw.tmp` appears);
- `batch`:  while a large `/ingest/batch` is in flight;
- `term`:   (not a crash) SIGTERM under the same load: the graceful stop must exit 0 and lose nothing either.

A `200` is an acknowledgement: the write's result is recorded as the record's known state. A write cut off by
the kill is uncertain: afterwards the record must hold either its known state or exactly the state that write
would have made (a batch: all its records one way or all the other). The check after each restart reads every
record by id and compares content, tags, metadata, importance and key; finds every live record by its exact key
(`GET /keys/{key}`) and by vector search on its own content (the HNSW plan); lists every record to find phantoms;
lists each tag to check the tag table; and compares `/stats` index elements with the live rows. After the last
cycle `memory-spine check` runs on the stopped data dir.

    python -m benchmarks.crash_test --cycles 20 [--workers 16] [--embedder fake|onnx] [--seconds 2]

The test suite runs a few short cycles of the same code (tests/chaos/test_crash.py).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
FIELDS = ("content", "tags", "metadata", "importance", "key")
COLORS = ("red", "green", "blue")
IMPORTANCE = ("low", "medium", "high", "critical")
WORDS = (
    "deploy migration timeout billing invoice retry queue worker cache index shard replica lease claim checkpoint"
    " ledger payment refund webhook cron backup restore snapshot rollback canary latency throughput quota token"
    " session cookie schema column vector embedding search ranking filter cursor page budget breaker trace span"
).split()
# Saves as often as the housekeeping tick (1 s) allows: restarts load a recent index and catch it up, and a kill
# may land in a save in any mode (in `save` mode it is made to).
SAVE_ENV = {"MEMORY_SPINE_INDEX_SAVE_SECONDS": "0", "MEMORY_SPINE_INDEX_SAVE_CHANGES": "1"}
Record = dict[str, Any]  # the FIELDS of a record as the client expects them; None means absent


def view(row: dict[str, Any]) -> Record:
    return {k: row[k] for k in FIELDS}


@dataclass
class Pending:
    """A write the kill cut off: it may or may not have committed. `after` maps each id to its would-be state."""

    op: str
    after: dict[str, Record | None]


@dataclass
class Ledger:
    """What the clients know: each id's acknowledged state, and the uncertain writes of the current cycle."""

    known: dict[str, Record | None] = field(default_factory=dict)
    pending: list[Pending] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    acked_ops: int = 0
    acked_records: int = 0
    by_op: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def ack(self, op: str, after: dict[str, Record | None]) -> None:
        with self.lock:
            self.known.update(after)
            self.touched.update(after)
            self.acked_ops += 1
            self.acked_records += len(after)
            self.by_op[op] = self.by_op.get(op, 0) + 1

    def uncertain(self, op: str, after: dict[str, Record | None]) -> None:
        with self.lock:
            self.pending.append(Pending(op, after))
            self.touched.update(after)

    def live(self) -> dict[str, Record]:
        return {i: r for i, r in self.known.items() if r is not None}


def _content(rng: random.Random, rid: str) -> str:
    # A random token makes every write's content (and, with any embedder, its vector) unique.
    return f"{rid} {rng.getrandbits(48):012x} " + " ".join(rng.sample(WORDS, 6))


def _new_record(rng: random.Random, rid: str, owner: str) -> Record:
    return {
        "content": _content(rng, rid),
        "tags": [owner, rng.choice(COLORS)],
        "metadata": {"owner": owner, "n": rng.randrange(1000), "nested": {"flag": rng.random() < 0.5}},
        "importance": rng.choice(IMPORTANCE),
        "key": f"rec:{rid}",
    }


def _body(rid: str, rec: Record) -> dict[str, Any]:
    return {"id": rid, **rec}


class Client(threading.Thread):
    """One client: a sequence of writes on its own ids until the server dies or `stop` is set."""

    def __init__(
        self, name: str, url: str, ledger: Ledger, rng: random.Random, stop: threading.Event, max_live: int
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.url, self.ledger, self.rng, self.stop, self.max_live = url, ledger, rng, stop, max_live
        own = [i for i in ledger.known if i.startswith(name + "-")]
        self.mine = [i for i in own if ledger.known[i] is not None]
        self.serial = max((int(i.rsplit("-", 1)[1]) for i in own), default=0)

    def _new_id(self) -> str:
        self.serial += 1
        return f"{self.name}-{self.serial}"

    def _plan(self) -> tuple[str, str, str, Any, dict[str, Record | None]]:
        """The next write: (op, method, path, json body, the state each id will have after it)."""
        rng, known = self.rng, self.ledger.known
        roll = rng.random()
        if len(self.mine) >= self.max_live:
            roll = rng.uniform(0.35, 0.88)  # no new records: upsert, patch or delete
        if not self.mine or roll < 0.35:
            rid = self._new_id()
            rec = _new_record(rng, rid, self.name)
            return "ingest", "POST", "/ingest", _body(rid, rec), {rid: rec}
        if roll < 0.47:
            rid = rng.choice(self.mine)
            rec = _new_record(rng, rid, self.name)  # upsert: replaces every field
            return "upsert", "POST", "/ingest", _body(rid, rec), {rid: rec}
        if roll < 0.75:
            rid = rng.choice(self.mine)
            cur = known[rid]
            assert cur is not None
            patch: dict[str, Any] = {"metadata": {"n": rng.randrange(1000), "p": rng.getrandbits(20)}}
            if "p" in cur["metadata"] and rng.random() < 0.3:
                patch["metadata"]["p"] = None  # null removes a key
            if rng.random() < 0.5:
                patch["tags"] = [self.name, rng.choice(COLORS)]
            if rng.random() < 0.3:
                patch["content"] = _content(rng, rid)
            if rng.random() < 0.3:
                patch["importance"] = rng.choice(IMPORTANCE)
            meta = {**cur["metadata"], **{k: v for k, v in patch["metadata"].items() if v is not None}}
            for k, v in patch["metadata"].items():
                if v is None:
                    meta.pop(k, None)
            after = {**cur, **{k: v for k, v in patch.items() if k != "metadata"}, "metadata": meta}
            return "patch", "PATCH", f"/memories/{rid}", patch, {rid: after}
        if roll < 0.88:
            rid = rng.choice(self.mine)
            return "delete", "DELETE", f"/memories/{rid}", None, {rid: None}
        # A small batch: new records and upserts of own ones, all or nothing.
        after: dict[str, Record | None] = {}
        for _ in range(rng.randint(2, 12)):
            rid = self._new_id() if rng.random() < 0.5 or not self.mine else rng.choice(self.mine)
            after[rid] = _new_record(rng, rid, self.name)
        body = {"records": [_body(i, r) for i, r in after.items() if r is not None]}
        return "batch", "POST", "/ingest/batch", body, after

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as http:
            while not self.stop.is_set():
                op, method, path, body, after = self._plan()
                try:
                    r = http.request(method, path, json=body)
                except httpx.TransportError:
                    self.ledger.uncertain(op, after)  # the kill: it may or may not have committed
                    return
                if r.status_code != 200:
                    self.ledger.errors.append(f"{op} {path}: {r.status_code} {r.text[:300]}")
                    self.ledger.uncertain(op, after)
                    return
                if op == "patch":
                    (rid,) = after
                    if view(r.json()) != after[rid]:
                        self.ledger.errors.append(f"PATCH {rid} answered {view(r.json())}, expected {after[rid]}")
                self.ledger.ack(op, after)
                for rid, rec in after.items():
                    if rec is None:
                        self.mine.remove(rid)
                    elif rid not in self.mine:
                        self.mine.append(rid)


@dataclass
class CycleReport:
    mode: str
    acked_ops: int
    acked_records: int
    uncertain: int
    applied: int
    verified: int
    index_open: str
    violations: list[str]
    seconds: float


def _kill(server: Any, mode: str, rng: random.Random, seconds: float) -> str:
    """Kill the server the way `mode` says; returns what happened (for the report)."""
    if mode == "save":
        tmp = Path(server.data_dir) / "index.hnsw.tmp"
        tmp.unlink(missing_ok=True)
        deadline = time.monotonic() + seconds + 5
        while time.monotonic() < deadline and not tmp.exists():
            time.sleep(0.0005)
        seen = tmp.exists()
        time.sleep(rng.choice([0.0, 0.0, rng.uniform(0, 0.004), rng.uniform(0, 0.03)]))
        server.kill()
        return "during index save" if seen else "no save seen"
    time.sleep(rng.uniform(0.2, seconds))
    if mode == "term":  # not a crash: the graceful stop, under the same load
        return f"SIGTERM, exit {server.terminate()}"
    server.kill()
    return "random"


def _batch_kill(server: Any, ledger: Ledger, rng: random.Random, cycle: int, size: int, est: float) -> str:
    """Send one large batch and kill the server while it is in flight."""
    after: dict[str, Record | None] = {}
    for n in range(size):
        rid = f"b{cycle}-{n}"
        after[rid] = _new_record(rng, rid, "batch")
    body = {"records": [_body(i, r) for i, r in after.items() if r is not None]}
    outcome: dict[str, Any] = {}

    def send() -> None:
        try:
            r = httpx.post(server.url + "/ingest/batch", json=body, timeout=120)
            outcome["status"] = r.status_code
        except httpx.TransportError as exc:
            outcome["error"] = type(exc).__name__

    t = threading.Thread(target=send, daemon=True)
    t.start()
    time.sleep(rng.uniform(0.1, 0.9) * est)
    server.kill()
    t.join(timeout=60)
    if outcome.get("status") == 200:
        ledger.ack("big_batch", after)
        return "batch finished before the kill"
    if "status" in outcome:
        ledger.errors.append(f"big batch answered {outcome['status']}")
    ledger.uncertain("big_batch", after)
    return "during batch"


def _time_batch(server: Any, ledger: Ledger, rng: random.Random, size: int) -> float:
    """How long a batch of `size` takes (under no other load): where to aim the kill in `batch` cycles."""
    after: dict[str, Record | None] = {f"t-{n}": _new_record(rng, f"t-{n}", "batch") for n in range(size)}
    started = time.monotonic()
    r = httpx.post(server.url + "/ingest/batch", json={"records": [_body(i, r) for i, r in after.items()]}, timeout=300)
    r.raise_for_status()
    ledger.ack("big_batch", after)
    return time.monotonic() - started


class Verifier:
    """Reads the restarted server and holds it to the ledger; returns violations (empty when all is well)."""

    def __init__(self, url: str, ledger: Ledger, threads: int = 8) -> None:
        self.url, self.ledger, self.threads = url, ledger, threads
        self.requests = 0

    def _map(self, fn: Callable[[httpx.Client, Any], Any], items: list[Any]) -> list[Any]:
        with httpx.Client(base_url=self.url, timeout=60, limits=httpx.Limits(max_connections=self.threads)) as http:
            with ThreadPoolExecutor(self.threads) as pool:
                out = list(pool.map(lambda it: fn(http, it), items))
        self.requests += len(items)
        return out

    @staticmethod
    def _get(http: httpx.Client, rid: str) -> tuple[str, Record | None | str]:
        r = http.get(f"/memories/{rid}")
        if r.status_code == 404:
            return rid, None
        if r.status_code != 200:
            return rid, f"GET answered {r.status_code} {r.text[:200]}"
        return rid, view(r.json())

    def _list(self, http: httpx.Client, tag: str | None = None) -> list[str]:
        ids: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 1000, "order": "oldest"}
            if cursor:
                params["cursor"] = cursor
            if tag:
                params["tags"] = tag
            page = http.get("/memories", params=params)
            page.raise_for_status()
            body = page.json()
            ids += [r["id"] for r in body["results"]]
            self.requests += 1
            cursor = body["next_cursor"]
            if not cursor:
                return ids

    def verify(self) -> tuple[list[str], int, int]:
        """Returns (violations, uncertain writes seen, how many of them had committed)."""
        led = self.ledger
        bad: list[str] = []
        ids = sorted(set(led.known) | {i for p in led.pending for i in p.after})
        seen = dict(self._map(self._get, ids))
        for rid, got in seen.items():
            if isinstance(got, str):
                bad.append(f"{rid}: {got}")
        # Each uncertain write: all of its records in the state it would have made, or all as they were.
        applied = 0
        for p in led.pending:
            new = [seen.get(i) == rec for i, rec in p.after.items()]
            old = [seen.get(i) == led.known.get(i) for i in p.after]
            if all(new):
                applied += 1
                led.known.update(p.after)
            elif not all(old):
                half = {i: seen.get(i) for i in p.after}
                bad.append(f"{p.op} cut by the kill is half-present: {half} vs would-be {p.after}")
        for rid in ids:
            if not isinstance(seen.get(rid), str) and seen.get(rid) != led.known.get(rid):
                if not any(rid in p.after for p in led.pending):
                    bad.append(f"{rid}: acknowledged {led.known.get(rid)}, found {seen.get(rid)}")
        # Whatever the uncertain writes did, from now on the server's state is the known one.
        for rid in ids:
            if not isinstance(seen.get(rid), str):
                led.known[rid] = seen.get(rid)  # type: ignore[assignment]
        live = led.live()
        with httpx.Client(base_url=self.url, timeout=60) as http:
            listed = self._list(http)
            if len(listed) != len(set(listed)):
                bad.append("GET /memories lists some record twice")
            phantoms, missing = set(listed) - set(live), set(live) - set(listed)
            if phantoms or missing:
                bad.append(f"listing: records nobody wrote {sorted(phantoms)}, records missing {sorted(missing)}")
            for color in COLORS:
                tagged = set(self._list(http, color))
                want = {i for i, r in live.items() if color in r["tags"]}
                if tagged != want:
                    bad.append(f"tag {color}: table has {len(tagged)} records, expected {len(want)}")
            stats = http.get("/stats").json()
            self.requests += 1
        if stats["total_memories"] != len(live):
            bad.append(f"/stats total_memories {stats['total_memories']}, expected {len(live)}")
        if stats["index"]["elements"] != stats["total_memories"]:
            bad.append(f"index holds {stats['index']['elements']} elements for {stats['total_memories']} rows")

        def by_key(http: httpx.Client, rid: str) -> str | None:
            rec = led.known[rid]
            key = rec["key"] if rec else f"rec:{rid}"
            r = http.get(f"/keys/{key}")
            if rec is None:
                return None if r.status_code == 404 else f"{rid}: deleted, but key {key} answers {r.status_code}"
            if r.status_code != 200 or r.json()["id"] != rid or view(r.json()) != rec:
                return f"{rid}: GET /keys/{key} answered {r.status_code} {r.text[:200]}"
            return None

        def by_vector(http: httpx.Client, rid: str) -> str | None:
            rec = live[rid]
            r = http.post("/search", json={"query": rec["content"], "limit": 3, "explain": True})
            if r.status_code != 200:
                return f"{rid}: search answered {r.status_code} {r.text[:200]}"
            hits = {h["id"]: h for h in r.json()["results"]}
            if rid not in hits or view(hits[rid]) != rec:
                return f"{rid}: not found by vector search on its content (plan {r.json().get('plan')})"
            return None

        gone = [i for i in led.touched if led.known.get(i) is None]
        bad += [v for v in self._map(by_key, sorted(live) + gone) if v]
        bad += [v for v in self._map(by_vector, sorted(live)) if v]
        return bad, len(led.pending), applied


def check_data_dir(data_dir: Path, embedder: str) -> tuple[int, dict[str, Any] | str]:
    """Run `memory-spine check` on a stopped data dir: (exit code, its JSON report or its stderr)."""
    r = subprocess.run(
        [sys.executable, "-m", "memory_spine", "check", "--data-dir", str(data_dir), "--embedder", embedder],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=str(ROOT),
    )
    try:
        return r.returncode, json.loads(r.stdout)
    except ValueError:
        return r.returncode, r.stderr


def _check_copy(server: Any) -> str | None:
    """`memory-spine check` on a copy of the killed server's data dir (the copy keeps the server's own restart
    honest: check would save a caught-up index). Returns a violation, or None."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "copy"
        shutil.copytree(server.data_dir, copy)
        rc, report = check_data_dir(copy, server.embedder)
    if rc != 0 or not isinstance(report, dict) or report["rows"] != report["index_elements"]:
        return f"memory-spine check after the kill: exit {rc}, {report}"
    return None


def run_cycles(
    server: Any,
    *,
    cycles: int,
    workers: int,
    seconds: float,
    modes: tuple[str, ...] = ("random", "save", "batch"),
    batch_size: int = 400,
    max_live: int = 60,
    seed: int = 0,
    check_every: bool = False,
    log: Callable[[str], None] = print,
) -> tuple[Ledger, list[CycleReport]]:
    """Run `cycles` kill cycles against `server` (a tests.conftest.ServerProcess, not started yet).

    Returns the ledger and one report per cycle; the report of cycle i is the check made after its kill.
    """
    rng = random.Random(seed)
    ledger = Ledger()
    reports: list[CycleReport] = []
    server.env.update(SAVE_ENV)
    server.start()
    batch_est = _time_batch(server, ledger, rng, batch_size) if "batch" in modes else 0.0
    for cycle in range(cycles):
        mode = modes[cycle % len(modes)]
        started = time.monotonic()
        ledger.pending, ledger.touched = [], set()
        before_ops, before_records = ledger.acked_ops, ledger.acked_records
        stop = threading.Event()
        clients = [
            Client(f"w{k}", server.url, ledger, random.Random(rng.getrandbits(64)), stop, max_live)
            for k in range(workers)
        ]
        for c in clients:
            c.start()
        if mode == "batch":
            time.sleep(rng.uniform(0.1, 0.5))
            how = _batch_kill(server, ledger, rng, cycle, batch_size, batch_est)
        else:
            how = _kill(server, mode, rng, seconds)
        stop.set()
        for c in clients:
            c.join(timeout=120)
        killed_check = _check_copy(server) if check_every else None
        server.start()
        verifier = Verifier(server.url, ledger)
        violations, uncertain, applied = verifier.verify()
        violations = list(ledger.errors) + violations
        if killed_check:
            violations.append(killed_check)
        ledger.errors.clear()
        with httpx.Client(base_url=server.url) as http:
            last_open = http.get("/stats").json()["index"]["last_open"]
        report = CycleReport(
            mode=f"{mode} ({how})",
            acked_ops=ledger.acked_ops - before_ops,
            acked_records=ledger.acked_records - before_records,
            uncertain=uncertain,
            applied=applied,
            verified=len(ledger.live()),
            index_open=last_open["how"]
            + (f" (caught up {last_open['caught_up']})" if last_open["how"] == "loaded" else "")
            + (f": {last_open['reason'].replace(str(server.data_dir) + '/', '')}" if last_open.get("reason") else ""),
            violations=violations,
            seconds=round(time.monotonic() - started, 2),
        )
        reports.append(report)
        log(
            f"cycle {cycle + 1:>2}/{cycles} {report.mode:<34} acked {report.acked_ops:>5} writes"
            f" ({report.acked_records} records), uncertain {uncertain} (committed {applied}),"
            f" live {report.verified}, index {report.index_open[:90]}, violations {len(violations)}"
        )
        for v in violations[:10]:
            log(f"    VIOLATION {v}")
    return ledger, reports


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cycles", type=int, default=20)
    p.add_argument("--workers", type=int, default=16)
    p.add_argument("--seconds", type=float, default=2.0, help="longest stretch of writes before a random kill")
    p.add_argument("--embedder", default="fake", choices=["fake", "onnx"])
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--max-live", type=int, default=80, help="records per client before it prefers deletes")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--data-dir", type=Path, help="default: a temp dir")
    p.add_argument("--no-check-each", action="store_true", help="skip `memory-spine check` after every kill")
    args = p.parse_args(argv)

    from tests.conftest import ServerProcess

    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="crash-test-")) / "data"
    server = ServerProcess(data_dir, embedder=args.embedder, args=["--log-level", "warning"])
    print(f"data dir {data_dir}, server log {server.log_path}")
    started = time.monotonic()
    try:
        ledger, reports = run_cycles(
            server,
            cycles=args.cycles,
            workers=args.workers,
            seconds=args.seconds,
            batch_size=args.batch_size,
            max_live=args.max_live,
            seed=args.seed,
            check_every=not args.no_check_each,
        )
        code = server.terminate()
    finally:
        server.stop()
    rc, report = check_data_dir(data_dir, args.embedder)
    violations = sum(len(r.violations) for r in reports)
    print()
    print(f"cycles run:                 {len(reports)} ({', '.join(sorted({r.mode.split()[0] for r in reports}))})")
    print(f"acknowledged writes:        {ledger.acked_ops} ({ledger.acked_records} records) {ledger.by_op}")
    cut, committed = sum(r.uncertain for r in reports), sum(r.applied for r in reports)
    print(f"writes cut by a kill:       {cut}, of which committed {committed}")
    print(f"kills during an index save: {sum('during index save' in r.mode for r in reports)}")
    print(f"kills during a big batch:   {sum('during batch' in r.mode for r in reports)}")
    print(f"index rebuilt on restart:   {sum(r.index_open.startswith('rebuilt') for r in reports)}")
    print(f"records verified (sum):     {sum(r.verified for r in reports)} (by id, exact key, vector search)")
    print(f"live records at the end:    {len(ledger.live())}")
    print(f"SIGTERM exit code:          {code}")
    print(f"memory-spine check:         exit {rc} {report}")
    print(f"violations:                 {violations}")
    print(f"wall time:                  {time.monotonic() - started:.0f} s")
    return 0 if violations == 0 and rc == 0 and code == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
