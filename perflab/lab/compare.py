"""`perflab compare RUN_A RUN_B`: which figures moved beyond noise between two report runs.

A figure recorded as a list of samples (e.g. per-request latencies) is tested with a two-sided
Mann-Whitney U test and a bootstrap confidence interval of the change in median; it is a regression when
the test is significant *and* the whole interval lies beyond the tolerance in the bad direction. Scalars
carry no noise estimate, so they are shown but never flagged. Runs from different environments are
refused (or, forced, loudly marked): a 2-core laptop against CI says nothing about the code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from perflab.errors import PerflabError
from perflab.lab.provenance import ENVIRONMENT_KEYS, flatten

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
    base = name.removesuffix("_samples")
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


def compare_samples(
    name: str, a: list[float], b: list[float], *, tolerance: float = 0.05, alpha: float = 0.01
) -> Change:
    from scipy.stats import mannwhitneyu

    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ma, mb = float(np.median(xa)), float(np.median(xb))
    change = mb / ma - 1.0 if ma else float("inf")
    p = float(mannwhitneyu(xa, xb, alternative="two-sided").pvalue)
    low, high = bootstrap_median_change(xa, xb)
    worse = (low > tolerance) if lower_is_better(name) else (high < -tolerance)
    better = (high < -tolerance) if lower_is_better(name) else (low > tolerance)
    verdict = "no change"
    if p < alpha and worse:
        verdict = "regression"
    elif p < alpha and better:
        verdict = "improvement"
    return Change(name, ma, mb, change, low, high, p, verdict)


def compare_figures(fig_a: dict[str, Any], fig_b: dict[str, Any], *, tolerance: float = 0.05) -> list[Change]:
    out = []
    for name in sorted(set(fig_a) & set(fig_b)):
        a, b = fig_a[name], fig_b[name]
        if isinstance(a, list) and isinstance(b, list) and len(a) >= 5 and len(b) >= 5:
            if all(isinstance(x, int | float) for x in a + b):
                out.append(compare_samples(name, a, b, tolerance=tolerance))
        elif isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
            change = b / a - 1.0 if a else float("nan")
            out.append(Change(name, float(a), float(b), change, None, None, None, "unsampled"))
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
    return compare_figures(fig_a, fig_b, tolerance=tolerance)
