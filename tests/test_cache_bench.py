"""`perflab bench cache --json`: the JSON contract, on tiny sizes (the figures themselves mean nothing here)."""

from __future__ import annotations

import json

import pytest
import redis

from perflab.bench import cache as bench
from perflab.config import Settings


def test_bench_cache_prints_the_contract_keys_and_cleans_up(
    settings: Settings, redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench.main(settings, ["--json", "--quick"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in bench.TARGETS:
        assert isinstance(result[key], int | float)
    assert result["stampede_factory_calls"] == 1
    assert result["stampede"]["all_got_the_value"]
    assert set(result["ops_per_s"]) >= {"get", "set", "get_many", "set_many"}
    assert all(result["ops_per_s"][k] > 0 for k in ("get", "set", "get_many", "set_many"))
    assert result["embedding_memory_ratio_vs_seed"] > 1  # packed float32 beats JSON at any size
    assert not list(redis_client.scan_iter(match=f"{settings.key_prefix}bench*", count=1000))


def test_bench_cache_cluster_compares_one_node_with_three_masters(
    settings: Settings, cluster_servers: object, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench.main(settings, ["--json", "--quick", "--cluster"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1  # one JSON object on one line
    result = json.loads(lines[0])
    assert set(bench.TARGETS) <= set(result) and "ops_per_s" in result  # the old keys stay
    c = result["cluster"]
    assert c["masters"] == 3 and c["trials"] == 2
    for kind in ("single", "cluster"):
        assert all(c[kind][op] > 0 for op in ("get", "set", "get_many", "set_many"))
