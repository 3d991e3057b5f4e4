"""The measurement contract's statistics, CPU and noise arithmetic on synthetic inputs with known answers."""

from __future__ import annotations

import dataclasses
import math

import pytest

from perflab.bench.contract import Result, _parser, interleave, percentile_estimate, repeat
from perflab.lab import cpu, noise
from perflab.lab.latency import LatencyHistogram
from perflab.lab.phase import PhaseRecord, merge_cpu
from perflab.lab.stats import bootstrap_ci, estimate, min_samples, overlap


def test_median_and_ci_of_trials() -> None:
    e = estimate([10.0, 11.0, 12.0, 13.0, 14.0])
    assert e.median == 12.0
    lo, hi = e.ci95
    assert 10.0 <= lo <= 12.0 <= hi <= 14.0
    assert e.status == "ok"
    # identical trials: a zero-width interval at the value
    assert bootstrap_ci([5.0] * 7) == (5.0, 5.0)
    assert math.isnan(bootstrap_ci([])[0])


def test_ci_covers_the_true_median_about_95_percent_of_the_time() -> None:
    import numpy as np

    rng = np.random.default_rng(1)
    covered = 0
    for seed in range(200):
        x = rng.normal(100.0, 10.0, size=25)
        lo, hi = bootstrap_ci(list(x), n=1000, seed=seed)
        covered += lo <= 100.0 <= hi
    assert 0.88 <= covered / 200 <= 0.99


def test_sample_floors() -> None:
    assert min_samples(95) == 1000 and min_samples(99) == 10_000 and min_samples(50) == 1
    assert estimate([1.0] * 5, samples=[1000] * 5, percentile=95).status == "ok"
    assert estimate([1.0] * 5, samples=[999, 1000, 1000, 1000, 1000], percentile=95).status == "insufficient"
    assert estimate([1.0] * 5, samples=[5000] * 5, percentile=99).status == "insufficient"
    assert estimate([1.0] * 4).status == "insufficient"  # fewer than 5 trials
    assert estimate([1.0] * 5, noisy=True).status == "noisy"


def test_percentiles_come_from_the_histogram() -> None:
    hists = []
    for shift in range(5):
        h = LatencyHistogram()
        for v in range(1, 1001):  # 1..1000 ms: p95 is 950 (3 significant figures)
            h.record_ms(v + shift)
        hists.append(h)
    e = percentile_estimate(hists, 95)
    assert e.samples == (1000,) * 5
    assert e.median == pytest.approx(952.0, rel=2e-3)
    assert e.status == "ok"
    assert percentile_estimate(hists, 99).status == "insufficient"


def test_interleave_alternates_arms_and_requires_five_trials() -> None:
    order: list[str] = []
    out = interleave({"a": lambda i: order.append(f"a{i}") or i, "b": lambda i: order.append(f"b{i}") or -i})
    assert order[:4] == ["a0", "b0", "a1", "b1"] and len(order) == 10
    assert out == {"a": [0, 1, 2, 3, 4], "b": [0, -1, -2, -3, -4]}
    with pytest.raises(ValueError):
        repeat(lambda i: i, 3)


def test_overlap() -> None:
    assert overlap((1, 3), (2, 4)) and not overlap((1, 2), (2.5, 3))


def test_parse_process_stat_with_spaces_in_the_name() -> None:
    line = "123 (my (odd) proc) S 7 123 123 0 -1 4194560 1 0 0 0 40 60 3 2 20 0 1 0 100 0 0"
    p = cpu._parse_stat(line)
    assert (p.ppid, p.own, p.reaped) == (7, 100, 5)


def test_tree_ticks_sum_descendants_and_reaped_time() -> None:
    table = {
        1: cpu._Proc(0, 10, 0),
        2: cpu._Proc(1, 20, 5),
        3: cpu._Proc(2, 30, 0),
        4: cpu._Proc(99, 1000, 0),  # not in the tree
    }
    assert cpu.tree_ticks(table, 2) == 55
    assert cpu.tree_ticks(table, 1) == 65
    assert cpu.tree_ticks(table, 1, exclude=2) == 10  # the client's tree without the service under it
    assert cpu.OwnProcess(2).local_ticks(table) == 20


def test_cpu_per_request() -> None:
    a = cpu.CpuReading({"server": 1.0, "redis": None, "client": 2.0}, 0)
    b = cpu.CpuReading({"server": 3.0, "redis": 5.0, "client": 2.5}, 0)
    assert cpu.per_request_ms(a, b, 1000) == {"server": 2.0, "redis": None, "client": 0.5}


