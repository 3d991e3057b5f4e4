"""Cache counters and per-operation latency histograms (HdrHistogram, microseconds).

Recording sits on every cache call, so it must cost far less than the Redis round trip it measures
(~25 us on loopback). A pure-Python `HdrHistogram.record_value` costs about 1 us, so a call only bumps
a counter for its latency, quantized to 11 significant bits (what a 3-digit HDR histogram keeps
anyway), under the same short lock as the hit/miss counters; the counts are folded into the HDR
histogram with `record_value(value, count)` when someone asks for a snapshot. The pending table is
bounded by the quantization (at most 2048 values per power of two).
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

_LOWEST_US = 1
_HIGHEST_US = 3_600_000_000  # one hour
_SIGFIGS = 3
_KEEP_BITS = 11

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
        self._pending: dict[str, dict[int, int]] = {}  # op -> {quantized us: count} not yet in _hists
        self._hists: dict[str, HdrHistogram] = {}
        self._folding = threading.Lock()  # folding can take a millisecond: recording never waits for it

    def observe(self, op: str, elapsed_ns: int, hits: int = 0, misses: int = 0) -> None:
        """One call of `op` that took `elapsed_ns` and found/missed that many keys."""
        us = elapsed_ns // 1000 or 1
        if us >= 2048:
            shift = us.bit_length() - _KEEP_BITS
            us = (us >> shift) << shift
        with self._lock:
            if hits:
                self._counts["hits"] += hits
            if misses:
                self._counts["misses"] += misses
            pending = self._pending.get(op)
            if pending is None:
                pending = self._pending[op] = {}
            pending[us] = pending.get(us, 0) + 1

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

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def snapshot(self, breaker: str) -> CacheStats:
        with self._lock:
            counts = dict(self._counts)
            pending, self._pending = self._pending, {}
        with self._folding:
            for op, values in pending.items():
                hist = self._hists.get(op)
                if hist is None:
                    hist = self._hists[op] = HdrHistogram(_LOWEST_US, _HIGHEST_US, _SIGFIGS)
                for us, n in values.items():
                    hist.record_value(min(us, _HIGHEST_US), n)
            latency = {
                op: LatencySummary(
                    count=h.get_total_count(),
                    p50_us=float(h.get_value_at_percentile(50)),
                    p95_us=float(h.get_value_at_percentile(95)),
                    p99_us=float(h.get_value_at_percentile(99)),
                    max_us=float(h.get_max_value()),
                )
                for op, h in sorted(self._hists.items())
            }
        return CacheStats(**counts, breaker=breaker, latency=latency)

    def reset(self) -> None:
        with self._lock, self._folding:
            self._counts = dict.fromkeys(COUNTERS, 0)
            self._pending = {}
            self._hists = {}
