"""`perflab bench cache --json`: the JSON contract, on tiny sizes (the figures themselves mean nothing here)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

import pytest
import redis

from perflab.bench import cache as bench
from perflab.config import Settings
from perflab.errors import ConfigError


def test_bench_cache_prints_the_contract_keys_and_cleans_up(
    settings: Settings, redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench.main(settings, ["--json", "--quick", "--trials", "6"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(bench.targets()) == set(result["targets"]) == set(result["meets_targets"])
    for key in bench.targets():
        assert isinstance(result[key], int | float)
    assert result["stampede_factory_calls"] == 1
    assert result["stampede"]["all_got_the_value"]
    assert set(result["ops_per_s"]) >= {"get", "set", "get_many", "set_many"}
    assert all(result["ops_per_s"][k] > 0 for k in ("get", "set", "get_many", "set_many"))
    assert result["embedding_memory_ratio_vs_seed"] > 1  # packed float32 beats JSON at any size
    # the contract: Config, headline figures in trials (median, CI), phases with CPU and noise
    assert result["benchmark"] == "cache" and result["contract"] == 1
    assert result["config"] == {"quick": True, "cluster": False, "trials": 6}
    figures = result["figures"]
    for name in ("embedding_batch_speedup_vs_seed", "get_overhead_vs_raw", "stampede_factory_calls"):
        assert len(figures[name]["trials"]) == 6 and result["trials"][name] == pytest.approx(
            figures[name]["trials"], abs=1e-4
        )
        lo, hi = figures[name]["ci95"]
        assert lo <= figures[name]["median"] <= hi
    assert (
        abs(result["embedding_batch_speedup_vs_seed"] - figures["embedding_batch_speedup_vs_seed"]["median"])
        <= 0.05
    )
    assert result["get_overhead_vs_raw"] == figures["get_overhead_vs_raw"]["median"]
    assert result["stampede_factory_calls"] == max(figures["stampede_factory_calls"]["trials"])  # worst trial
    assert len(result["stampede"]["per_trial"]) == result["stampede"]["trials"] == 6
    assert result["embedding_get_many"]["samples"] == {"ours": 18, "seed": 6}
    assert result["get_latency"]["samples"] == 300 and result["get_latency"]["trials"] == 6
    for op in ("get", "set", "get_many", "set_many"):
        per_trial = result["ops_per_s"]["per_trial"][op]
        assert len(per_trial) == 6 and result["ops_per_s"][op] == round(statistics.median(per_trial), 1)
        assert figures[f"ops_per_s_{op}"]["trials"] == per_trial
    assert set(result["noise"]) == set(result["cpu_ms_per_request"]) == {
        "embedding_ours", "embedding_seed", "get_overhead", "ops",
    }  # fmt: skip
    assert result["cpu_ms_per_request"]["get_overhead"]["client"] is not None
    # judged only by slo.toml: passed means status "pass"; an inconclusive target does not pass
    assert set(result["target_status"]) == set(result["targets"])
    for name, verdict in result["target_status"].items():
        assert verdict["status"] in {"pass", "fail", "inconclusive", "missing"}
        assert result["meets_targets"][name] is (verdict["status"] == "pass")
    assert not list(redis_client.scan_iter(match=f"{settings.key_prefix}bench*", count=1000))


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "perflab.cli", "bench", "cache", *args]
    env = {**os.environ, **settings.to_env()}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_bench_cache_cluster_from_the_cli_with_the_cluster_named_in_config(
    settings: Settings, cluster_servers: object
) -> None:
    """`PERFLAB_REDIS_CLUSTER=1 perflab bench cache --cluster --json`: the single-node sections on the
    embedded single server, ops/s on one node against the 3 masters, one JSON object on one line."""
    on_cluster = settings.replace(redis_cluster=True)
    run = _cli(on_cluster, "--json", "--quick", "--cluster")
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.strip().splitlines()
    assert len(lines) == 1  # one JSON object on one line
    result = json.loads(lines[0])
    assert set(bench.targets()) <= set(result) and "ops_per_s" in result  # the old keys stay
    c = result["cluster"]
    assert c["masters"] == 3 and c["trials"] == 2
    assert c["get_many_span"]["keys"] == c["batch_size"] == 100
    assert c["get_many_span"]["masters"] == 3 and c["get_many_span"]["slots"] > 50  # spans slots
    for kind in ("single", "cluster"):
        assert all(c[kind][op] > 0 for op in ("get", "set", "get_many", "set_many"))
        assert all(len(c["per_trial"][kind][op]) == 2 for op in ("get", "set", "get_many", "set_many"))
    ratio = result["figures"]["cluster_ratio_vs_single_get_many"]  # paired per trial; 2 trials are too few
    assert len(ratio["trials"]) == 2 and ratio["status"] == "insufficient"
    refused = _cli(on_cluster, "--json", "--quick")  # the seed-layout sections need one node
    assert refused.returncode == 2 and "add --cluster" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr


@pytest.mark.parametrize(
    ("url", "cluster", "message"),
    [
        ("redis+cluster://h1:7000,h2:7001/", True, "PERFLAB_REDIS_URL names a cluster"),
        ("redis+cluster://h1:7000,h2:7001/", False, "PERFLAB_REDIS_URL names a cluster"),
        ("redis://h1:6380/0", True, "compares the embedded single server with the embedded cluster"),
    ],
)
def test_bench_cache_on_staging_urls_says_what_it_needs(url: str, cluster: bool, message: str) -> None:
    staging = Settings.from_env({"PERFLAB_REDIS_URL": url, "PERFLAB_DATABASE_URL": "postgresql://h/db"})
    with pytest.raises(ConfigError, match=message) as err:
        bench.run(staging, bench.Config(quick=True, cluster=cluster))  # refused before any connection
    assert "\n" not in str(err.value)


def test_bench_cache_config_takes_at_least_five_trials() -> None:
    assert bench.Config() == bench.Config(quick=False, cluster=False, trials=5)
    with pytest.raises(ConfigError, match="at least 5"):
        bench.Config(trials=4)
    with pytest.raises(ConfigError, match="--trials"):  # the flags are the Config's fields
        bench.main(Settings.from_env({}), ["--quick", "--trials", "3"])
