"""A run's figures: notebooks `record()` named values; the report gathers them into figures.json.

Each notebook writes its own JSON file under the run folder, so notebooks never race on one file.
Scalars are gated by slo.toml; lists (raw samples) are what `perflab compare` tests for regressions.
"""

from __future__ import annotations

import json
import math
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from perflab.config import project_root

FIGURES_ENV = "PERFLAB_FIGURES_FILE"
_standalone: Path | None = None


def _clean(value: Any) -> Any:
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def record(name: str, value: Any, path: str | Path | None = None) -> Any:
    """Store figure `name` (dotted, e.g. "search.p95_ms") for this run; returns value for display."""
    target = Path(path) if path else (Path(os.environ[FIGURES_ENV]) if os.environ.get(FIGURES_ENV) else None)
    if target is None:  # run on its own (JupyterLab, nbconvert --execute), outside a report
        target = standalone_run_dir() / "figures" / f"{_notebook_name()}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(target.read_text()) if target.exists() else {}
    data[name] = _clean(value)
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


def run_folder(run_dir: str | Path = "") -> Path:
    """A notebook's run folder: the report's (`run_dir` parameter), or, run on its own, a scratch run
    folder under reports/ (see `standalone_run_dir`)."""
    return Path(run_dir) if run_dir else standalone_run_dir()


def standalone_run_dir() -> Path:
    """The scratch run folder `reports/scratch-<UTC time>-<pid>/` of a notebook run outside `perflab
    report`, made on first use in this process, which says where it is once."""
    global _standalone
    if _standalone is None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        _standalone = project_root() / "reports" / f"scratch-{stamp}-{os.getpid()}"
        (_standalone / "figures").mkdir(parents=True, exist_ok=True)
        print(f"perflab: not run by `perflab report`: figures and files go to {_standalone}/", flush=True)
    return _standalone


def _notebook_name() -> str:
    """The notebook this kernel runs, when Jupyter says (JPY_SESSION_NAME), else "standalone"."""
    session = os.environ.get("JPY_SESSION_NAME", "")
    return Path(session).stem if session.endswith(".ipynb") else "standalone"


def gather(folder: Path) -> dict[str, Any]:
    """Merge every notebook's figures file under `folder` into one dict."""
    merged: dict[str, Any] = {}
    for file in sorted(folder.glob("*.json")):
        merged.update(json.loads(file.read_text()))
    return merged
