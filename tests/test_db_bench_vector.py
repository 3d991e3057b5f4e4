"""`perflab bench vector --json` at a tiny size: the key set is a contract the notebooks read."""

from __future__ import annotations

import json
import os

import pytest

from perflab.bench import vector
from perflab.config import Settings
from perflab.servers import Endpoints

CONFIG_KEYS = {
    "index", "ef_search", "recall_at_10", "p50_ms", "p95_ms", "p99_ms", "qps_c1", "qps_c4", "qps_c8",
    "build_s", "index_mb",
}  # fmt: skip


def test_bench_vector_json_contract(
    base_settings: Settings, servers: Endpoints, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--rows", "1500", "--queries", "20", "--ef", "40,100", "--duration", "0.2", "--json"]
    assert vector.main(base_settings, argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["rows"], out["dims"]) == (1500, base_settings.embedding_dim)
    assert "clustered synthetic" in out["data"]
    assert [(c["index"], c["ef_search"]) for c in out["configs"]] == [
        ("exact", None),
        ("hnsw", 40),
        ("hnsw", 100),
    ]
    for c in out["configs"]:
        assert set(c) == CONFIG_KEYS
        assert 0.0 <= c["recall_at_10"] <= 1.0 and c["p50_ms"] <= c["p95_ms"] <= c["p99_ms"]
    assert out["configs"][0]["recall_at_10"] == 1.0  # the exact path is exact
    cases = {c["case"]: c for c in out["filtered"]["cases"]}
    assert set(cases) == {"small_user", "mid_user", "A_videos_only"}
    assert cases["small_user"]["path"] == "exact" and cases["small_user"]["recall_at_10"] == 1.0
    assert all(c["min_results"] == 10 for c in cases.values())
    assert out["filtered"]["sweep"] and out["filtered"]["exact_threshold"] == 2000
    # the benchmark's schema is gone afterwards
    from perflab.db import connect

    with connect(base_settings, servers.database_url) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (f"bench_vector_{os.getpid()}",)
        ).fetchone()[0]
    assert left == 0
