"""A run's figures: notebooks `record()` named values; the report gathers them into figures.json.

Each notebook writes its own JSON file under the run folder, so notebooks never race on one file.
Scalars are gated by slo.toml; lists (raw samples) are what `perflab compare` tests for regressions.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

FIGURES_ENV = "PERFLAB_FIGURES_FILE"


def json_ready(value: Any) -> Any:
    """Plain JSON values: numpy arrays to lists, NaN and infinities to None."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value


def record(name: str, value: Any, path: str | Path | None = None) -> Any:
    """Store figure `name` (dotted, e.g. "search.p95_ms") for this run; returns value for display."""
    target = Path(path) if path else (Path(os.environ[FIGURES_ENV]) if os.environ.get(FIGURES_ENV) else None)
    if target is None:
        return value  # run interactively, outside a report: nothing to gather into
    target.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(target.read_text()) if target.exists() else {}
    data[name] = json_ready(value)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    tmp.replace(target)
    return value


def record_estimate(name: str, est: Any, path: str | Path | None = None) -> float:
    """Store a figure measured in trials (a perflab.lab.stats.Estimate): `name` is the median (what
    slo.toml gates), beside it `name.trials` (what `perflab compare` tests), `name.ci95`, `name.samples`
    and `name.status` ("ok" | "noisy" | "insufficient")."""
    d = est.as_dict()
    for suffix in ("trials", "ci95", "samples", "status"):
        record(f"{name}.{suffix}", d[suffix], path)
    record(name, d["median"], path)
    return float(est.median)


def gather(folder: Path) -> dict[str, Any]:
    """Merge every notebook's figures file under `folder` into one dict."""
    merged: dict[str, Any] = {}
    for file in sorted(folder.glob("*.json")):
        merged.update(json.loads(file.read_text()))
    return merged
