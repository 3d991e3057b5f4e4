"""Faults under load, on servers of the module's own: a private Redis and PostgreSQL (the fault lab),
`perflab serve` with 2 workers, signed-in users searching and uploading while a fault is injected.

Each scenario runs a few seconds of traffic. The checks are about behaviour (what failed, with what
answer, whether the service came back by itself, whether an acknowledged write is still there), not
about how fast things were: the notebook 06_reliability measures that, over longer runs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from perflab.config import Settings, project_root
from perflab.lab import slo
from perflab.lab.faults import FaultLab, FaultLabConfig, ScenarioResult
from perflab.lab.scenarios import MIN_BASELINE_HIT_RATE, MIN_BASELINE_SEARCHES, hit_share, summarize
from perflab.lab.traffic import (
    SEARCH,
    RequestRecord,
    TrafficConfig,
    hit_rate,
    recovery_time,
    sliding_hit_rate,
    window,
)

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def lab(base_settings: Settings) -> Iterator[FaultLab]:
    cfg = FaultLabConfig(
        media=600,
        users=4,
        workers=2,
        warmup_s=1.5,
        traffic=TrafficConfig(users=4, search_threads=3, upload_interval_s=0.3, think_s=0.02),
    )
    with FaultLab(base_settings, cfg, log=lambda m: None) as lab:
        yield lab


def test_bad_inputs_get_a_clear_4xx_and_write_nothing(lab: FaultLab) -> None:
    report = lab.bad_inputs()
    wrong = [(c.category, c.name, c.status, c.allowed, c.detail) for c in report.failed]
    assert not wrong
    assert report.server_errors == 0
    assert report.refused_writes == 0
    assert report.workers_survived
    assert report.rows_written == report.accepted_uploads > 0  # one row per 201, none for a refusal
    assert {c.category for c in report.cases} == {"file", "upload", "search", "session", "media"}
    refused_files = [c for c in report.cases if c.category == "file" and c.refused]
    assert len(refused_files) == 6 and all(c.detail for c in refused_files)


def _in_my_tree(pid: int | None) -> bool:
    from perflab.lab.cpu import process_table, subtree

    return pid is not None and pid in subtree(process_table(), os.getpid())


def test_redis_stop_serves_from_postgres_and_the_cache_comes_back(lab: FaultLab) -> None:
    # the fault lab's Redis is a child, before and after its restart: its CPU is the lab's in the
    # noise record (a daemon would leave the process tree and be counted as an outsider's)
    assert _in_my_tree(lab.redis.pid())
    r = lab.scenario("redis_stop", before_s=1.5, down_s=2, after_s=4)
    assert _in_my_tree(lab.redis.pid())
    assert r.figures["failed"] == 0, r.figures["statuses"]
    stopped, started = r.events["redis stopped"], r.events["redis started"]
    down = window(r.records, stopped, r.events["redis starting"], SEARCH)
    assert down and all(x.status == 200 for x in down)  # answered from PostgreSQL
    assert hit_rate(down) == 0
    assert r.figures["uploads"] > 0 and r.acknowledged  # uploads kept being acknowledged
    assert r.figures["recovery_s"] is not None  # hits came back within the run, by themselves
    assert (hit_rate(window(r.records, started + 2, r.end)) or 0) > 0


def test_postgres_restart_fails_few_requests_with_503_and_recovers(lab: FaultLab) -> None:
    assert _in_my_tree(lab.postgres.pid())  # a child too, before and after its restart (as Redis)
    r = lab.scenario("pg_restart", before_s=1.5, after_s=3)
    assert _in_my_tree(lab.postgres.pid())
    failures = [x for x in r.records if x.failed]
    assert all(x.status == 503 and "database unavailable" in x.error for x in failures), failures[:3]
    assert r.figures["recovered"]  # the last seconds were clean: the pools reconnected by themselves
    assert r.figures["fail_ratio"] <= 0.05
    after = window(r.records, r.events["postgres started"] + 1.5, r.end)
    assert after and all(x.status in (200, 201) for x in after)


def test_paused_redis_costs_a_bounded_wait_not_the_pause(lab: FaultLab) -> None:
    r = lab.scenario("slow_redis", before_s=1, pause_s=3, after_s=1)
    assert r.figures["failed"] == 0, r.figures["statuses"]
    paused, resumed = r.events["redis paused"], r.events["redis resumed"]
    early = window(r.records, paused, paused + 1, SEARCH)
    # Requests sent early in the pause were answered while Redis was still paused: each cache call
    # gave up after its socket timeout (or at once, once the circuit breaker opened).
    assert early and all(x.status == 200 and x.end < resumed for x in early)
    assert len(window(r.records, paused, resumed, SEARCH)) > len(early)  # and traffic kept flowing


def test_a_killed_worker_is_replaced_and_the_other_keeps_serving(lab: FaultLab) -> None:
    r = lab.scenario("worker_kill", before_s=1, after_s=1)
    assert r.figures["replaced"]  # uvicorn spawned a new worker
    killed = r.events["worker killed"]
    # Right after the kill (before a new worker could have imported the app), requests still succeed:
    # the surviving worker takes them.
    soon = window(r.records, killed + 0.2, killed + 1)
    assert any(x.status == 200 for x in soon), [(x.status, x.error) for x in soon]
    # Only requests in flight on the killed worker can fail (one per traffic thread at most).
    failed = [(x.status, x.error) for x in r.records if x.failed]
    assert len(failed) <= lab.config.traffic.search_threads + 1, failed
    assert all(status == 0 for status, _ in failed), failed  # a reset connection, never a 5xx


def test_no_acknowledged_upload_is_lost_across_restarts(lab: FaultLab) -> None:
    r = lab.scenario("api_restart", before_s=1, after_s=1)
    assert r.figures["failed_after_start"] == 0
    durability = lab.durability()
    assert durability.acknowledged >= len(r.acknowledged) > 0
    assert durability.writes_lost == 0
    assert durability.in_postgres == durability.served_by_api == durability.acknowledged
    figures = summarize(lab.results, durability, None)
    assert figures["reliability.writes_lost"] == 0
    assert figures["reliability.faults_injected"] == len(lab.results)


def test_recovery_time_is_when_a_sliding_second_reaches_the_target() -> None:
    """The arithmetic the Redis scenario is judged by, on a made-up timeline: misses until t=3, then
    hits, 20 searches a second."""
    records = [RequestRecord(i / 20, SEARCH, 1, 200, 5.0, cache_hit=i / 20 >= 3) for i in range(200)]
    assert recovery_time(records, since=2.0, target=0.8) == pytest.approx(1.8, abs=0.11)
    assert recovery_time(records, since=2.0, target=1.01) is None
    series = sliding_hit_rate(records, 0, 10)
    assert series[0][1] == 0 and series[-1][1] == 1 and all(19 <= n <= 21 for _, _, n in series)
    assert hit_rate(records[:60]) == 0 and hit_rate(records) == pytest.approx(0.7)


def test_a_hit_share_without_a_warm_baseline_is_no_figure_and_fails_its_gate() -> None:
    """A cold cache before the fault (every search a miss) or too few searches give no share, with
    the reason; the report's gate on the figure then fails ("missing"), it does not pass."""

    def searches(n: int, hits: int, t0: float) -> list[RequestRecord]:
        return [RequestRecord(t0 + i / 100, SEARCH, 1, 200, 5.0, cache_hit=i < hits) for i in range(n)]

    during = searches(50, 25, 10.0)
    cold = hit_share(searches(100, 0, 0.0), during)
    thin = hit_share(searches(MIN_BASELINE_SEARCHES - 1, 10, 0.0), during)
    warm = hit_share(searches(100, 50, 0.0), during)
    assert cold.share is None and "caches cold" in cold.why
    assert thin.share is None and f"need {MIN_BASELINE_SEARCHES}" in thin.why
    assert warm.share == 1.0 and warm.why == "" and warm.baseline_searches == 100
    gates = [
        o for o in slo.load(project_root() / "notebooks" / "slo.toml") if "healthy_hit_share" in o.figure
    ]
    assert {o.figure for o in gates} == {
        "reliability.cluster_kill_healthy_hit_share",
        "reliability.cluster_pause_healthy_hit_share",
    }
    verdicts = slo.evaluate(gates, {o.figure: cold.share for o in gates}, "smoke")
    assert [v.status for v in verdicts] == ["missing", "missing"] and slo.exit_code(verdicts) == 1


