"""The overview page: counts and sizes from `stats()`, request latency percentiles estimated from the histogram
buckets (as Prometheus' histogram_quantile does), ingest and search rates from the request counters. It counts
one namespace (default `default`) and lists them all."""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict, deque
from typing import Any

from ...namespaces import DEFAULT
from ...service import MemoryService


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The q-quantile of a histogram given as cumulative (upper bound, count) buckets ending with +Inf,
    interpolated linearly inside its bucket (Prometheus' histogram_quantile). None when it is empty."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower  # the highest finite bound: all one can say
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


_API_ROUTES_HIDDEN = ("/ui", "/health", "/metrics", "/docs", "/openapi.json", "/redoc", "unmatched")


def latency(registry: Any, top: int = 8) -> list[dict[str, Any]]:
    """p50/p95/p99 request latency (ms) of the API's busiest routes, from the request-latency histogram."""
    buckets: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for family in registry.collect():
        if family.name != "memory_spine_request_seconds":
            continue
        for s in family.samples:
            if s.name.endswith("_bucket"):
                buckets[(s.labels["method"], s.labels["route"])].append((float(s.labels["le"]), s.value))
    rows = []
    for (method, route), bs in buckets.items():
        if route.startswith(_API_ROUTES_HIDDEN):
            continue
        bs.sort()
        count = bs[-1][1] if bs else 0
        if count <= 0:
            continue
        ms = {f"p{int(q * 100)}": _ms(quantile(q, bs)) for q in (0.5, 0.95, 0.99)}
        rows.append({"method": method, "route": route, "count": int(count), **ms})
    rows.sort(key=lambda r: -r["count"])
    return rows[:top]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _counter(registry: Any, family_name: str) -> list[tuple[dict[str, str], float]]:
    out = []
    for family in registry.collect():
        if family.name == family_name:
            out += [(s.labels, s.value) for s in family.samples if s.name.endswith("_total")]
    return out


def request_counts(registry: Any) -> dict[str, float]:
    """API requests served so far (the console's own, /health and /metrics aside): ingests (single and batch),
    searches, and errors (5xx)."""
    counts = {"ingest": 0.0, "search": 0.0, "errors": 0.0, "all": 0.0}
    for labels, value in _counter(registry, "memory_spine_requests"):
        route, method = labels.get("route", ""), labels.get("method", "")
        if route.startswith(_API_ROUTES_HIDDEN):
            continue
        counts["all"] += value
        if method == "POST" and route in ("/ingest", "/ingest/batch"):
            counts["ingest"] += value
        elif method == "POST" and route == "/search":
            counts["search"] += value
        if labels.get("status", "").startswith("5"):
            counts["errors"] += value
    return counts


class Rates:
    """Ingest and search requests per second over time, from samples of the request counters.

    A sample is taken when the overview is read (at most one per `every` seconds; the last `keep` are kept),
    the first one being the service's start with nothing counted, so the first interval is the average since
    then. Nothing runs in the background.
    """

    def __init__(self, started_at: float, every: float = 5.0, keep: int = 120) -> None:
        self.every = every
        self._samples: deque[tuple[float, float, float]] = deque([(started_at, 0.0, 0.0)], maxlen=keep)
        self._lock = threading.Lock()

    def sample(self, ingest: float, search: float, now: float | None = None) -> list[dict[str, float]]:
        """Record the counters (if the last sample is old enough) and return the rate of each interval."""
        now = time.time() if now is None else now
        with self._lock:
            if now - self._samples[-1][0] >= self.every or len(self._samples) == 1:
                self._samples.append((now, ingest, search))
            samples = list(self._samples)
        out = []
        for (t0, i0, s0), (t1, i1, s1) in zip(samples, samples[1:], strict=False):
            dt = t1 - t0
            if dt <= 0:
                continue
            out.append({"from": t0, "to": t1, "ingest": max(0.0, i1 - i0) / dt, "search": max(0.0, s1 - s0) / dt})
        return out


def plans(registry: Any) -> dict[str, float]:
    """Search plans chosen so far, by plan."""
    return {labels["plan"]: value for labels, value in _counter(registry, "memory_spine_search_plans")}


def overview(
    svc: MemoryService, registry: Any, rates: Rates, top_tags: int = 12, namespace: str = DEFAULT
) -> dict[str, Any]:
    """One namespace's memories (total and by tag), every namespace's count, sizes, request rates, latency."""
    stats = svc.stats(namespace)
    tags = sorted(stats.get("tags", {}).items(), key=lambda kv: (-kv[1], kv[0]))
    counts = request_counts(registry)
    index = stats.get("index") or {}
    return {
        "namespace": stats.get("namespace"),
        "namespaces": stats.get("namespaces"),
        "total_memories": stats.get("total_memories"),
        "tags": [{"tag": t, "count": n} for t, n in tags[:top_tags]],
        "tag_count": len(tags),
        "sizes": {
            "database_bytes": stats.get("database_bytes"),
            "index_bytes": index.get("bytes"),
            "index_elements": index.get("elements"),
            "index_capacity": index.get("capacity"),
        },
        "embedder": stats.get("embedder"),
        "uptime_seconds": stats.get("uptime_seconds"),
        "requests": counts,
        "rates": rates.sample(counts["ingest"], counts["search"]),
        "latency": latency(registry),
        "plans": plans(registry),
        "query_cache": stats.get("query_cache"),
        "version": stats.get("version"),
    }
