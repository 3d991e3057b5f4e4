from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from perflab.lab.compare import (
    IncomparableRuns,
    compare_figures,
    compare_runs,
    drift_notes,
    lower_is_better,
    speed_scale,
)
from perflab.lab.latency import LatencyHistogram, run_closed, run_open


def test_histogram_percentiles_are_exact_to_3_significant_figures() -> None:
    h = LatencyHistogram()
    for ms in range(1, 1001):  # 1..1000 ms uniformly
        h.record_ms(ms)
    assert h.count == 1000
    assert abs(h.percentile_ms(50) - 500) / 500 < 1e-3
    assert abs(h.percentile_ms(95) - 950) / 950 < 1e-3
    assert abs(h.percentile_ms(99) - 990) / 990 < 1e-3


def test_histograms_merge_across_processes() -> None:
    a, b = LatencyHistogram(), LatencyHistogram()
    for ms in range(1, 501):
        a.record_ms(ms)
    for ms in range(501, 1001):
        b.record_ms(ms)
    merged = LatencyHistogram.merged([a.encode(), b.encode()])  # as shipped from two workers
    assert merged.count == 1000
    assert abs(merged.percentile_ms(95) - 950) / 950 < 1e-3


def test_open_model_counts_queueing_that_closed_model_hides() -> None:
    """One 200 ms stall among fast calls: the open model charges it to every call that waited."""

    def call(i: int) -> None:
        time.sleep(0.2 if i == 5 else 0.001)

    closed = run_closed(call, concurrency=1, requests=40)
    open_ = run_open(call, rate_per_s=100, duration_s=0.4, max_concurrency=1)
    assert closed.histogram.percentile_ms(90) < 50
    assert open_.histogram.percentile_ms(90) > 50  # calls scheduled during the stall waited for it


def test_run_closed_counts_errors() -> None:
    def call(i: int) -> None:
        if i % 2:
            raise RuntimeError("boom")

    result = run_closed(call, concurrency=4, requests=100)
    assert result.errors == 50 and result.histogram.count == 50


def test_direction_of_figures() -> None:
    assert lower_is_better("search.warm_p95_ms") and lower_is_better("images.encode_s")
    assert not lower_is_better("cache.hit_rate") and not lower_is_better("search.rps_c8")


def test_compare_flags_regression_only_beyond_noise() -> None:
    rng = np.random.default_rng(1)
    base = list(rng.lognormal(mean=np.log(10), sigma=0.2, size=300))
    same = list(rng.lognormal(mean=np.log(10), sigma=0.2, size=300))
    slower = list(rng.lognormal(mean=np.log(13), sigma=0.2, size=300))
    verdicts = {c.figure: c.verdict for c in compare_figures(
        {"x.lat_ms": base, "y.lat_ms": base, "z.rps": 100.0},
        {"x.lat_ms": same, "y.lat_ms": slower, "z.rps": 50.0},
    )}  # fmt: skip
    assert verdicts == {"x.lat_ms": "no change", "y.lat_ms": "regression", "z.rps": "unsampled"}
    faster = compare_figures({"q.rps_samples": slower}, {"q.rps_samples": base})
    assert faster[0].verdict == "regression"  # higher is better for throughput


def _run(folder: Path, cpus: int, samples: list[float]) -> Path:
    folder.mkdir(parents=True)
    (folder / "figures.json").write_text(json.dumps({"s.lat_ms": samples}))
    manifest = {
        "provenance": {"python": "3.11.7", "machine": {"cpus": cpus, "cpu_model": "x"}, "servers": {}}
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_compare_refuses_different_environments(tmp_path: Path) -> None:
    a = _run(tmp_path / "a", 2, [1.0] * 10)
    b = _run(tmp_path / "b", 8, [1.0] * 10)
    with pytest.raises(IncomparableRuns, match=r"machine\.cpus"):
        compare_runs(a, b)
    assert compare_runs(a, b, force=True)[0].verdict == "no change"
    shutil.rmtree(b)
    b = _run(tmp_path / "b", 2, [1.0] * 10)
    assert compare_runs(a, b)[0].figure == "s.lat_ms"


def test_compare_normalizes_timings_by_the_machine_speed_index() -> None:
    rng = np.random.default_rng(2)
    a = list(rng.normal(10.0, 0.1, size=5))
    b = [x * 1.25 for x in rng.normal(10.0, 0.1, size=5)]  # 25 % slower: on a 25 % slower machine
    raw = compare_figures({"s.p95_ms.trials": a}, {"s.p95_ms.trials": b})
    assert raw[0].verdict == "regression"
    same_speed = compare_figures({"s.p95_ms.trials": a}, {"s.p95_ms.trials": b}, index_a=1.0, index_b=0.8)
    assert same_speed[0].verdict == "no change" and abs(same_speed[0].change) < 0.03
    # counts are not timings: never scaled; the CI and sample-count companions are not figures
    assert speed_scale("s.errors", 1.0, 0.5) == 1.0 and speed_scale("s.rps", 1.0, 0.5) == 2.0
    # a ratio of two timings on one machine (a speedup, an overhead, p95_vs_raw) is not scaled either
    assert speed_scale("e.speedup.trials", 1.0, 0.5) == speed_scale("v.p95_vs_raw", 1.0, 0.5) == 1.0
    assert speed_scale("images.throughput_ratio_vs_pyvips.trials", 1.0, 0.5) == 1.0
    # a rate per second goes up when things improve: fewer images per second is a regression
    slower = compare_figures({"i.images_per_s.trials": [5.3, 5.2, 5.4, 5.3, 5.35]},
                             {"i.images_per_s.trials": [4.4, 4.5, 4.45, 4.4, 4.42]})  # fmt: skip
    assert slower[0].verdict == "regression"
    assert compare_figures({"s.p95_ms.samples": [1000] * 5}, {"s.p95_ms.samples": [1] * 5}) == []


def test_drift_within_a_run_is_named() -> None:
    drifted = {"calibration": {"index": 1.0, "drift": -0.2, "drifted": True, "drift_limit": 0.1}}
    steady = {"calibration": {"index": 1.0, "drift": 0.01, "drifted": False, "drift_limit": 0.1}}
    notes = drift_notes(steady, drifted)
    assert any("run B" in n and "-20.0%" in n for n in notes) and not any("run A" in n for n in notes)
    assert any("no calibration" in n for n in drift_notes({}, steady))