# -- on a Redis Cluster: the module's last tests (the lab's service moves onto the cluster for good) ----


@pytest.fixture(scope="module")
def cluster_lab(lab: FaultLab) -> FaultLab:
    if lab.cluster is None:
        lab.use_cluster()
    return lab


def _assert_warm_baseline(r: ScenarioResult) -> None:
    f = r.figures
    assert f["warmup_requests"] > 0 and all(x.t >= r.start for x in r.records)  # warm-up not counted
    assert f["healthy_hit_share_why"] == ""
    assert f["healthy_baseline_searches"] >= MIN_BASELINE_SEARCHES
    assert f["healthy_hit_rate_before"] >= MIN_BASELINE_HIT_RATE > 0  # a warm cache, not a cold one
    assert f["healthy_hit_share"] == round(f["healthy_hit_rate_during"] / f["healthy_hit_rate_before"], 4)


def test_a_master_kill_judges_healthy_users_against_a_warm_baseline(cluster_lab: FaultLab) -> None:
    assert cluster_lab.cluster is not None
    assert all(_in_my_tree(node.pid()) for node in cluster_lab.cluster.nodes)
    r = cluster_lab.scenario("master_kill", warm_s=3, before_s=1.5, after_s=2)
    _assert_warm_baseline(r)
    f = r.figures
    assert f["healthy_failed"] == 0, [(x.status, x.error) for x in r.records if x.failed][:5]
    assert f["failover_s"] is not None  # the replica took over
    assert f["unreset_losses"] == 0
    figures = summarize([r], None, None)
    assert figures["reliability.cluster_kill_healthy_baseline_hit_rate"] == f["healthy_hit_rate_before"]
    assert figures["reliability.cluster_kill_healthy_hit_share"] == f["healthy_hit_share"]


def test_a_master_pause_judges_healthy_users_against_a_warm_baseline(cluster_lab: FaultLab) -> None:
    r = cluster_lab.scenario("master_pause", warm_s=3, before_s=1.5, pause_s=1.5, after_s=0.5)
    _assert_warm_baseline(r)
    assert r.figures["healthy_failed"] == 0, [(x.status, x.error) for x in r.records if x.failed][:5]
