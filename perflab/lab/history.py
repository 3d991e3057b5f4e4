"""`perflab history`: every headline figure across every run in reports/, with its CI and change points.

Headline figures are the ones the SLOs gate and the ones measured in trials (they carry `.ci95`). Change
points come from MongoDB's `signal-processing-algorithms` (E-divisive means with a permutation test, the
method CI performance-regression detection uses), never from a home-made detector. The page is
reports/history.html (linked from reports/index.html); the change points also go to history.json.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from perflab.config import Settings, project_root

PVALUE = 0.05
PERMUTATIONS = 200


@dataclass
class Series:
    figure: str
    runs: list[str] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    ci_low: list[float | None] = field(default_factory=list)
    ci_high: list[float | None] = field(default_factory=list)
    change_points: list[int] = field(default_factory=list)  # index of the first run after each change


def change_points(
    values: list[float], *, pvalue: float = PVALUE, permutations: int = PERMUTATIONS
) -> list[int]:
    """E-divisive change points of a series (indices where a new regime starts), deterministic."""
    if len(values) < 4:
        return []
    import numpy as np
    from signal_processing_algorithms.energy_statistics.energy_statistics import e_divisive

    state = np.random.get_state()
    np.random.seed(0)  # the permutation test draws from numpy's global generator
    try:
        return sorted(int(i) for i in e_divisive(values, pvalue=pvalue, permutations=permutations))
    finally:
        np.random.set_state(state)


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def headline_names(figures: dict[str, Any], verdicts: list[dict[str, Any]]) -> set[str]:
    names = {k.removesuffix(".ci95") for k in figures if k.endswith(".ci95")}
    names |= {v["figure"] for v in verdicts if isinstance(v, dict) and "figure" in v}
    return {
        n for n in names if isinstance(figures.get(n), int | float) and not isinstance(figures.get(n), bool)
    }


def collect(reports_dir: Path) -> list[Series]:
    """One Series per headline figure over the runs (oldest first: run ids start with the UTC time)."""
    by_name: dict[str, Series] = {}
    for folder in sorted(p.parent for p in reports_dir.glob("*/figures.json")):
        figures = _load(folder / "figures.json")
        if not isinstance(figures, dict):
            continue
        verdicts = _load(folder / "slo.json") or []
        for name in sorted(headline_names(figures, verdicts)):
            s = by_name.setdefault(name, Series(name))
            value = float(figures[name])
            if not math.isfinite(value):
                continue
            ci = figures.get(name + ".ci95")
            s.runs.append(folder.name)
            s.values.append(value)
            s.ci_low.append(ci[0] if isinstance(ci, list) and len(ci) == 2 else None)
            s.ci_high.append(ci[1] if isinstance(ci, list) and len(ci) == 2 else None)
    for s in by_name.values():
        if len(set(s.values)) > 1:
            s.change_points = change_points(s.values)
    return [by_name[k] for k in sorted(by_name)]


def _plot(s: Series) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 2.4))
    x = list(range(len(s.values)))
    low = [v - lo if lo is not None else 0.0 for v, lo in zip(s.values, s.ci_low, strict=True)]
    high = [hi - v if hi is not None else 0.0 for v, hi in zip(s.values, s.ci_high, strict=True)]
    ax.errorbar(x, s.values, yerr=[low, high], marker="o", ms=3, capsize=3, lw=1)
    for cp in s.change_points:
        ax.axvline(cp - 0.5, color="red", ls="--", lw=1)
    ax.set_title(s.figure, fontsize=9)
    ax.set_xticks(x, [r[:15] for r in s.runs], rotation=30, ha="right", fontsize=6)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def write_history(reports_dir: Path) -> Path:
    """reports/history.html and reports/history.json from every run folder under reports_dir."""
    series = collect(reports_dir)
    esc = html.escape
    parts = [
        "<!doctype html><meta charset=utf-8><title>perflab history</title>",
        "<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:70em}td,th{padding:.2em .5em}</style>",
        "<h1>perflab history</h1><p><a href='index.html'>all runs</a>. Each headline figure across every "
        "run (median of trials with its 95% CI where measured in trials); dashed red lines are change "
        f"points found by E-divisive means (signal-processing-algorithms, p &lt; {PVALUE}).</p>",
    ]
    if not series:
        parts.append("<p>No runs with figures yet: <code>make report</code>.</p>")
    for s in series:
        cps = ", ".join(f"before {esc(s.runs[i])}" for i in s.change_points) or "none"
        parts.append(f"<h3>{esc(s.figure)}</h3><p>{len(s.values)} run(s); change points: {cps}</p>")
        if len(s.values) >= 1:
            parts.append(f"<img alt='{esc(s.figure)}' src='data:image/png;base64,{_plot(s)}'>")
    page = reports_dir / "history.html"
    page.write_text("\n".join(parts))
    (reports_dir / "history.json").write_text(json.dumps([asdict(s) for s in series], indent=1))
    return page


def history(settings: Settings, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="perflab history", description="plot every headline figure across runs, with change points"
    )
    parser.add_argument("--reports", type=Path, help="reports folder (default reports/)")
    args = parser.parse_args(argv)
    reports_dir = args.reports or project_root() / "reports"
    page = write_history(reports_dir)
    for s in collect(reports_dir):
        if s.change_points:
            print(f"{s.figure}: change point(s) before {', '.join(s.runs[i] for i in s.change_points)}")
    print(f"history: {page}")
    return 0
