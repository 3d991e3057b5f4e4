"""`perflab bench vector --json` at a tiny size: the key set is a contract the notebooks read."""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from perflab.bench import vector
from perflab.config import Settings
from perflab.embed import HashingEmbedder
from perflab.errors import ConfigError
from perflab.servers import Endpoints

CONFIG_KEYS = {
    "index", "ef_search", "recall_at_10", "p50_ms", "p95_ms", "p99_ms", "qps_c1", "qps_c4", "qps_c8",
    "build_s", "index_mb",
}  # fmt: skip


def test_bench_vector_json_contract(
    base_settings: Settings, servers: Endpoints, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--rows", "3000", "--queries", "20", "--ef", "40,100", "--duration", "0.2", "--json"]
    assert vector.main(base_settings, argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["rows"], out["dims"]) == (3000, base_settings.embedding_dim)
    assert out["benchmark"] == "vector" and out["contract"] == 1
    assert out["config"]["rows"] == 3000 and out["config"]["efs"] == [40, 100]
    assert out["config"]["kinds"] == ["halfvec", "vector"] and out["config"]["duration_s"] == 0.2
    assert "clustered synthetic" in out["data"]
    assert [(c["index"], c["vector_type"], c["ef_search"]) for c in out["configs"]] == [
        ("exact", None, None),
        ("hnsw", "halfvec", 40),
        ("hnsw", "halfvec", 100),
        ("hnsw", "vector", 40),
        ("hnsw", "vector", 100),
    ]
    for c in out["configs"]:
        assert set(c) >= CONFIG_KEYS and c["trials"] == 5
        if c["index"] == "hnsw":  # the raw loop timed beside it
            assert c["raw_p95_ms"] > 0 and c["p95_vs_raw"] > 0
            assert c["raw_hits_p95_ms"] > 0 and c["p95_vs_raw_hits"] > 0  # the raw loop that also joins
        assert 0.0 <= c["recall_at_10"] <= 1.0 and c["p50_ms"] <= c["p95_ms"] <= c["p99_ms"]
        for n in (1, 4, 8):  # QPS in trials: the old key is their median, CI and trials beside it
            trials = c[f"qps_c{n}_trials"]
            assert len(trials) == 5 and all(t > 0 for t in trials)
            assert c[f"qps_c{n}"] == round(statistics.median(trials), 1)
            lo, hi = c[f"qps_c{n}_ci95"]
            assert lo <= c[f"qps_c{n}"] <= hi
    assert out["configs"][0]["recall_at_10"] == 1.0  # the exact path is exact
    cases = {c["case"]: c for c in out["filtered"]["cases"]}
    assert set(cases) == {"small_user", "mid_user", "A_videos_only"}
    assert cases["small_user"]["path"] == "exact" and cases["small_user"]["recall_at_10"] == 1.0
    assert all(c["min_results"] == 10 for c in cases.values())
    assert out["filtered"]["sweep"] and out["filtered"]["exact_threshold"] == 2000
    cells = [c for c in out["filter_matrix"]["cells"] if c.get("measured", True)]
    assert {(c["filter"], c["target_share"]) for c in cells} >= {
        ("type_date", s) for s in (0.01, 0.1, 0.5, 0.99)
    }
    assert all(c["k_rows_whenever_k_match"] and c["recall_at_10"] >= 0.9 for c in cells), cells
    assert set(out["residency"]["buffer_hit_ratio"]) == {
        "idx_media_embeddings_hnsw",
        "idx_media_embeddings_hnsw_vector",
    }
    assert {"hnsw_halfvec_ef100_p95_vs_raw", "hnsw_halfvec_ef100_p95_vs_raw_hits"} <= set(out["figures"])
    assert set(out["load"]["hnsw_options"]) >= {"m=16", "ef_construction=128"}  # migration 0005's
    qps = out["figures"]["hnsw_vector_ef40_qps_c8"]
    assert len(qps["trials"]) == 5 and qps["median"] == out["configs"][3]["qps_c8"]
    assert {"exact_qps_c1", "hnsw_halfvec_ef100_qps_c4"} <= set(out["noise"])  # each trial a phase
    assert out["cpu_ms_per_request"]["exact_qps_c1"]["client"] is not None
    # the benchmark's schema is gone afterwards
    from perflab.db import connect

    with connect(base_settings, servers.database_url) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (f"bench_vector_{os.getpid()}",)
        ).fetchone()[0]
    assert left == 0


def test_bench_vector_config_validates_and_resolves_its_defaults() -> None:
    cfg = vector.Config()
    assert (cfg.rows, cfg.queries, cfg.efs, cfg.trials, cfg.duration_s) == (
        20_000,
        200,
        [40, 100, 200],
        5,
        2.0,
    )
    assert cfg.index_kinds() == ("halfvec", "vector") and cfg.load_batch() is None
    big = vector.Config(rows=1_000_000)
    assert big.index_kinds() == ("halfvec",) and big.load_batch() == vector.BATCH_ROWS
    assert vector.Config(kinds="vector", batch_rows=7).index_kinds() == ("vector",)
    assert vector.Config(batch_rows=7).load_batch() == 7
    for bad in ({"rows": 999}, {"trials": 4}, {"kinds": "ivfflat"}, {"ef": "40,x"}, {"ef": ""}):
        with pytest.raises(ConfigError):
            vector.Config(**bad)  # type: ignore[arg-type]


