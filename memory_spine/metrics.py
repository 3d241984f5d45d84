"""Prometheus metrics of one service instance (prometheus-client), on their own registry.

Requests and latency by route and status, memories total, index size, embed time, plans chosen. A registry
per instance (not the global one) so several apps in one process, as in tests, do not collide.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    """The service's counters and histograms; `render()` gives the Prometheus text format."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "memory_spine_requests_total", "HTTP requests served", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "memory_spine_request_seconds", "HTTP request latency", ["method", "route"], buckets=_BUCKETS, registry=r
        )
        self.plans = Counter("memory_spine_search_plans_total", "Search plans chosen", ["plan"], registry=r)
        self.embed_seconds = Histogram(
            "memory_spine_embed_seconds", "Time to embed one call's texts", buckets=_BUCKETS, registry=r
        )
        self.memories = Gauge("memory_spine_memories", "Live memories", registry=r)
        self.index_elements = Gauge("memory_spine_index_elements", "Vectors in the HNSW index", registry=r)
        self._service: Any = None

    def bind(self, service: Any) -> None:
        self._service = service
        service.observer = self

    def observe_plan(self, plan: str) -> None:
        self.plans.labels(plan).inc()

    def observe_embed(self, seconds: float) -> None:
        self.embed_seconds.observe(seconds)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def render(self) -> bytes:
        if self._service is not None:
            self.index_elements.set(len(self._service.planner))
            self.memories.set(self._service.storage.count(None, self._service.clock()))
        return generate_latest(self.registry)