def test_noise_outsiders_are_busy_minus_lab() -> None:
    s0 = noise.parse_proc_stat("cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 ...")
    s1 = noise.parse_proc_stat("cpu  400 0 200 1400 0 0 0 0 0 0\n")
    assert (s1.total - s0.total, s1.busy - s0.busy) == (1000, 400)
    r = noise.noise_record(s0, s1, lab_ticks=250, seconds=5.0)
    assert r.outsider_share == 0.15 and r.lab_share == 0.25 and r.noisy
    quiet = noise.noise_record(s0, s1, lab_ticks=350, seconds=5.0)
    assert quiet.outsider_share == 0.05 and not quiet.noisy
    steal = noise.parse_proc_stat("cpu  0 0 0 90 0 0 0 10 0 0")
    assert (steal.total, steal.busy, steal.steal) == (100, 0, 10)


def test_steal_beyond_the_threshold_is_noise_too() -> None:
    """A neighbour VM taking our CPUs shows as steal, not as busy time: outsiders stay at 0."""
    s0 = noise.parse_proc_stat("cpu  100 0 100 800 0 0 0 0 0 0\n")
    stolen = noise.parse_proc_stat("cpu  300 0 100 1350 0 0 0 250 0 0\n")  # 250 of 1,000 ticks stolen
    r = noise.noise_record(s0, stolen, lab_ticks=200, seconds=5.0)
    assert r.outsider_share == 0.0 and r.steal_share == 0.25 and r.noisy
    little = noise.parse_proc_stat("cpu  300 0 100 1550 0 0 0 50 0 0\n")
    assert not noise.noise_record(s0, little, lab_ticks=200, seconds=5.0).noisy


def _record(name: str, requests: int, server: float | None, outsiders: float) -> PhaseRecord:
    rec = noise.NoiseRecord(1.0, outsiders, 0.5, 0.0, (1.0, 1.0, 1.0), 2, "cpu", 2000.0)
    return PhaseRecord(name, requests, {"server": server, "client": 1.0}, rec)


def test_merge_cpu_is_request_weighted() -> None:
    merged = merge_cpu([_record("w", 100, 1.0, 0.0), _record("w", 300, 2.0, 0.0)])
    assert merged == {"server": 1.75, "client": 1.0}
    assert merge_cpu([_record("w", 100, None, 0.0)])["server"] is None


def test_envelope_keeps_legacy_keys_and_adds_the_contract() -> None:
    r = Result("x", {"rows": 1}, legacy={"warm_p95_ms": 3.0})
    r.estimates["warm_p95_ms"] = estimate([1.0, 2.0, 3.0, 4.0, 5.0])
    r.add_phase(_record("warm", 100, 1.0, 0.02))
    r.add_phase(_record("warm", 100, 1.0, 0.2))
    env = r.envelope()
    assert env["warm_p95_ms"] == 3.0
    assert env["trials"]["warm_p95_ms"] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert env["figures"]["warm_p95_ms"]["median"] == 3.0
    assert env["cpu_ms_per_request"]["warm"] == {"server": 1.0, "client": 1.0}
    assert env["noise"]["warm"]["noisy"] and env["noisy"]
    assert env["noise"]["warm"]["outsider_share_max"] == 0.2


def test_cli_flags_come_from_config_fields() -> None:
    @dataclasses.dataclass(frozen=True)
    class Config:
        rows: int = 10
        cold_requests: int = dataclasses.field(default=5, metadata={"flag": "--cold"})
        ratio: float = 0.5

    args = vars(_parser(Config, "").parse_args(["--rows", "3", "--cold", "7", "--json"]))
    assert args == {"rows": 3, "cold_requests": 7, "ratio": 0.5, "json": True}
    assert vars(_parser(Config, "").parse_args(["--cold-requests", "9"]))["cold_requests"] == 9


def test_settle_waits_out_a_busy_process_and_passes_an_idle_one() -> None:
    """A child spinning its CPU is not idle (settle gives up at its timeout); once it sleeps, it is."""
    import subprocess
    import sys

    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    idle = subprocess.Popen([sys.executable, "-c", "import time\ntime.sleep(60)"])
    try:
        assert cpu.settle(cpu.ProcessTree(spin.pid), window_s=0.2, timeout_s=0.5) is False
        assert cpu.settle(cpu.ProcessTree(idle.pid), window_s=0.2, timeout_s=5.0) is True  # after start-up
        assert cpu.settle(cpu.UNKNOWN) is True  # nothing to read: nothing to wait for
    finally:
        for p in (spin, idle):
            p.kill()
            p.wait()
