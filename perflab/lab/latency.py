"""Latency measurement: HDR histograms (3 significant figures, mergeable across workers) and two load
models.

- closed model (`run_closed`): N workers each send the next request when the last returns. Simple, but
  a stall silences the workers, so it under-reports tail latency (coordinated omission).
- open model (`run_open`): requests are scheduled at a fixed arrival rate and each latency is measured
  from its *intended* send time, so a stall shows up in every request it delayed.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from hdrh.histogram import HdrHistogram

_LOWEST_US = 1
_HIGHEST_US = 3_600_000_000  # one hour
_SIGFIGS = 3


class LatencyHistogram:
    """Latencies in microseconds inside; milliseconds at the interface. Thread-safe recording."""

    __slots__ = ("_hist", "_lock", "errors")

    def __init__(self) -> None:
        self._hist = HdrHistogram(_LOWEST_US, _HIGHEST_US, _SIGFIGS)
        self._lock = threading.Lock()
        self.errors = 0

    def record_ms(self, ms: float) -> None:
        us = min(max(int(ms * 1000.0 + 0.5), _LOWEST_US), _HIGHEST_US)
        with self._lock:
            self._hist.record_value(us)

    def record_ns(self, ns: int) -> None:
        self.record_ms(ns / 1e6)

    @property
    def count(self) -> int:
        return int(self._hist.get_total_count())

    def percentile_ms(self, p: float) -> float:
        if self.count == 0:
            return float("nan")
        return float(self._hist.get_value_at_percentile(p)) / 1000.0

    def summary(self) -> dict[str, float]:
        if self.count == 0:
            return {"count": 0, "errors": self.errors}
        return {
            "count": self.count,
            "errors": self.errors,
            "mean_ms": round(self._hist.get_mean_value() / 1000.0, 4),
            "p50_ms": self.percentile_ms(50),
            "p90_ms": self.percentile_ms(90),
            "p95_ms": self.percentile_ms(95),
            "p99_ms": self.percentile_ms(99),
            "max_ms": self._hist.get_max_value() / 1000.0,
        }

    def encode(self) -> str:
        """A compact string another process can `merge` (how Locust workers ship histograms)."""
        with self._lock:
            return base64.b64encode(self._hist.encode()).decode()

    def merge(self, other: LatencyHistogram | str) -> None:
        src = (
            other._hist
            if isinstance(other, LatencyHistogram)
            else HdrHistogram.decode(base64.b64decode(other))
        )
        with self._lock:
            self._hist.add(src)
        if isinstance(other, LatencyHistogram):
            self.errors += other.errors

    @classmethod
    def merged(cls, parts: Iterable[LatencyHistogram | str]) -> LatencyHistogram:
        out = cls()
        for part in parts:
            out.merge(part)
        return out


@dataclass
class LoadResult:
    histogram: LatencyHistogram
    seconds: float
    requests: int
    errors: int
    samples_ms: list[float] | None = None  # raw latencies, kept for `perflab compare`

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            **self.histogram.summary(),
            "rps": round(self.throughput, 2),
            "seconds": round(self.seconds, 3),
        }


def _drive(
    fn: Callable[[int], Any],
    total: int,
    threads: int,
    due_ns: Callable[[int], int] | None,
    keep_samples: bool,
) -> LoadResult:
    """Call fn(0..total-1) from `threads` threads. Each latency runs from call i's due time when
    `due_ns` gives one (the open model; the thread sleeps until then), else from when it started."""
    hist = LatencyHistogram()
    counter = iter(range(total))
    lock = threading.Lock()
    errors = 0
    samples: list[float] | None = [] if keep_samples else None

    def worker() -> None:
        nonlocal errors
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            if due_ns is None:
                t0 = time.perf_counter_ns()
            else:
                t0 = due_ns(i)
                delay = t0 - time.perf_counter_ns()
                if delay > 0:
                    time.sleep(delay / 1e9)
            try:
                fn(i)
            except Exception:
                with lock:
                    errors += 1
                continue
            elapsed = time.perf_counter_ns() - t0
            hist.record_ns(elapsed)
            if samples is not None:
                samples.append(elapsed / 1e6)

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for f in [pool.submit(worker) for _ in range(threads)]:
            f.result()
    hist.errors = errors
    return LoadResult(hist, time.perf_counter() - started, total, errors, samples)


def run_closed(
    fn: Callable[[int], Any], *, concurrency: int, requests: int, warmup: int = 0, keep_samples: bool = False
) -> LoadResult:
    """`requests` calls of fn(i) from `concurrency` threads, back to back; latency per call."""
    for i in range(warmup):
        fn(-1 - i)
    return _drive(fn, requests, concurrency, None, keep_samples)


def run_open(
    fn: Callable[[int], Any],
    *,
    rate_per_s: float,
    duration_s: float,
    max_concurrency: int = 64,
    keep_samples: bool = False,
) -> LoadResult:
    """Open model: call i is due at start + i / rate; its latency runs from that due time.

    If the system stalls, calls queue up behind it and their latencies include the wait, as a real
    user's would. `max_concurrency` bounds the threads; when all are busy the schedule still advances.
    """
    total = max(1, int(rate_per_s * duration_s))
    interval_ns = int(1e9 / rate_per_s)
    start_ns = time.perf_counter_ns() + 5_000_000
    return _drive(fn, total, max_concurrency, lambda i: start_ns + i * interval_ns, keep_samples)