def test_bench_vector_cli_refuses_a_bad_config_in_one_line() -> None:
    """The flags are the Config's fields: a bad value is a ConfigError before anything runs."""
    with pytest.raises(ConfigError, match="--trials"):
        vector.main(Settings.from_env({}), ["--trials", "3", "--json"])


def _tiny(vectors: list[list[float]], queries: list[list[float]]) -> vector._Data:
    n = len(vectors)
    v = np.asarray(vectors, dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    q = np.asarray(queries, dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return vector._Data(
        v, np.zeros(n, int), np.full(n, "image"), np.ones(n, bool), np.zeros(n, int), {"A": n}, q
    )


def test_recall_counts_a_duplicate_of_a_true_neighbour_and_never_a_hidden_row() -> None:
    # rows 0 and 1 are the same vector (a repeated caption); row 2 is far; row 3 is close but filtered out
    data = _tiny([[1, 0], [1, 0], [0, 1], [1, 0.01]], [[1, 0]])
    seen = np.array([True, True, True, False])
    truth = vector._truth(data, seen, 1)
    assert truth.matching == 3 and truth.kth[0] == pytest.approx(1.0)
    assert vector._recall(data, truth, 0, [0], 1) == 1.0
    assert vector._recall(data, truth, 0, [1], 1) == 1.0  # the tie is as good an answer
    assert vector._recall(data, truth, 0, [2], 1) == 0.0
    assert vector._recall(data, truth, 0, [3], 1) == 0.0  # closer than row 2, but the filter hides it
    assert vector._recall(data, truth, 0, [], 1) == 0.0
    two = vector._truth(data, seen, 2)
    assert vector._recall(data, two, 0, [0, 0], 2) == 0.5  # a row returned twice counts once
    assert vector._recall(data, two, 0, [1, 0], 2) == 1.0
    none = vector._truth(data, np.zeros(4, bool), 10)
    assert none.matching == 0 and vector._recall(data, none, 0, [], 10) == 1.0


def test_caption_data_embeds_each_distinct_caption_once_and_caches_it(tmp_path: Path) -> None:
    class Counting(HashingEmbedder):
        texts = 0

        def embed(self, texts: Sequence[str]) -> np.ndarray:
            Counting.texts += len(texts)
            return super().embed(texts)

    emb = Counting(384)
    data = vector.caption_data(5000, 30, 7, emb, tmp_path)
    assert data.vectors.shape == (5000, 384) and data.queries.shape == (30, 384)
    distinct = len(np.unique(data.vectors, axis=0))
    assert distinct < 5000  # captions repeat: exact ties exist
    assert Counting.texts <= distinct + 30 + 5  # each distinct caption once (plus the queries)
    again = vector.caption_data(5000, 30, 7, emb, tmp_path)
    assert Counting.texts <= distinct + 60 + 5  # the second call read the cache: only its queries
    assert np.array_equal(again.vectors, data.vectors) and np.array_equal(again.owner, data.owner)
    (cached,) = tmp_path.iterdir()
    whole = cached.read_bytes()
    cached.write_bytes(whole[: len(whole) // 2])  # a cache cut short is re-embedded, never trusted
    assert np.array_equal(vector.caption_data(5000, 30, 7, emb, tmp_path).vectors, data.vectors)
    cached.write_bytes(b"not a numpy file")
    assert np.array_equal(vector.caption_data(5000, 30, 7, emb, tmp_path).vectors, data.vectors)
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder would be")  # unwritable, even for root
    assert np.array_equal(vector.caption_data(5000, 30, 7, emb, blocked).vectors, data.vectors)
    with pytest.raises(ConfigError, match="distinct queries"):
        vector.caption_data(5000, 100_000, 7, emb, tmp_path)


def test_bench_vector_on_captions(
    base_settings: Settings, servers: Endpoints, capsys: pytest.CaptureFixture[str]
) -> None:
    s = base_settings.replace(embedder="hashing")
    argv = ["--rows", "3000", "--queries", "20", "--ef", "40", "--kinds", "halfvec", "--duration", "0.2"]
    assert vector.main(s, [*argv, "--data", "captions", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["data_kind"] == "captions" and out["model"].startswith("perflab-hashing")
    assert out["data"].startswith("captions: 3000 seeded captions")
    assert out["configs"][0]["recall_at_10"] == 1.0  # exact, scored with ties
    assert all(c["k_rows_whenever_k_match"] for c in out["filter_matrix"]["cells"] if c.get("measured", True))
    with pytest.raises(ConfigError, match="--data"):
        vector.Config(data="glove")


def test_best_within_picks_the_highest_recall_inside_the_latency_budget() -> None:
    configs = [
        {"index": "exact", "recall_at_10": 1.0, "p95_ms": 80.0},
        {"index": "hnsw", "recall_at_10": 0.93, "p95_ms": 2.1},
        {"index": "hnsw", "recall_at_10": 0.99, "p95_ms": 2.9},
        {"index": "hnsw", "recall_at_10": 0.99, "p95_ms": 2.5},
        {"index": "hnsw", "recall_at_10": 0.999, "p95_ms": 3.4},
    ]
    best = vector.best_within(configs, 3.0)
    assert best is not None and (best["recall_at_10"], best["p95_ms"]) == (0.99, 2.5)
    assert vector.best_within(configs, 100.0)["recall_at_10"] == 0.999  # type: ignore[index]  # exact is no HNSW setting
    assert vector.best_within(configs, 1.0) is None
