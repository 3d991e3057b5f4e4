"""Locust against a real `perflab serve`: distributed on loopback (1 master + 2 workers), HDR
histograms merged on the master, the quitting hook's exit code both ways, and the open model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from perflab.errors import PerflabError
from perflab.lab.cpu import ProcessTree
from perflab.lab.harness import ServiceProcess
from perflab.lab.loadtest import check_users, default_p95_slo_ms, load_trials, read_run, run_locust
from perflab.lab.phase import Phase
from perflab.lab.slo import threshold


def test_distributed_run_merges_worker_histograms(service: ServiceProcess, tmp_path: Path) -> None:
    phase = Phase("load", {"client": ProcessTree(os.getpid())})  # this process's tree: master + workers
    result = run_locust(
        service.url, tmp_path, users=4, duration="6s", workers=2, seeded_users=4, timeout=120, phase=phase
    )
    assert result.exit_code == 0, (tmp_path / "locust.log").read_text()[-2000:]
    # the p95 gate is slo.toml's, and the phase ran from the test's start mark to its stop mark
    assert result.summary["slo"]["p95_ms"] == default_p95_slo_ms() == threshold("load.p95_ms")
    assert (tmp_path / "locust_marks").read_text().split() == ["start", "stop"]
    assert phase.measured
    record = phase.finish(result.summary["requests"])
    assert record.cpu_ms_per_request["client"] is not None and record.cpu_ms_per_request["client"] > 0
    summary, history = read_run(tmp_path)
    assert summary["requests"] > 0 and summary["failures"] == 0 and summary["breaches"] == []
    search = summary["hdr"]["/search"]
    assert search["count"] > 0  # recorded on the workers, merged on the master
    assert summary["hdr_total"]["count"] >= search["count"]
    assert (tmp_path / "locust.html").exists() and (tmp_path / "locust_stats.csv").exists()
    assert "Aggregated" in set(history["Name"])
    # every weighted scenario ran at least one user and was counted, across the workers
    scenarios = summary["scenarios"]
    assert set(scenarios) == {"Searcher", "Uploader", "SessionChurn"}
    for name, row in scenarios.items():
        assert row["users"] >= 1 and row["requests"] > 0, (name, row)
    assert sum(r["users"] for r in scenarios.values()) == 4
    assert sum(r["requests"] for r in scenarios.values()) == summary["requests"]


def test_quitting_hook_fails_the_run_over_slo(service: ServiceProcess, tmp_path: Path) -> None:
    result = run_locust(
        service.url, tmp_path, users=3, duration="3s", seeded_users=4, p95_slo_ms=0.001, timeout=60
    )
    assert result.exit_code == 1
    assert any("p95" in b for b in result.summary["breaches"])


def test_open_model_measures_from_intended_send_time(service: ServiceProcess, tmp_path: Path) -> None:
    result = run_locust(
        service.url,
        tmp_path,
        users=2,
        duration="4s",
        open_rate=10,
        seeded_users=4,
        p95_slo_ms=5000,
        timeout=60,
    )
    assert result.exit_code == 0, (tmp_path / "locust.log").read_text()[-2000:]
    hdr = result.summary["hdr"]
    assert hdr["/search [open]"]["count"] > 10
    # latency from the intended time is never below the service time of the same requests
    assert hdr["/search [open]"]["p50_ms"] >= hdr["/search [service time]"]["p50_ms"] * 0.9


def test_fewer_users_than_scenarios_is_refused() -> None:
    with pytest.raises(PerflabError, match="at least 3 users at every level, one per scenario"):
        check_users(2, None, 0.0)
    with pytest.raises(PerflabError, match="got 2"):
        check_users(8, "2,8", 0.0)
    check_users(3, "3,8", 0.0)
    check_users(1, None, 5.0)  # the open model has one scenario


def test_load_trials_are_medians_with_cis_and_pooled_totals() -> None:
    """Five synthetic Locust summaries: p95 and rps are medians of the runs; a p99 from fewer than
    10,000 searches per run is insufficient; failures and requests pool over the runs."""

    def summary(p95: float, count: int, rps: float, failures: int) -> dict[str, Any]:
        hdr = {"count": count, "p50_ms": p95 / 3, "p95_ms": p95, "p99_ms": 2 * p95, "max_ms": 3 * p95}
        return {"hdr": {"/search": hdr}, "hdr_total": hdr, "rps": rps, "requests": count + 100,
                "failures": failures, "breaches": ["t=3s p95 over"] if failures else []}  # fmt: skip

    runs = [
        summary(p, 2000, r, f)
        for p, r, f in [(9, 300, 0), (11, 310, 1), (10, 290, 0), (12, 305, 0), (8, 295, 0)]
    ]
    t = load_trials(runs)
    assert t.p95_ms.median == 10 and t.p95_ms.trials == (9, 11, 10, 12, 8) and t.p95_ms.status == "ok"
    assert t.p95_ms.ci95[0] <= 10 <= t.p95_ms.ci95[1]
    assert t.p99_ms.status == "insufficient" and t.rps.median == 300
    assert (t.requests, t.failures, len(t.breaches)) == (10500, 1, 1)
    assert t.fail_ratio == pytest.approx(1 / 10500)
    assert load_trials(runs[:2]).p95_ms.status == "insufficient"  # fewer than 5 trials
    with pytest.raises(PerflabError):
        load_trials([])
