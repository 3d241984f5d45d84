"""Chroma, the peer, on the same precomputed vectors: add throughput, query latency, filters, recall, RSS.

Runs as its own process (``python -m benchmarks.chroma_peer --in DIR --out FILE``) so that its RSS is its
own, and so that it can run on another interpreter: chromadb 1.5.9 upgrades pydantic and orjson, which
the service pins, so on a machine where installing it would change the service's environment it lives in a
separate venv (see :func:`find_python`). Only numpy, psutil and chromadb are imported here.

Input directory (written by :func:`write_inputs`): ``vectors.npy`` (n, d) float32 unit rows; ``qvecs.npy``;
``exact.npy`` (exact top-10 row indices per query); ``meta.json`` (per row: sel_bucket, package, kind);
``texts.json`` (documents, optional); ``filters.json`` (name -> {where, exact: file of exact top-10 under
that filter}). Chroma is used as users meet it: a ``PersistentClient`` in a temporary directory, the
collection in cosine space with Chroma's default HNSW settings, ``add`` in batches of 1,000 (the service's
batch limit), ``query(query_embeddings=..., n_results=10)`` with the default ``include`` (documents,
metadatas, distances), filters through ``where`` on metadata.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

K = 10
BATCH = 1000


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _smaps_mb() -> dict[str, float]:
    """Pss, RssAnon (private heap) and RssFile of this process, MiB (as benchmarks.service reads the server)."""
    out: dict[str, float] = {}
    wanted = {"Pss": "pss", "RssAnon": "anon", "RssFile": "file"}
    try:
        for name in ("status", "smaps_rollup"):
            for line in Path(f"/proc/self/{name}").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in wanted and wanted[key] not in out and value.split():
                    out[wanted[key]] = round(int(value.split()[0]) / 1024, 1)
    except OSError:
        pass
    return out


def _summary(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {
        "n": int(a.size),
        "p50": round(float(p50), 4),
        "p95": round(float(p95), 4),
        "p99": round(float(p99), 4),
        "mean": round(float(a.mean()), 4),
    }


def _recall(found: list[list[int]], exact: np.ndarray) -> float:
    k = exact.shape[1] if exact.ndim == 2 and exact.size else K
    hits = sum(len(set(f[:k]) & set(e.tolist())) for f, e in zip(found, exact, strict=True))
    return round(hits / max(1, len(exact) * k), 4)


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run(indir: Path, samples: int, filter_samples: int, workdir: Path | None = None) -> dict[str, Any]:
    rss_start = _rss_mb()
    import chromadb
    from chromadb.config import Settings

    rss_imported = _rss_mb()
    vectors = np.load(indir / "vectors.npy")
    qvecs = np.load(indir / "qvecs.npy")
    exact = np.load(indir / "exact.npy")
    meta = json.loads((indir / "meta.json").read_text())
    texts = json.loads((indir / "texts.json").read_text()) if (indir / "texts.json").exists() else None
    filters = json.loads((indir / "filters.json").read_text())
    ids = [f"doc-{i:07d}" for i in range(len(vectors))]
    has_texts = texts is not None
    rss_loaded = _rss_mb()

    tmp = Path(tempfile.mkdtemp(prefix="chroma-bench-", dir=workdir))
    try:
        client = chromadb.PersistentClient(path=str(tmp), settings=Settings(anonymized_telemetry=False))
        coll = client.create_collection("bench", configuration={"hnsw": {"space": "cosine"}})
        t0 = time.perf_counter()
        for s in range(0, len(vectors), BATCH):
            coll.add(
                ids=ids[s : s + BATCH],
                embeddings=vectors[s : s + BATCH],
                metadatas=meta[s : s + BATCH],
                documents=texts[s : s + BATCH] if texts is not None else None,
            )
        add_s = time.perf_counter() - t0
        n = len(vectors)
        # The inputs are ours, not Chroma's: free them, so the RSS below is Chroma's (plus the interpreter).
        del vectors, meta, texts, ids
        gc.collect()
        rss_added = _rss_mb()

        def query(q: np.ndarray, where: dict | None = None) -> list[int]:
            r = coll.query(query_embeddings=q.reshape(1, -1), n_results=K, where=where)
            return [int(x[4:]) for x in r["ids"][0]]

        def measure(where: dict | None, count: int) -> tuple[dict[str, float], list[list[int]]]:
            """``count`` timed queries (cycling), then every query once more for recall if not yet seen."""
            reps = max(1, -(-count // len(qvecs)))
            order = (list(range(len(qvecs))) * reps)[:count]
            for i in order[:5]:
                query(qvecs[i], where)
            ms, found = [], {}
            for i in order:
                t = time.perf_counter()
                res = query(qvecs[i], where)
                ms.append((time.perf_counter() - t) * 1000)
                found.setdefault(i, res)
            for i in range(len(qvecs)):
                if i not in found:
                    found[i] = query(qvecs[i], where)
            return _summary(ms), [found[i] for i in range(len(qvecs))]

        lat, found = measure(None, samples)
        out: dict[str, Any] = {
            "chromadb": chromadb.__version__,
            "python": sys.executable,
            "n": n,
            "documents": has_texts,
            "hnsw": coll.configuration.get("hnsw") if isinstance(coll.configuration, dict) else None,
            "add_s": round(add_s, 2),
            "add_per_s": round(n / add_s, 1),
            "query": lat,
            "recall": _recall(found, exact),
            "filters": {},
        }
        for name, spec in filters.items():
            flat, ffound = measure(spec["where"], filter_samples)
            fexact = np.load(indir / spec["exact"])
            out["filters"][name] = {**flat, "recall": _recall(ffound, fexact), "where": spec["where"]}
        end = _rss_mb()
        out["rss_mb"] = {
            "start": round(rss_start, 1),
            "after_import": round(rss_imported, 1),
            "with_inputs": round(rss_loaded, 1),
            "after_add_inputs_freed": round(rss_added, 1),
            "end": round(end, 1),
            # Peak includes our inputs (vectors, texts) while they were held.
            "peak": round(_peak_rss_mb(), 1),
            "chroma_delta": round(end - rss_imported, 1),
            **_smaps_mb(),
        }
        out["disk_bytes"] = _dir_bytes(tmp)
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------------------------ used by the parent


def find_python() -> str | None:
    """An interpreter that imports chromadb: ``$BENCH_CHROMA_PYTHON``, this one, or ``.venv-bench``; else None."""
    candidates = [
        os.environ.get("BENCH_CHROMA_PYTHON"),
        sys.executable,
        str(Path(__file__).resolve().parent.parent / ".venv-bench" / "bin" / "python"),
    ]
    for py in candidates:
        if py and Path(py).exists():
            ok = subprocess.run([py, "-c", "import chromadb, psutil"], capture_output=True).returncode == 0
            if ok:
                return py
    return None


def write_inputs(
    outdir: Path,
    vectors: np.ndarray,
    qvecs: np.ndarray,
    exact: np.ndarray,
    meta: list[dict[str, Any]],
    filters: dict[str, tuple[dict[str, Any], np.ndarray]],
    texts: list[str] | None,
) -> None:
    """Write the input directory :func:`run` reads. ``filters``: name -> (where, exact top-10 indices)."""
    outdir.mkdir(parents=True, exist_ok=True)
    np.save(outdir / "vectors.npy", np.ascontiguousarray(vectors, dtype=np.float32))
    np.save(outdir / "qvecs.npy", np.ascontiguousarray(qvecs, dtype=np.float32))
    np.save(outdir / "exact.npy", exact)
    (outdir / "meta.json").write_text(json.dumps(meta))
    if texts is not None:
        (outdir / "texts.json").write_text(json.dumps(texts))
    spec = {}
    for name, (where, fexact) in filters.items():
        fname = f"exact-{name}.npy"
        np.save(outdir / fname, fexact)
        spec[name] = {"where": where, "exact": fname}
    (outdir / "filters.json").write_text(json.dumps(spec))


def run_subprocess(python: str, indir: Path, *, samples: int, filter_samples: int, timeout: float) -> dict[str, Any]:
    """Run :func:`run` under ``python``; its JSON result, or ``{"error": ...}``."""
    out = indir / "result.json"
    root = Path(__file__).resolve().parent.parent
    cmd = [
        python,
        "-m",
        "benchmarks.chroma_peer",
        "--in",
        str(indir),
        "--out",
        str(out),
        "--samples",
        str(samples),
        "--filter-samples",
        str(filter_samples),
    ]
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False", "PYTHONPATH": str(root)}
    try:
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0 or not out.exists():
        return {"error": f"exit {proc.returncode}: {proc.stderr[-2000:]}"}
    return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description="Measure Chroma on precomputed vectors (see module docstring).")
    ap.add_argument("--in", dest="indir", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--filter-samples", type=int, default=150)
    args = ap.parse_args()
    result = run(args.indir, args.samples, args.filter_samples, workdir=args.indir)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
