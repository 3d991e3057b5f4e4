"""Locust against a real `perflab serve`: distributed on loopback (1 master + 2 workers), HDR
histograms merged on the master, the quitting hook's exit code both ways, and the open model."""

from __future__ import annotations

from pathlib import Path

from perflab.lab.harness import ServiceProcess
from perflab.lab.loadtest import read_run, run_locust


def test_distributed_run_merges_worker_histograms(service: ServiceProcess, tmp_path: Path) -> None:
    result = run_locust(
        service.url, tmp_path, users=4, duration="6s", workers=2, seeded_users=4, p95_slo_ms=5000, timeout=120
    )
    assert result.exit_code == 0, (tmp_path / "locust.log").read_text()[-2000:]
    summary, history = read_run(tmp_path)
    assert summary["requests"] > 0 and summary["failures"] == 0 and summary["breaches"] == []
    search = summary["hdr"]["/search"]
    assert search["count"] > 0  # recorded on the workers, merged on the master
    assert summary["hdr_total"]["count"] >= search["count"]
    assert (tmp_path / "locust.html").exists() and (tmp_path / "locust_stats.csv").exists()
    assert "Aggregated" in set(history["Name"])


def test_quitting_hook_fails_the_run_over_slo(service: ServiceProcess, tmp_path: Path) -> None:
    result = run_locust(
        service.url, tmp_path, users=2, duration="3s", seeded_users=4, p95_slo_ms=0.001, timeout=60
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
