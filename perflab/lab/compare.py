"""`perflab compare RUN_A RUN_B`: which figures moved beyond noise between two report runs.

A figure recorded as a list of samples (e.g. per-request latencies) is tested with a two-sided
Mann-Whitney U test (`mann_whitney_p`: exact for small samples, ties included) and a bootstrap
confidence interval of the change in median; it is a regression when the test is significant *and* the
whole interval lies beyond the tolerance in the bad direction. Scalars
carry no noise estimate, so they are shown but never flagged. A figure measured in trials is compared
on its `<figure>.trials` (the per-trial values), the unit of independent repetition.

Timing figures are normalized by the two runs' machine speed index (the calibration probe,
perflab.lab.calibrate): B's latencies are scaled by index_B / index_A, its rates by the inverse. A run
whose own probe drifted between start and end is named, since no normalization repairs that. Runs from
different environments are refused (or, forced, loudly marked): a 2-core laptop against CI says nothing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from perflab.errors import PerflabError
from perflab.lab.provenance import ENVIRONMENT_KEYS, flatten
from perflab.lab.slo import noise_sensitive, timing_ratio

_LOWER_UNITS = ("_ms", "_s", "_bytes", "_mb")
_LOWER_WORDS = ("latency", "errors", "failures", "lost", "fail_rate")


class IncomparableRuns(PerflabError):
    """The two runs ran on different environments."""


@dataclass(frozen=True)
class Change:
    figure: str
    a: float
    b: float
    change: float  # relative change of the median (b / a - 1)
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    verdict: str  # "regression" | "improvement" | "no change" | "unsampled"


def lower_is_better(name: str) -> bool:
    """Latencies, sizes and failures go down when things improve; rates, ratios and recall go up."""
    base = name.removesuffix(".trials").removesuffix("_samples")
    if base.endswith("_per_s"):  # a rate (images_per_s), not a duration in seconds
        return False
    return base.endswith(_LOWER_UNITS) or any(word in base for word in _LOWER_WORDS)


def environment_diff(manifest_a: dict[str, Any], manifest_b: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    fa = flatten(manifest_a.get("provenance", {}))
    fb = flatten(manifest_b.get("provenance", {}))
    return {k: (fa.get(k), fb.get(k)) for k in ENVIRONMENT_KEYS if fa.get(k) != fb.get(k)}


def bootstrap_median_change(
    a: np.ndarray, b: np.ndarray, *, n: int = 2000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of median(b) / median(a) - 1."""
    rng = np.random.default_rng(seed)
    ma = np.median(rng.choice(a, size=(n, a.size), replace=True), axis=1)
    mb = np.median(rng.choice(b, size=(n, b.size), replace=True), axis=1)
    ratios = mb / np.where(ma == 0, np.nan, ma) - 1.0
    low, high = np.nanpercentile(ratios, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


EXACT_SPLITS = 20_000  # up to 8 v 8 values every split of the pooled sample is enumerated (5 v 5: 252)


def mann_whitney_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Mann-Whitney U p-value; exact over every split of the pooled values for small samples,
    ties given midranks (the permutation distribution of U), the normal approximation beyond.

    Trial values are percentiles of HDR histograms (3 significant figures), so two of ten often tie.
    scipy's default switches to the normal approximation at the first tie, and under it even a complete
    separation of 5 v 5 has p = 0.012: at alpha = 0.01 such a comparison could never be flagged. Exact,
    the complete separation has p = 2 / 252 = 0.0079 with or without ties."""
    from scipy.stats import PermutationMethod, mannwhitneyu

    small = math.comb(a.size + b.size, a.size) <= EXACT_SPLITS
    method: PermutationMethod | str = PermutationMethod(n_resamples=math.inf) if small else "asymptotic"
    return float(mannwhitneyu(a, b, alternative="two-sided", method=method).pvalue)


def compare_samples(
    name: str, a: list[float], b: list[float], *, tolerance: float = 0.05, alpha: float = 0.01
) -> Change:
    """The verdict on one figure from samples a to b. With 5 v 5 trial values the smallest two-sided p
    is 2 / 252 = 0.0079, so at alpha 0.01 only a complete separation (every B trial worse than every A
    trial) is significant; the bootstrap CI must then also lie wholly beyond the tolerance."""
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ma, mb = float(np.median(xa)), float(np.median(xb))
    change = mb / ma - 1.0 if ma else float("inf")
    p = mann_whitney_p(xa, xb)
    low, high = bootstrap_median_change(xa, xb)
    worse = (low > tolerance) if lower_is_better(name) else (high < -tolerance)
    better = (high < -tolerance) if lower_is_better(name) else (low > tolerance)
    verdict = "no change"
    if p < alpha and worse:
        verdict = "regression"
    elif p < alpha and better:
        verdict = "improvement"
    return Change(name, ma, mb, change, low, high, p, verdict)


_NOT_FIGURES = (".ci95", ".samples", ".status")


def speed_scale(name: str, index_a: float | None, index_b: float | None) -> float:
    """The factor that puts run B's value of `name` on run A's machine speed (1 when unknown)."""
    figure = name.removesuffix(".trials")
    if not index_a or not index_b or not noise_sensitive(figure) or timing_ratio(figure):
        return 1.0
    return index_b / index_a if lower_is_better(name) else index_a / index_b


def compare_figures(
    fig_a: dict[str, Any],
    fig_b: dict[str, Any],
    *,
    tolerance: float = 0.05,
    index_a: float | None = None,
    index_b: float | None = None,
) -> list[Change]:
    out = []
    for name in sorted(set(fig_a) & set(fig_b)):
        if name.endswith(_NOT_FIGURES):
            continue
        a, b = fig_a[name], fig_b[name]
        k = speed_scale(name, index_a, index_b)
        if isinstance(a, list) and isinstance(b, list) and len(a) >= 5 and len(b) >= 5:
            if all(isinstance(x, int | float) for x in a + b):
                out.append(compare_samples(name, a, [x * k for x in b], tolerance=tolerance))
        elif isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
            change = b * k / a - 1.0 if a else float("nan")
            out.append(Change(name, float(a), float(b) * k, change, None, None, None, "unsampled"))
    return out


def load_run(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        figures = json.loads((folder / "figures.json").read_text())
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise PerflabError(
            f"{folder} is not a report run (figures.json / manifest.json unreadable: {exc})"
        ) from exc
    return figures, manifest


def compare_runs(a: Path, b: Path, *, force: bool = False, tolerance: float = 0.05) -> list[Change]:
    fig_a, man_a = load_run(a)
    fig_b, man_b = load_run(b)
    diff = environment_diff(man_a, man_b)
    if diff and not force:
        detail = "; ".join(f"{k}: {va!r} vs {vb!r}" for k, (va, vb) in diff.items())
        raise IncomparableRuns(
            f"runs ran on different environments ({detail}); pass --force to compare anyway"
        )
    return compare_figures(
        fig_a, fig_b, tolerance=tolerance, index_a=speed_index(man_a), index_b=speed_index(man_b)
    )


def speed_index(manifest: dict[str, Any]) -> float | None:
    index = (manifest.get("calibration") or {}).get("index")
    return float(index) if isinstance(index, int | float) and index > 0 else None


def drift_notes(manifest_a: dict[str, Any], manifest_b: dict[str, Any]) -> list[str]:
    """What to say about the machine's speed: each run's index, and any run that drifted within."""
    notes = []
    for label, man in (("A", manifest_a), ("B", manifest_b)):
        cal = man.get("calibration") or {}
        if not cal:
            notes.append(f"run {label}: no calibration probe (older run): timings not normalized")
        elif cal.get("drifted"):
            notes.append(
                f"run {label}: the machine's speed drifted {cal['drift']:+.1%} between the start and end "
                f"probes (limit {cal['drift_limit']:.0%}): its timings are suspect"
            )
    ia, ib = speed_index(manifest_a), speed_index(manifest_b)
    if ia and ib:
        notes.append(f"speed index A {ia:.4g}, B {ib:.4g}: B's timings scaled by {ib / ia:.3f}")
    return notes
