"""Prometheus metrics for the service. With several uvicorn workers each process counts its own, so
`perflab serve` sets PROMETHEUS_MULTIPROC_DIR and /metrics aggregates every worker's files."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)


@dataclass
class ServiceMetrics:
    """One registry per app (not the global default), so tests can build many apps in one process."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "perflab_http_requests", "HTTP requests", ["route", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "perflab_http_request_seconds", "HTTP request latency", ["route"], buckets=_BUCKETS_S, registry=r
        )
        self.stage = Histogram(
            "perflab_search_stage_seconds", "search stage latency", ["stage"], buckets=_BUCKETS_S, registry=r
        )
        self.search_cache = Counter("perflab_search_cache", "search cache lookups", ["result"], registry=r)
        self.embedding_cache = Counter(
            "perflab_embedding_cache", "embedding cache lookups", ["result"], registry=r
        )
        self.uploads = Counter("perflab_uploads", "media uploads", ["result"], registry=r)

    def exposition(self) -> bytes:
        folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if folder and os.path.isdir(folder):
            merged = CollectorRegistry()
            MultiProcessCollector(merged, path=folder)
            return generate_latest(merged)
        return generate_latest(self.registry)
