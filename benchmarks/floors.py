"""The floors: the service's own parts measured alone, in-process, on the same precomputed vectors.

- query embedding: the service's ONNX embedder on one query at a time (p50/p95/p99), and its batch
  throughput on passages (the ceiling for ingest);
- exact search: one numpy matrix-vector product over all vectors plus a top-k selection, unfiltered and
  over each pre-filtered subset (the filter's vectors already gathered, so SQL is not part of the floor);
- hnswlib: cosine index built with the service's M/ef_construction; ``ef`` is swept and the smallest ``ef``
  reaching recall@10 >= 0.98 against exact search is reported, beside the service's configured ``ef``.

No HTTP and no SQLite here: the service's overhead over these is the ratio the report prints.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

K = 10


def summarize(samples_ms: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/mean/min/max of latency samples in milliseconds."""
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        return {"n": 0}
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {
        "n": int(a.size),
        "p50": round(float(p50), 4),
        "p95": round(float(p95), 4),
        "p99": round(float(p99), 4),
        "mean": round(float(a.mean()), 4),
        "min": round(float(a.min()), 4),
        "max": round(float(a.max()), 4),
    }


def time_each(fn: Callable[[Any], Any], items: Sequence[Any], *, warmup: int = 5) -> list[float]:
    """Call ``fn(item)`` for each item (after ``warmup`` untimed calls); the latencies in ms."""
    for item in items[:warmup]:
        fn(item)
    out = []
    for item in items:
        t0 = time.perf_counter()
        fn(item)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def cycle(items: Sequence[Any], n: int) -> list[Any]:
    """``items`` repeated to length ``n`` (at least one full pass)."""
    reps = max(1, -(-n // max(len(items), 1)))
    return (list(items) * reps)[: max(n, len(items))]


# ------------------------------------------------------------------------------------------------ exact


def exact_topk(vectors: np.ndarray, qvecs: np.ndarray, k: int = K, *, block: int = 256) -> np.ndarray:
    """Exact top-k row indices (by inner product = cosine on unit vectors) for each query, best first."""
    k = min(k, len(vectors))
    out = np.empty((len(qvecs), k), dtype=np.int64)
    for s in range(0, len(qvecs), block):
        scores = qvecs[s : s + block] @ vectors.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        out[s : s + block] = np.take_along_axis(top, order, axis=1)
    return out


def recall_at_k(found: Sequence[Sequence[int]], exact: np.ndarray, k: int = K) -> float:
    """Mean fraction of the exact top-k found in each result list's first k."""
    if len(exact) == 0:
        return float("nan")
    hits = sum(len(set(list(f)[:k]) & set(e[:k].tolist())) for f, e in zip(found, exact, strict=True))
    return hits / (len(exact) * min(k, exact.shape[1]))


def _exact_one(vectors: np.ndarray, k: int) -> Callable[[np.ndarray], np.ndarray]:
    def search(q: np.ndarray) -> np.ndarray:
        scores = vectors @ q
        kk = min(k, len(scores))
        top = np.argpartition(-scores, kk - 1)[:kk]
        return top[np.argsort(-scores[top])]

    return search


def exact_floor(vectors: np.ndarray, qvecs: np.ndarray, *, samples: int = 300) -> dict[str, Any]:
    """Single-query exact search latency over all vectors."""
    return summarize(time_each(_exact_one(vectors, K), cycle(list(qvecs), samples)))


def filtered_exact_floor(
    vectors: np.ndarray, qvecs: np.ndarray, masks: dict[str, np.ndarray], *, samples: int = 300
) -> dict[str, Any]:
    """Single-query exact search over each filter's rows, already gathered (the scoring part of a filter)."""
    out = {}
    for name, mask in masks.items():
        sub = np.ascontiguousarray(vectors[mask])
        out[name] = {"rows": int(mask.sum()), **summarize(time_each(_exact_one(sub, K), cycle(list(qvecs), samples)))}
    return out


# ---------------------------------------------------------------------------------------------- hnswlib


def hnsw_floor(
    vectors: np.ndarray,
    qvecs: np.ndarray,
    exact: np.ndarray,
    *,
    m: int = 16,
    ef_construction: int = 200,
    service_ef: int = 128,
    efs: Sequence[int] = (10, 16, 24, 32, 48, 64, 96, 128, 192, 256),
    target: float = 0.98,
    samples: int = 1000,
    threads: int = 2,
) -> dict[str, Any]:
    """Build an hnswlib cosine index, sweep ``ef``; latency and recall@10 per ``ef``, one query at a time."""
    import hnswlib

    t0 = time.perf_counter()
    index = hnswlib.Index(space="cosine", dim=vectors.shape[1])
    index.init_index(max_elements=len(vectors), M=m, ef_construction=ef_construction, random_seed=100)
    index.add_items(vectors, np.arange(len(vectors)), num_threads=threads)
    build_s = time.perf_counter() - t0
    index.set_num_threads(1)
    k = min(K, len(vectors))
    sweep = {}
    for ef in sorted(set(efs) | {service_ef}):
        index.set_ef(max(ef, k))
        labels, _ = index.knn_query(qvecs, k=k, num_threads=1)
        rec = recall_at_k(labels, exact)
        lat = summarize(time_each(lambda q: index.knn_query(q, k=k), cycle(list(qvecs), min(samples, 300))))
        sweep[ef] = {"recall": round(rec, 4), "p50": lat["p50"], "p99": lat["p99"]}
    chosen = next((ef for ef in sorted(sweep) if sweep[ef]["recall"] >= target), max(sweep))

    def measure(ef: int) -> dict[str, Any]:
        index.set_ef(max(ef, k))
        return {
            "ef": ef,
            "recall": sweep[ef]["recall"],
            **summarize(time_each(lambda q: index.knn_query(q, k=k), cycle(list(qvecs), samples))),
        }

    return {
        "m": m,
        "ef_construction": ef_construction,
        "build_s": round(build_s, 2),
        "sweep": sweep,
        "chosen": measure(chosen),
        "service_ef": measure(service_ef),
        "target_recall": target,
    }


# ------------------------------------------------------------------------------------------- embedding


def embedding_floor(
    queries: Sequence[str],
    passages: Sequence[str],
    *,
    threads: int | None = None,
    samples: int = 300,
    batch_texts: int = 1024,
) -> dict[str, Any]:
    """The service's ONNX embedder alone: one query per call, and passages in one big call (texts/s)."""
    from memory_spine.embedders import create_embedder

    t0 = time.perf_counter()
    emb = create_embedder("onnx", threads=threads)
    load_s = time.perf_counter() - t0
    try:
        single = summarize(time_each(lambda q: emb.embed([q]), cycle(list(queries), samples), warmup=10))
        batch = list(passages[:batch_texts])
        emb.embed(batch[:64])
        t0 = time.perf_counter()
        emb.embed(batch)
        rate = len(batch) / (time.perf_counter() - t0)
        tokens = _mean_tokens(queries)
    finally:
        emb.close()
    return {
        "name": emb.name,
        "threads": threads,
        "load_s": round(load_s, 3),
        "single": single,
        "query_tokens_mean": tokens,
        "batch_texts": len(batch),
        "batch_texts_per_s": round(rate, 1),
    }


def _mean_tokens(texts: Sequence[str]) -> float:
    from .corpus import _tokenizer

    enc = _tokenizer().encode_batch(list(texts))
    return round(float(np.mean([len(e.ids) for e in enc])), 1) if enc else 0.0
