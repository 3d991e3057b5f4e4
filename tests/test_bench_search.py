"""`perflab bench search`: the JSON contract, on a tiny library, over real HTTP."""

from __future__ import annotations

from perflab.bench.search import SearchBenchConfig, bench_settings, run_search_bench
from perflab.config import Settings
from perflab.db import connect, drop_schema
from perflab.servers import Endpoints

CONTRACT = {
    "warm_p95_ms",
    "cold_p95_ms",
    "warm_p50_ms",
    "cold_p50_ms",
    "rps_c1",
    "rps_c8",
    "rps_c32",
    "stage_p95_ms",
}


def test_bench_search_json_contract(settings: Settings, servers: Endpoints) -> None:
    s = settings.replace(embedder="hashing")
    cfg = SearchBenchConfig(rows=300, users=4, seed=3, serve_workers=1, cold_requests=40, warm_requests=20,
                            rps_requests=10, trials=5, open_rate=50, open_requests=40)  # fmt: skip
    try:
        result = run_search_bench(s, cfg, log=lambda m: None)
    finally:
        with connect(s, servers.database_url) as conn:
            drop_schema(conn, bench_settings(s, cfg.rows).db_schema)
    assert set(result) >= CONTRACT
    assert result["errors"] == 0 and result["samples"] == {"warm": 100, "cold": 200}
    # the measurement contract beside the old keys: 5 trials per figure with a CI, CPU and noise per phase
    assert len(result["trials"]["warm_p95_ms"]) == 5 and len(result["ci95"]["cold_p95_ms"]) == 2
    assert result["figures"]["warm_p95_ms"]["status"] == "insufficient"  # 20 samples per trial < 1,000
    assert result["figures"]["rps_c8"]["status"] in ("ok", "noisy")
    for phase in ("warm", "cold"):
        cpu = result["cpu_ms_per_request"][phase]
        assert set(cpu) == {"server", "client", "redis", "postgres"}
        assert cpu["server"] > 0 and cpu["client"] > 0  # the service and the client did work
        noise = result["noise"][phase]
        assert len(noise["outsider_share"]) >= 5 and isinstance(noise["noisy"], bool)
    # cold requests run SQL: 200 of them take several 10 ms clock ticks of PostgreSQL CPU (60 did not
    # always, once each trial started on an idle service and no longer caught the last one's writes)
    assert result["cpu_ms_per_request"]["cold"]["postgres"] > 0
    assert 0 < result["warm_p50_ms"] <= result["warm_p95_ms"]
    assert 0 < result["cold_p50_ms"] <= result["cold_p95_ms"]
    assert {"search_cache", "embedding_cache", "embed", "vector_search", "hydrate", "cache_store"} <= set(
        result["stage_p95_ms"]
    )
    assert all(result[f"rps_c{c}"] > 0 for c in (1, 8, 32))
    for kind in ("warm", "cold"):  # server CPU per request, one value per trial, with its CI
        assert (
            len(result["trials"][f"{kind}_server_cpu_ms"]) == 5
            and len(result["ci95"][f"{kind}_server_cpu_ms"]) == 2
        )
    # the open model: 5 trials of 40 cold requests at 50/s, each a phase; p99 wants 10k per trial
    assert result["open_cold_samples"] == 200 and result["open_rate"] == 50
    assert len(result["trials"]["open_cold_p99_ms"]) == 5
    assert result["figures"]["open_cold_p99_ms"]["status"] == "insufficient"
    assert 0 < result["open_cold_p50_ms"] <= result["open_cold_p99_pooled_ms"]
    assert result["cpu_ms_per_request"]["open_cold"]["server"] > 0
    assert "hashing" in result["embedder"]  # the service embeds with the library's embedder


