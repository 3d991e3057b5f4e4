"""The selftest's arithmetic on synthetic trials with known answers (no services, no clocks)."""

from __future__ import annotations

import numpy as np

from perflab.bench.selftest import cpu_sets, rates


def test_rates_on_synthetic_trials() -> None:
    rng = np.random.default_rng(3)

    def arm(scale: float) -> list[list[float]]:
        return [list(rng.normal(10.0 * scale, 0.2, size=5)) for _ in range(20)]

    r = rates({"A": arm(1.0), "A2": arm(1.0), "B20": arm(1.2), "B1": arm(1.01)})
    assert r.comparisons == 20 and r.false_alarms <= 1
    assert r.detected["20"] == 20 and r.detected["1"] <= 2  # 1 % is inside the 5 % tolerance
    assert abs(r.measured_change["20"] - 0.2) < 0.02
    assert r.smallest_reliable == 20


def test_rates_on_tied_hdr_like_trials() -> None:
    """Trial p50s quantized to 8 us, as HDR histograms record them: ties must not hide a 20 % slowdown."""
    rng = np.random.default_rng(4)

    def arm(scale: float) -> list[list[float]]:
        return [
            list(np.round(11.0 * scale * np.exp(rng.normal(0, 0.01, 5)) / 0.008) * 0.008) for _ in range(20)
        ]

    r = rates({"A": arm(1.0), "A2": arm(1.0), "B20": arm(1.2)})
    assert r.false_alarms <= 1 and r.detected["20"] >= 19 and r.smallest_reliable == 20


def test_placement_pins_services_and_client_apart_or_together() -> None:
    assert cpu_sets("split", {0, 1}) == ({1}, {0})
    assert cpu_sets("shared", {0, 1}) == ({1}, {1})
    assert cpu_sets("split", {3}) == ({3}, {3})  # one CPU: nothing to split
    assert cpu_sets("none", {0, 1}) is None


def test_quiet_rates_leave_out_only_the_comparisons_the_noise_record_marked() -> None:
    rng = np.random.default_rng(5)
    drift = [1.0 + 0.4 * rng.random(5) if i < 3 else np.ones(5) for i in range(10)]  # 3 drifting comparisons

    def arm(scale: float) -> list[list[float]]:
        return [list(10.0 * scale * d * np.exp(rng.normal(0, 0.005, 5))) for d in drift]

    trials = {"A": arm(1.0), "A2": arm(1.0), "B20": arm(1.2)}
    r = rates(trials, outsiders=[0.3, 0.25, 0.4] + [0.01] * 7)
    assert r.quiet == {"comparisons": 7, "false_alarms": 0, "detected": {"20": 7}}
    assert r.detected["20"] < 10  # the drifting ones hide the slowdown from an unpaired test
    assert rates(trials, outsiders=[0.0] * 10).quiet["comparisons"] == 10
    assert rates(trials).quiet == {}
