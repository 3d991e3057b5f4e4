"""The statistics of a headline figure: trials, their median, a 95 % bootstrap CI, and sample floors.

A figure is measured in several independent trials (>= MIN_TRIALS); its value is the median of the trial
values and its uncertainty a percentile-bootstrap CI of that median. A tail percentile is only as good as
the samples under it, so each trial must hold enough samples (`min_samples`): a p95 needs 1,000, a p99
10,000; below the floor the figure is still recorded but marked insufficient (never gated on).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MIN_TRIALS = 5
P95_MIN_SAMPLES = 1_000
P99_MIN_SAMPLES = 10_000
CONFIDENCE = 0.95


def min_samples(percentile: float) -> int:
    """Samples a trial needs before its `percentile` means anything (about 50-100 samples beyond it)."""
    if percentile >= 99:
        return P99_MIN_SAMPLES
    if percentile > 90:
        return P95_MIN_SAMPLES
    return 100 if percentile > 50 else 1


def bootstrap_ci(
    values: Sequence[float], *, n: int = 4000, confidence: float = CONFIDENCE, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap CI of the median of `values` (deterministic for a given seed)."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if x.size == 0:
        return (math.nan, math.nan)
    if x.size == 1:
        return (float(x[0]), float(x[0]))
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(x, size=(n, x.size), replace=True), axis=1)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(medians, [tail, 100 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class Estimate:
    """One headline figure: the median of its trials with a 95 % CI, and why it may not be trusted."""

    trials: tuple[float, ...]
    samples: tuple[int, ...] = ()  # samples per trial (empty when the trial value is not a percentile)
    min_samples: int = 1
    noisy: bool = False  # a trial ran while outsiders took more than the noise threshold
    ci95: tuple[float, float] = field(default=(math.nan, math.nan))

    @property
    def median(self) -> float:
        finite = [t for t in self.trials if math.isfinite(t)]
        return float(np.median(finite)) if finite else math.nan

    @property
    def insufficient(self) -> bool:
        """Too few trials, or a trial with fewer samples than the percentile's floor."""
        return len(self.trials) < MIN_TRIALS or any(s < self.min_samples for s in self.samples)

    @property
    def status(self) -> str:
        return "insufficient" if self.insufficient else ("noisy" if self.noisy else "ok")

    def as_dict(self) -> dict[str, Any]:
        return {
            "median": _round(self.median),
            "ci95": [_round(self.ci95[0]), _round(self.ci95[1])],
            "trials": [_round(t) for t in self.trials],
            "samples": list(self.samples),
            "status": self.status,
        }


def _round(x: float) -> float | None:
    return None if not math.isfinite(x) else round(x, 4)


def estimate(
    trials: Sequence[float],
    *,
    samples: Sequence[int] = (),
    percentile: float | None = None,
    noisy: bool = False,
) -> Estimate:
    """An Estimate from trial values (and, for a percentile, each trial's sample count)."""
    values = tuple(float(t) for t in trials)
    floor = min_samples(percentile) if percentile is not None else 1
    return Estimate(values, tuple(int(s) for s in samples), floor, noisy, bootstrap_ci(values))


def overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether two confidence intervals overlap (how two runs' figures are read side by side)."""
    return a[0] <= b[1] and b[0] <= a[1]
