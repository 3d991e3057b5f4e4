"""History page and change points on synthetic runs with a known step."""

from __future__ import annotations

import json
from pathlib import Path

from perflab.lab.history import change_points, collect, write_history


def test_change_point_found_at_a_known_step() -> None:
    series = [10.0, 10.2, 9.9, 10.1, 10.0, 9.8, 10.1, 13.0, 13.1, 12.9, 13.2, 13.0, 12.8, 13.1]
    assert change_points(series) == [7]
    assert change_points([10.0, 10.1, 9.9, 10.0, 10.05, 9.95, 10.0, 10.02]) == []


def test_history_page_across_runs(tmp_path: Path) -> None:
    for i in range(10):
        run = tmp_path / f"2026010{i}T000000Z-smoke"
        run.mkdir()
        value = 20.0 if i < 5 else 30.0
        figures = {"s.p95_ms": value + (i % 2) * 0.1, "s.p95_ms.ci95": [value - 1, value + 1],
                   "s.count": 3, "t.ratio": 2.0}  # fmt: skip
        (run / "figures.json").write_text(json.dumps(figures))
        (run / "slo.json").write_text(json.dumps([{"figure": "t.ratio", "check": "t.ratio > 1"}]))
    series = {s.figure: s for s in collect(tmp_path)}
    assert set(series) == {"s.p95_ms", "t.ratio"}  # measured in trials, or gated; not every count
    assert series["s.p95_ms"].change_points == [5] and series["t.ratio"].change_points == []
    assert series["s.p95_ms"].ci_low[0] == 19.0
    page = write_history(tmp_path).read_text()
    assert "s.p95_ms" in page and "before 20260105T000000Z-smoke" in page and "data:image/png" in page
    assert json.loads((tmp_path / "history.json").read_text())[0]["figure"] == "s.p95_ms"
