"""Cache counters and per-operation latency histograms (the lab's HDR `LatencyHistogram`).

Recording sits on every cache call, so it is one short lock for the counters and one histogram
record (about a microsecond in all); percentiles are computed only when someone asks for a snapshot.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from perflab.lab.latency import LatencyHistogram

COUNTERS = (
    "hits",  # keys found (a batched get counts each key)
    "misses",  # keys not found, expired, stale or corrupt
    "errors",  # calls that failed or were short-circuited: each returned a miss / did nothing
    "short_circuits",  # calls the open circuit breaker answered without touching Redis
    "corrupt",  # values that were present but not decodable (counted as misses)
    "sets",  # keys written
    "deletes",  # keys deleted
    "factory_calls",  # get_or_set computed a value
    "coalesced",  # get_or_set callers that waited for another thread of this process
    "lock_waits",  # get_or_set callers that waited for another process's lock holder
    "lock_timeouts",  # ... and gave up after wait_timeout and computed the value themselves
    "early_refreshes",  # XFetch recomputed a value before it expired
)


@dataclass(frozen=True)
class LatencySummary:
    """Percentiles of one operation's latency, in microseconds."""

    count: int
    p50_us: float
    p95_us: float
    p99_us: float
    max_us: float


@dataclass(frozen=True)
class CacheStats:
    """A snapshot of one CacheManager's counters, its breaker state and latency percentiles."""

    hits: int = 0
    misses: int = 0
    errors: int = 0
    short_circuits: int = 0
    corrupt: int = 0
    sets: int = 0
    deletes: int = 0
    factory_calls: int = 0
    coalesced: int = 0
    lock_waits: int = 0
    lock_timeouts: int = 0
    early_refreshes: int = 0
    breaker: str = "closed"
    latency: dict[str, LatencySummary] = field(default_factory=dict)

    @property
    def hit_rate(self) -> float | None:
        """hits / (hits + misses), or None before the first lookup."""
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["hit_rate"] = self.hit_rate
        return out


class StatsRecorder:
    """The mutable side: counters and histograms, safe to share between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._hists: dict[str, LatencyHistogram] = {}

    def observe(self, op: str, elapsed_ns: int, hits: int = 0, misses: int = 0) -> None:
        """One call of `op` that took `elapsed_ns` and found/missed that many keys."""
        with self._lock:
            if hits:
                self._counts["hits"] += hits
            if misses:
                self._counts["misses"] += misses
            hist = self._hists.get(op)
            if hist is None:
                hist = self._hists[op] = LatencyHistogram()
        hist.record_ns(elapsed_ns)

    def add(self, **counts: int) -> None:
        """Add to named counters (see COUNTERS)."""
        with self._lock:
            for name, n in counts.items():
                self._counts[name] += n

    def corrupt(self, n: int = 1) -> None:
        """`n` keys counted as hits turned out undecodable: move them to misses."""
        with self._lock:
            self._counts["hits"] -= n
            self._counts["misses"] += n
            self._counts["corrupt"] += n

    def snapshot(self, breaker: str) -> CacheStats:
        with self._lock:
            counts = dict(self._counts)
            hists = sorted(self._hists.items())
        latency = {
            op: LatencySummary(
                count=h.count,
                p50_us=h.percentile_ms(50) * 1000,
                p95_us=h.percentile_ms(95) * 1000,
                p99_us=h.percentile_ms(99) * 1000,
                max_us=h.percentile_ms(100) * 1000,
            )
            for op, h in hists
            if h.count
        }
        return CacheStats(**counts, breaker=breaker, latency=latency)

    def reset(self) -> None:
        with self._lock:
            self._counts = dict.fromkeys(COUNTERS, 0)
            self._hists.clear()
