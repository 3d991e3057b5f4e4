"""Prometheus metrics for the service, summed over its uvicorn workers.

Each worker is a process with its own counters. `perflab serve` sets PROMETHEUS_MULTIPROC_DIR, so
prometheus-client keeps every worker's values in files there; /metrics and /health read all of them,
whichever worker answers. What the cache manager and the history writer count in memory is copied
into counters by each worker every `SYNC_INTERVAL_S` (and at once by the worker answering), so the
sums over workers lag by at most that. Pool, breaker and latency percentiles stay per worker.

Readiness: a worker sets its `perflab_worker_ready` gauge once its embedder is loaded and warm;
the service is ready when every worker `perflab serve` started has (serve.json in the folder says
how many).
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from perflab.servers.lifetime import pid_alive

_log = logging.getLogger(__name__)

_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
SYNC_INTERVAL_S = 1.0
_SERVE_INFO = "serve.json"
# What /health sums over workers: metric family -> its key in the /health body.
SUMMED = {
    "perflab_cache_events": "cache",
    "perflab_search_history": "history",
    "perflab_search_cache": "search_cache",
}

Totals = Mapping[str, Mapping[str, int]]  # counter family -> label value -> this process's total


@dataclass(frozen=True)
class Readiness:
    expected: int  # workers `perflab serve` started (1 when not under serve)
    ready: int  # of them, loaded and warm

    @property
    def ok(self) -> bool:
        return self.ready >= self.expected


def multiproc_dir() -> Path | None:
    """The folder this process's metrics live in, or None when they live in memory (no folder, or
    prometheus-client was imported before the folder was set: it chooses once, at import)."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder or not os.path.isdir(folder) or values.ValueClass is values.MutexValue:
        return None
    return Path(folder)


def write_serve_info(folder: Path, workers: int) -> None:
    """Called by `perflab serve` before its workers start: how many must be ready."""
    (folder / _SERVE_INFO).write_text(json.dumps({"workers": workers}))


def readiness_of(folder: Path) -> Readiness:
    """Ready workers, from the files in a multiprocess folder (the workers are on this host: a
    worker that died without saying so is not counted)."""
    try:
        expected = int(json.loads((folder / _SERVE_INFO).read_text())["workers"])
    except (OSError, ValueError, KeyError):
        expected = 1
    ready = set()
    for path in glob(str(folder / "gauge_liveall_*.db")):
        try:  # one file at a time: a worker may be creating its file right now (empty, unreadable)
            metrics = MultiProcessCollector.merge([path], accumulate=False)  # type: ignore[no-untyped-call]
        except (OSError, ValueError, struct.error):
            continue  # not ready yet, as far as anyone can tell
        for metric in metrics:
            if metric.name != "perflab_worker_ready":
                continue
            for s in metric.samples:
                pid = int(s.labels.get("pid", "0"))
                if s.value >= 1 and pid_alive(pid):
                    ready.add(pid)
    return Readiness(expected, len(ready))


def wait_ready(folder: Path, timeout_s: float, *, alive: Callable[[], bool] = lambda: True) -> Readiness:
    """Poll until every worker is ready (or the time is up, or `alive()` turns false)."""
    deadline = time.monotonic() + timeout_s
    state = readiness_of(folder)
    while not state.ok and time.monotonic() < deadline and alive():
        time.sleep(0.05)
        state = readiness_of(folder)
    return state


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
        self.cache_events = Counter(
            "perflab_cache_events", "cache manager counters (CacheStats)", ["event"], registry=r
        )
        self.history = Counter(
            "perflab_search_history", "search history rows written or dropped", ["result"], registry=r
        )
        self.ready = Gauge(
            "perflab_worker_ready",
            "1 once this worker's embedder is loaded and warm",
            registry=r,
            multiprocess_mode="liveall",
        )
        self._synced: dict[tuple[str, str], int] = {}
        self._sync_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._source: Callable[[], Totals] | None = None
        self._ready_here = False

    # -- counters kept elsewhere in memory ------------------------------------------------------
    def sync(self, totals: Totals) -> None:
        """Add what grew since the last sync (a total that went down was reset: start from it)."""
        families = {"perflab_cache_events": self.cache_events, "perflab_search_history": self.history}
        with self._sync_lock:
            for family, values in totals.items():
                counter = families[family]
                for label, total in values.items():
                    delta = total - self._synced.get((family, label), 0)
                    child = counter.labels(label)  # zero until it counts: every key shows
                    if delta > 0:
                        child.inc(delta)
                    self._synced[(family, label)] = total

    def sync_now(self) -> None:
        if self._source is not None:
            self.sync(self._source())

    def start_sync(self, source: Callable[[], Totals], interval_s: float = SYNC_INTERVAL_S) -> None:
        """Copy `source()` into the counters every `interval_s` in a daemon thread (a cheap wake-up:
        a handful of counter increments), so another worker's /health sees this one's counts."""
        self._source = source

        def run() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.sync_now()
                except Exception as exc:  # never let metrics kill the worker
                    _log.warning("metrics sync failed: %s", exc)

        self._thread = threading.Thread(target=run, name="metrics-sync", daemon=True)
        self._thread.start()

    # -- readiness ------------------------------------------------------------------------------
    def mark_ready(self) -> None:
        self._ready_here = True
        self.ready.set(1)

    def mark_gone(self) -> None:
        """This worker is shutting down: final counts, and no longer counted as ready."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.sync_now()
        self._ready_here = False
        self.ready.set(0)
        folder = multiproc_dir()
        if folder is not None:
            mark_process_dead(os.getpid(), str(folder))  # type: ignore[no-untyped-call]

    def readiness(self) -> Readiness:
        folder = multiproc_dir()
        if folder is None:
            return Readiness(1, int(self._ready_here))
        return readiness_of(folder)

    # -- reading --------------------------------------------------------------------------------
    def _collecting(self) -> CollectorRegistry:
        """Every worker's values (under `perflab serve`), else this process's registry."""
        folder = multiproc_dir()
        if folder is None:
            return self.registry
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=str(folder))  # type: ignore[no-untyped-call]
        return merged

    def summed(self) -> dict[str, dict[str, int]]:
        """The counters in SUMMED, over every worker (this one synced first): {key: {label: n}}."""
        self.sync_now()
        out: dict[str, dict[str, int]] = {key: {} for key in SUMMED.values()}
        for family in self._collecting().collect():
            key = SUMMED.get(family.name)
            if key is None:
                continue
            for s in family.samples:
                if s.name.endswith("_total") and s.labels:
                    label = next(iter(s.labels.values()))
                    out[key][label] = out[key].get(label, 0) + int(s.value)
        return out

    def health_summary(self) -> dict[str, Any]:
        """What /health?detailed=true shows summed over workers, and how many are ready."""
        summed = self.summed()
        cache: dict[str, Any] = dict(summed["cache"])
        lookups = cache.get("hits", 0) + cache.get("misses", 0)
        cache["hit_rate"] = cache.get("hits", 0) / lookups if lookups else None
        state = self.readiness()
        return {
            "cache": cache,
            "history": summed["history"],
            "search_cache": summed["search_cache"],
            "workers": {"expected": state.expected, "ready": state.ready},
            "scope": f"summed over all workers (each copies its counts every {SYNC_INTERVAL_S:g} s)",
        }

    def exposition(self) -> bytes:
        self.sync_now()
        return generate_latest(self._collecting())
