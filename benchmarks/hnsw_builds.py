"""Two builds of the `hnswlib` module side by side, in one process: build time and single-query latency.

Why: hnswlib 0.8.0 has no wheel for CPython 3.11 on Linux, so `pip install .` compiles it (about a minute here,
with ``-march=native``); chroma-hnswlib ships a prebuilt wheel of the same module, compiled for baseline x86-64
(SSE only). This measures what the wheel costs at search time. Both extension modules are loaded under the name
``hnswlib`` from their files, so the two are timed query by query, alternating which goes first, and machine
noise falls on both alike. Vectors are clustered random unit vectors; parameters are the service's
(config.py: M=16, ef_construction=200, ef=128, k=10). The build adds blocks of 5,000 alternately, two threads,
as the index's rebuild does.

    pip install --no-deps --target /tmp/chw-site chroma-hnswlib==0.7.6
    python -m benchmarks.hnsw_builds --lib chroma=/tmp/chw-site/hnswlib.cpython-311-x86_64-linux-gnu.so -n 100000

``--lib NAME=PATH`` may be given more than once; the installed ``hnswlib`` is always the first.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import json
import time
from types import ModuleType

import numpy as np

from benchmarks.floors import summarize

M, EF_CONSTRUCTION, EF, K, DIM = 16, 200, 128, 10, 384
BLOCK = 5000


def load_module(path: str) -> ModuleType:
    """Load the extension module `hnswlib` from this file (another file gives a separate module)."""
    loader = importlib.machinery.ExtensionFileLoader("hnswlib", path)
    spec = importlib.util.spec_from_file_location("hnswlib", path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def clustered(rng: np.random.Generator, centers: np.ndarray, n: int, spread: float) -> np.ndarray:
    """Unit vectors around random centers (spread 1.0: about cos 0.5 within a cluster)."""
    v = centers[rng.integers(0, len(centers), n)] + spread * rng.standard_normal((n, centers.shape[1]))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def compare(libs: dict[str, ModuleType], n: int, queries: int, spread: float, seed: int = 42) -> dict:
    """Build each library's index on the same vectors, then time single knn_query calls interleaved."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((max(n // 200, 10), DIM)).astype(np.float32)
    x, q = clustered(rng, centers, n, spread), clustered(rng, centers, queries, spread)
    exact = np.vstack([np.argsort(-(x @ q[i : i + 500].T), axis=0)[:K].T for i in range(0, queries, 500)])
    names = list(libs)
    index, wall, cpu = {}, dict.fromkeys(names, 0.0), dict.fromkeys(names, 0.0)
    for name, lib in libs.items():
        index[name] = lib.Index(space="cosine", dim=DIM)
        index[name].init_index(max_elements=n, M=M, ef_construction=EF_CONSTRUCTION, random_seed=100)
    for b, start in enumerate(range(0, n, BLOCK)):
        for name in names if b % 2 == 0 else names[::-1]:
            w, c = time.perf_counter(), time.process_time()
            index[name].add_items(x[start : start + BLOCK], np.arange(start, min(start + BLOCK, n)), num_threads=2)
            wall[name] += time.perf_counter() - w
            cpu[name] += time.process_time() - c
    out: dict = {"n": n, "queries": 2 * queries, "spread": spread}
    lat: dict[str, list[float]] = {name: [] for name in names}
    for name in names:
        index[name].set_ef(EF)
        index[name].set_num_threads(1)
        found, _ = index[name].knn_query(q, k=K, num_threads=1)
        recall = np.mean([len(set(found[j].tolist()) & set(exact[j].tolist())) / K for j in range(queries)])
        out[name] = {"build_wall_s": round(wall[name], 1), "build_cpu_s": round(cpu[name], 1), "recall": recall}
        for v in q[:200]:
            index[name].knn_query(v, k=K)  # warm-up
    for rnd in range(2):
        for j in range(queries):
            for name in names if (j + rnd) % 2 == 0 else names[::-1]:
                t0 = time.perf_counter()
                index[name].knn_query(q[j], k=K)
                lat[name].append((time.perf_counter() - t0) * 1000)
    for name in names:
        out[name]["recall"] = round(float(out[name]["recall"]), 4)
        out[name]["latency_ms"] = summarize(lat[name])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lib", action="append", default=[], metavar="NAME=PATH", help="another hnswlib .so")
    ap.add_argument("-n", type=int, default=20_000, help="vectors in the index")
    ap.add_argument("--queries", type=int, default=2000, help="query vectors (each timed twice per library)")
    ap.add_argument("--spread", type=float, default=1.0, help="noise around the cluster centers")
    args = ap.parse_args()
    import hnswlib

    libs = {"installed": load_module(hnswlib.__file__)}
    for spec in args.lib:
        name, _, path = spec.partition("=")
        libs[name] = load_module(path)
    print(json.dumps(compare(libs, args.n, args.queries, args.spread), indent=1))


if __name__ == "__main__":
    main()