def test_every_measured_warm_request_is_a_hit(settings: Settings, servers: Endpoints) -> None:
    """The priming pass and the measured run use the same users (their threads are new each run), and
    each user asks only for the queries it primed: no measured warm request reaches the vector search
    (the first warm trial used to draw new users, whose first searches were misses)."""
    from perflab.bench.search import SearchBench
    from perflab.lab.latency import LatencyHistogram

    s = settings.replace(embedder="hashing")
    cfg = SearchBenchConfig(rows=300, users=20, seed=5, serve_workers=1)
    try:
        with SearchBench(s, cfg, log=lambda m: None) as bench:
            for trial in range(2):
                stages: dict[str, LatencyHistogram] = {}
                res = bench.warm(4, 120, stages=stages)
                assert res.errors == 0 and stages["search_cache"].count == 120, (trial, sorted(stages))
                assert "vector_search" not in stages, (trial, stages["vector_search"].count)
    finally:
        with connect(s, servers.database_url) as conn:
            drop_schema(conn, bench_settings(s, cfg.rows).db_schema)


def test_raw_client_cross_checks_the_service(settings: Settings, servers: Endpoints) -> None:
    """loadtests/raw_client.py, the independent client: open-model cold queries all answered and timed
    from their due times; its closed warm loop measures hits only (no response ran a vector search)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from perflab.lab.harness import SeededService

    script = Path(__file__).resolve().parents[1] / "loadtests" / "raw_client.py"
    s = settings.replace(embedder="hashing", db_schema=settings.db_schema + "_raw")
    try:
        with SeededService(s, media=300, users=4, seed=9, workers=1) as svc:

            def raw(*args: str) -> dict[str, object]:
                out = subprocess.run([sys.executable, str(script), *args, "--url", svc.url, "--users", "4"],
                                     capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
                return dict(json.loads(out.stdout))

            opened = raw("open", "--rate", "50", "--requests", "60", "--pool", "4")
            assert opened["samples"] == 60 and opened["errors"] == 0
            assert 0 < float(opened["p50_ms"]) <= float(opened["p99_ms"])  # type: ignore[arg-type]
            closed = raw("closed", "--concurrency", "4", "--requests", "200")
            assert closed["samples"] == 200 and closed["errors"] == 0 and closed["misses"] == 0
    finally:
        with connect(s, servers.database_url) as conn:
            drop_schema(conn, s.db_schema)


def test_cross_check_records_noise_and_cpu_beside_each_trial(settings: Settings, servers: Endpoints) -> None:
    """loadtests/cross_check.py: both clients' trials, each with its noise record and CPU per request,
    and a summary with each percentile's median, CI and status, so no figure leaves without them."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "loadtests" / "cross_check.py"
    s = settings.replace(embedder="hashing", db_schema=settings.db_schema + "_cc")
    args = ["--rows", "300", "--users", "4", "--workers", "1", "--pairs", "1", "--warm", "60",
            "--open-requests", "30", "--open-rate", "50"]  # fmt: skip
    try:
        out = subprocess.run([sys.executable, str(script), *args], env=os.environ | s.to_env(),
                             capture_output=True, text=True, timeout=600, check=True)  # fmt: skip
    finally:
        with connect(s, servers.database_url) as conn:
            drop_schema(conn, bench_settings(s, 300).db_schema)
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    trials, summary = lines[:-1], lines[-1]["summary"]
    assert sorted((t["kind"], t["client"]) for t in trials) == [
        ("open", "perflab"),
        ("open", "raw"),
        ("warm", "perflab"),
        ("warm", "raw"),
    ]
    for t in trials:
        assert t["cpu_ms_per_request"]["server"] > 0 and t["cpu_ms_per_request"]["client"] > 0
        assert 0 <= t["outsider_share"] <= 1 and isinstance(t["noisy"], bool)
    assert set(summary) == {"warm.perflab", "warm.raw", "open.perflab", "open.raw"}
    p95 = summary["open.raw"]["p95_ms"]
    assert p95["status"] == "insufficient"  # one trial of 30 samples: a figure, never a gated one
    assert p95["median"] > 0 and len(p95["ci95"]) == 2
    assert (
        summary["warm.raw"]["noisy_trials"] in (0, 1)
        and summary["warm.raw"]["cpu_ms_per_request"]["server"] > 0
    )
