"""Many agents at once: concurrent semantic search and single-record ingest, as ratios of the model alone.

    python -m benchmarks.concurrency [--n 10000] [--clients 1 8 32] [--profile DIR]

One real ``memory-spine serve`` (the bundled model) on ``n`` passages of real text (:mod:`benchmarks.corpus`,
imported with their cached vectors). In the same run, on the same machine, one after another:

1. the model alone, in this process, while the server idles: query texts embedded in batches of 32 (the most a
   service could answer per second if embedding were all it did) and passages in batches of 64 (the same for
   ingest); measured again right before each scenario, as the load on a shared machine drifts;
2. semantic ``/search`` with each number of keep-alive clients (:func:`benchmarks.service._concurrent`), every
   query new (no cache answers it): throughput, p50, p99, and throughput / the model's batch query rate;
3. ``/ingest`` from 32 single-record clients, and the same number of records through ``/ingest/batch``: records/s
   and their ratio to the model's batch passage rate;
4. the model alone again: ratios are given against the mean of all model measurements and against the one
   taken right before the scenario.

With ``--profile DIR`` py-spy samples the server during the 8- and 32-client searches and the concurrent ingest
(``pip install py-spy``; needs ptrace), writes the raw stacks there, and prints where the server's threads
spent their samples (active threads only; grouped: model, tokenizer, index, SQLite, HTTP/JSON, waiting).
Machine load is printed at start and end; nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from .corpus import build_corpus
from .embeddings import embed_corpus
from .floors import K
from .service import HttpBench, Server, _concurrent, load_corpus

QUERY_BATCH = 32
PASSAGE_BATCH = 64
# Frame substrings that say where a sample was: first match wins, checked from the innermost frame outwards.
GROUPS = [
    ("model (onnxruntime run)", ("run (onnxruntime", "_run_chunk")),
    ("tokenizer", ("encode_batch", "Clipper", "clip.py")),
    ("index (hnswlib)", ("knn_query", "index.py")),
    ("SQLite", ("sqlite", "storage/")),
    ("JSON", ("json", "orjson", "responses.py")),
    ("pydantic", ("pydantic",)),
    ("waiting (locks, futures, queues)", ("wait (threading", "result (concurrent", "acquire", "_wait_for_tstate")),
    ("telemetry", ("telemetry", "opentelemetry", "trace/__init__")),
    ("event loop / HTTP", ("uvicorn", "h11", "httptools", "starlette", "fastapi", "anyio", "asyncio")),
]


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _per_run(before: dict[str, Any], after: dict[str, Any], part: str) -> float | None:
    """Callers served per run of the embedder's (or the group commit's) coalescer, from two /stats answers."""
    a, b = before.get(part) or {}, after.get(part) or {}
    if a.get("runs") is None or b.get("runs") is None or b["runs"] == a["runs"]:
        return None
    return round((b["calls"] - a["calls"]) / (b["runs"] - a["runs"]), 2)


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU seconds of a process, all its threads (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def model_rates(texts_q: list[str], texts_p: list[str]) -> dict[str, float]:
    """The model alone in this process: query texts/s in batches of 32, passages/s in batches of 64, and the
    CPU milliseconds each costs (all threads: the load on the machine slows the first, not the second)."""
    from memory_spine.embedders import create_embedder

    emb = create_embedder("onnx")
    try:
        emb.embed(texts_q[:QUERY_BATCH])  # warm
        t0, c0 = time.perf_counter(), time.process_time()
        for s in range(0, len(texts_q), QUERY_BATCH):
            emb.embed(texts_q[s : s + QUERY_BATCH])
        q = len(texts_q) / (time.perf_counter() - t0)
        q_cpu = (time.process_time() - c0) * 1000 / len(texts_q)
        t0, c0 = time.perf_counter(), time.process_time()
        for s in range(0, len(texts_p), PASSAGE_BATCH):
            emb.embed(texts_p[s : s + PASSAGE_BATCH])
        p = len(texts_p) / (time.perf_counter() - t0)
        p_cpu = (time.process_time() - c0) * 1000 / len(texts_p)
    finally:
        emb.close()
    return {
        "queries_per_s": round(q, 1),
        "passages_per_s": round(p, 1),
        "query_cpu_ms": round(q_cpu, 2),
        "passage_cpu_ms": round(p_cpu, 2),
    }


def _timed_run(pid: int, path: str, bodies: list[dict[str, Any]], clients: int, url: str) -> dict[str, Any]:
    """`_concurrent`, plus the CPU milliseconds per request the server and this client spent."""
    s0, c0 = cpu_seconds(pid), time.process_time()
    out = asyncio.run(_concurrent(url, path, bodies, clients))
    out["server_cpu_ms"] = round((cpu_seconds(pid) - s0) * 1000 / len(bodies), 2)
    out["client_cpu_ms"] = round((time.process_time() - c0) * 1000 / len(bodies), 2)
    return out


class Profiler:
    """py-spy sampling the server for the length of a `with` block, raw (collapsed) stacks to a file."""

    def __init__(self, pid: int, path: Path | None, rate: int = 250) -> None:
        self.pid, self.path, self.rate = pid, path, rate
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Profiler:
        if self.path is not None:
            cmd = ["py-spy", "record", "--pid", str(self.pid), "--rate", str(self.rate), "--format", "raw"]
            cmd += ["--threads", "--nonblocking", "-o", str(self.path)]  # active threads only (no --idle)
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(1.0)  # attach before the clock starts
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _thread_kind(name: str) -> str:
    if name == "MainThread":
        return "event loop"
    if name.startswith("AnyIO worker"):
        return "pool threads"
    if name.startswith("memory-spine-"):
        return name.removeprefix("memory-spine-") + " thread"
    return "other threads"


def summarize_profile(path: Path) -> dict[str, Any]:
    """Active samples per thread kind (event loop, pool, model, commit) and, within each, per group (the
    innermost frame that names one), from py-spy's raw output (`thread (id): name;frame;...;frame count`)."""
    by_thread: dict[str, Counter[str]] = {}
    top: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        kind = _thread_kind(frames[0].partition(": ")[2])
        group = next(
            (g for f in reversed(frames[1:]) for g, keys in GROUPS if any(k in f for k in keys)),
            "other",
        )
        by_thread.setdefault(kind, Counter())[group] += n
        top[f"{kind}: {frames[-1][:110]}"] += n
    share = lambda c: round(c / max(total, 1), 3)  # noqa: E731 - local shorthand
    return {
        "samples": total,
        "threads": {
            k: share(sum(c.values())) for k, c in sorted(by_thread.items(), key=lambda kv: -sum(kv[1].values()))
        },
        "groups": {k: {g: share(n) for g, n in c.most_common()} for k, c in by_thread.items()},
        "top_frames": [(f, share(c)) for f, c in top.most_common(12)],
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    n_req = args.requests
    holdout = n_req * (len(args.clients) + 2) + args.ingest * 2 + 512
    _log(f"corpus: {args.n} passages")
    corpus = build_corpus(args.n, seed=0, queries=10, holdout=holdout)
    vectors = embed_corpus(corpus, verbose=True)
    probes = corpus.probes(n_req * (len(args.clients) + 1) + 256)
    texts = corpus.holdout[::-1]
    res: dict[str, Any] = {"n": args.n, "loadavg_start": os.getloadavg(), "clients": args.clients}
    work = Path(tempfile.mkdtemp(prefix="bench-conc-"))
    profile_dir = args.profile
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
    try:
        _log("loading the corpus")
        res["load"] = load_corpus(work / "data", corpus, vectors, work)
        server = Server(work / "data", work / "server.log", extra=args.serve_args)
        res["start_s"] = round(server.start(), 2)
        try:
            assert server.proc is not None
            pid = server.proc.pid
            floor_q = probes[-256:]
            floor_p = texts[-256:]
            _log("the model alone (1)")
            rates = [model_rates(floor_q, floor_p)]
            bench = HttpBench(server.url)
            bench.semantic(probes[:20])  # warm the server's model and pages
            it = iter(probes[20:])
            res["search"] = {}
            for c in args.clients:
                rates.append(model_rates(floor_q, floor_p))  # the load drifts: measure the model beside each run
                bodies = [{"query": next(it), "limit": K, "mode": args.mode} for _ in range(n_req)]
                prof = profile_dir / f"search-{c}.txt" if profile_dir is not None and c > 1 else None
                _log(f"semantic search, {c} clients")
                before = bench.stats()
                with Profiler(pid, prof):
                    res["search"][c] = _timed_run(pid, "/search", bodies, c, server.url)
                res["search"][c]["per_model_run"] = _per_run(before, bench.stats(), "embedder")
                if prof is not None and prof.exists():
                    res["search"][c]["profile"] = summarize_profile(prof)
                res["search"][c]["model_queries_per_s"] = rates[-1]["queries_per_s"]
            tx = iter(texts)
            ing = [{"id": f"c-{i}", "content": next(tx), "tags": ["bench"]} for i in range(args.ingest)]
            prof = profile_dir / "ingest-32.txt" if profile_dir is not None else None
            _log("ingest, 32 single-record clients")
            rates.append(model_rates(floor_q, floor_p))
            before = bench.stats()
            with Profiler(pid, prof):
                res["ingest_concurrent"] = _timed_run(pid, "/ingest", ing, 32, server.url)
            after = bench.stats()
            res["ingest_concurrent"]["per_model_run"] = _per_run(before, after, "embedder")
            res["ingest_concurrent"]["per_commit"] = _per_run(before, after, "group_commit")
            if prof is not None and prof.exists():
                res["ingest_concurrent"]["profile"] = summarize_profile(prof)
            _log("ingest, batches")
            batch_texts = [next(tx) for _ in range(args.ingest)]
            s0 = cpu_seconds(pid)
            res["ingest_batched"] = bench.ingest_batched(batch_texts, "b", PASSAGE_BATCH)
            res["ingest_batched"]["server_cpu_ms"] = round((cpu_seconds(pid) - s0) * 1000 / len(batch_texts), 2)
            bench.close()
            _log("the model alone (2)")
            rates.append(model_rates(floor_q, floor_p))
        finally:
            res["stop_code"] = server.stop()
    finally:
        if args.keep:
            _log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    res["model"] = rates
    mq = sum(r["queries_per_s"] for r in rates) / len(rates)
    mp = sum(r["passages_per_s"] for r in rates) / len(rates)
    for d in res["search"].values():
        # Against the model measured right before this run and the mean of all: the load drifts.
        d["ratio_to_model_batch"] = round(d["per_s"] / mq, 3)
        d["ratio_to_model_beside"] = round(d["per_s"] / d["model_queries_per_s"], 3)
    res["ingest_concurrent"]["ratio_to_model_batch"] = round(res["ingest_concurrent"]["per_s"] / mp, 3)
    res["ingest_batched"]["ratio_to_model_batch"] = round(res["ingest_batched"]["records_per_s"] / mp, 3)
    res["loadavg_end"] = os.getloadavg()
    return res


def render(res: dict[str, Any]) -> str:
    mq = [r["queries_per_s"] for r in res["model"]]
    mp = [r["passages_per_s"] for r in res["model"]]
    lines = [
        f"n={res['n']}; load avg start {tuple(round(x, 2) for x in res['loadavg_start'])},"
        f" end {tuple(round(x, 2) for x in res['loadavg_end'])}",
        f"model alone: queries {mq} /s (batches of {QUERY_BATCH}), passages {mp} /s (batches of {PASSAGE_BATCH})",
        f"model alone, CPU ms each: queries {[r['query_cpu_ms'] for r in res['model']]},"
        f" passages {[r['passage_cpu_ms'] for r in res['model']]}",
        "",
        "scenario                          per s    p50 ms    p99 ms   x model batch (mean; beside)",
    ]
    for c, d in res["search"].items():
        lines.append(
            f"search, {c:>2} clients              {d['per_s']:>7}  {d['p50']:>8.1f}  {d['p99']:>8.1f}"
            f"   {d['ratio_to_model_batch']:.2f}; {d['ratio_to_model_beside']:.2f}   callers/model run"
            f" {d.get('per_model_run')}; CPU ms/request server {d.get('server_cpu_ms')},"
            f" client {d.get('client_cpu_ms')}"
        )
    d = res["ingest_concurrent"]
    lines.append(
        f"ingest, 32 single-record clients  {d['per_s']:>7}  {d['p50']:>8.1f}  {d['p99']:>8.1f}"
        f"   {d['ratio_to_model_batch']:.2f}   callers/model run {d.get('per_model_run')}, records/commit"
        f" {d.get('per_commit')}; CPU ms/record server {d.get('server_cpu_ms')}, client {d.get('client_cpu_ms')}"
    )
    d = res["ingest_batched"]
    lines.append(
        f"ingest, batches of {PASSAGE_BATCH}             {d['records_per_s']:>7}  {d['p50']:>8.1f}  {d['p99']:>8.1f}"
        f"   {d['ratio_to_model_batch']:.2f}   CPU ms/record server {d.get('server_cpu_ms')}"
    )
    for name, d in [*((f"search {c}", v) for c, v in res["search"].items()), ("ingest 32", res["ingest_concurrent"])]:
        if "profile" in d:
            p = d["profile"]
            lines.append(f"\nprofile, {name}: {p['samples']} active samples; share by thread, then by group:")
            for kind, t_share in p["threads"].items():
                groups = ", ".join(f"{g} {v:.1%}" for g, v in p["groups"][kind].items() if v >= 0.005)
                lines.append(f"  {kind:<16} {t_share:6.1%}  ({groups})")
            lines.append("  top frames: " + "; ".join(f"{f} {v:.1%}" for f, v in p["top_frames"][:6]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--n", type=int, default=10_000, help="passages (default 10000)")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--requests", type=int, default=400, help="searches per client count (default 400)")
    ap.add_argument("--ingest", type=int, default=640, help="records per ingest scenario (default 640)")
    ap.add_argument("--profile", type=Path, help="sample the server with py-spy, raw stacks into this dir")
    ap.add_argument("--mode", default="semantic", help="search mode (default semantic)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--serve-args", nargs="*", default=[], help="extra `memory-spine serve` arguments")
    args = ap.parse_args(argv)
    res = run(args)
    print(render(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
