"""`perflab bench vector [--json] [--rows N]`: per-user vector search through perflab's VectorSearch.

Data: clustered synthetic unit vectors (gaussian blobs around random centres on the sphere), loaded
with perflab's binary COPY into a schema of the benchmark's own (`bench_vector_<pid>`, dropped at the
end). Queries are fresh draws from the same blobs. Ground truth is numpy brute force over exactly
the rows each query may see (the user's, after filters).

Layout of the `rows` rows: one large user (user A, ~80%), one mid-size user (10%), and small users of
100..8000 rows for the exact/HNSW crossover sweep; 5% of rows are videos and 2% are not `completed`.

Printed: `rows`, `dims`, `configs` (exact and HNSW at several ef_search, all searching user A: recall
@10, serial p50/p95/p99, closed-loop QPS at concurrency 1/4/8, index build time and size) and
`filtered` (per-user cases: small user, mid user, a selective media-type filter on user A, and the
crossover sweep that sets vector.EXACT_THRESHOLD; there, "hnsw" is the index path as the planner runs
it, and for the smallest libraries the planner itself prefers the user_id btree).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from perflab.config import Settings
from perflab.db import (
    MediaRow,
    NewMedia,
    SearchFilters,
    UserRow,
    VectorSearch,
    bulk_load,
    connect,
    drop_schema,
    make_pool,
    migrate,
)
from perflab.db.vector import EXACT_THRESHOLD
from perflab.servers.registry import endpoints

SWEEP_SIZES = (100, 250, 500, 1000, 2000, 4000, 8000)
MODEL = "bench-clustered"


@dataclass
class _Data:
    vectors: np.ndarray  # (rows, dims), unit rows
    owner: np.ndarray  # user index per row
    media_type: np.ndarray  # str per row
    completed: np.ndarray  # bool per row
    user_sizes: dict[str, int]  # name -> rows
    queries: np.ndarray


def clustered(
    n: int, dims: int, clusters: int, rng: np.random.Generator, centres: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """`n` unit vectors around `clusters` random unit centres (noise of norm ~0.8 before normalizing)."""
    if centres is None:
        centres = rng.standard_normal((clusters, dims)).astype(np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    pick = rng.integers(len(centres), size=n)
    noise = rng.standard_normal((n, dims)).astype(np.float32) * (0.8 / np.sqrt(dims))
    out = centres[pick] + noise
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out, centres


def _layout(rows: int) -> dict[str, int]:
    sweep = {f"sweep_{s}": s for s in SWEEP_SIZES if s <= rows // 12}
    mid = rows // 10
    big = rows - mid - sum(sweep.values())
    return {"A": big, "mid": mid, **sweep}


def make_data(rows: int, dims: int, queries: int, seed: int, clusters: int = 100) -> _Data:
    rng = np.random.default_rng(seed)
    vectors, centres = clustered(rows, dims, clusters, rng)
    sizes = _layout(rows)
    owner = np.repeat(np.arange(len(sizes)), list(sizes.values()))
    rng.shuffle(owner)  # interleave users in the heap, as uploads over time would
    media_type = np.where(rng.uniform(size=rows) < 0.05, "video", "image")
    completed = rng.uniform(size=rows) >= 0.02
    q, _ = clustered(queries, dims, clusters, rng, centres)
    return _Data(vectors, owner, media_type, completed, sizes, q)


def _truth(data: _Data, mask: np.ndarray, k: int) -> list[set[int]]:
    idx = np.flatnonzero(mask)
    sims = data.queries @ data.vectors[idx].T
    top = np.argpartition(-sims, min(k, len(idx) - 1), axis=1)[:, :k]
    return [set(idx[row].tolist()) for row in top]


def _percentiles(samples_ms: list[float]) -> dict[str, float]:
    a = np.asarray(samples_ms)
    return {f"p{p}_ms": round(float(np.percentile(a, p)), 3) for p in (50, 95, 99)}


def _qps(fn: Any, n_queries: int, threads: int, duration_s: float) -> float:
    stop = time.perf_counter() + duration_s
    counts = [0] * threads

    def loop(t: int) -> None:
        i = t
        while time.perf_counter() < stop:
            fn(i % n_queries)
            counts[t] += 1
            i += threads

    workers = [threading.Thread(target=loop, args=(t,)) for t in range(threads)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return round(sum(counts) / (time.perf_counter() - t0), 1)


def run(
    settings: Settings,
    *,
    rows: int,
    queries: int,
    seed: int,
    k: int,
    efs: list[int],
    duration_s: float,
    log: Any,
) -> dict[str, Any]:
    dims = settings.embedding_dim
    load_before = round(os.getloadavg()[0], 2)  # the machine is shared: say how busy it was
    schema = f"bench_vector_{os.getpid()}"
    s = settings.replace(db_schema=schema)
    url = endpoints(s).database_url
    data = make_data(rows, dims, queries, seed)
    user_ids = {name: uuid.UUID(int=i + 1) for i, name in enumerate(data.user_sizes)}
    names = list(data.user_sizes)
    media_ids = [uuid.UUID(int=(1 << 64) + i) for i in range(rows)]
    row_of = {m: i for i, m in enumerate(media_ids)}
    conn = connect(s, url)
    try:
        migrate(conn, s)
        users = [UserRow(id=user_ids[n], email=f"{n}@bench.invalid") for n in names]
        media = [
            MediaRow(
                user_ids[names[data.owner[i]]],
                NewMedia(
                    id=media_ids[i],
                    filename=f"b{i}.jpg",
                    media_type=str(data.media_type[i]),
                    status="completed" if data.completed[i] else "processing",
                ),
            )
            for i in range(rows)
        ]
        log(f"loading {rows} x {dims} into {schema} ...")
        load = bulk_load(
            conn,
            users=users,
            media=media,
            embeddings=data.vectors,
            model_name=MODEL,
            rebuild_vector_index=True,
            progress=False,
        )
        t0 = time.perf_counter()
        conn.execute("REINDEX INDEX idx_media_embeddings_filter")
        btree_s = time.perf_counter() - t0
        size = dict(
            conn.execute(
                "SELECT c.relname, pg_relation_size(c.oid) FROM pg_class c"
                " WHERE c.relname IN ('idx_media_embeddings_hnsw', 'idx_media_embeddings_filter')"
                " AND c.relnamespace = %s::regnamespace",
                (schema,),
            ).fetchall()
        )
        versions = conn.execute(
            "SELECT current_setting('server_version'), (SELECT extversion FROM pg_extension WHERE extname = 'vector')"
        ).fetchone()
        hnsw_opts = conn.execute(
            "SELECT reloptions FROM pg_class WHERE relname = 'idx_media_embeddings_hnsw' AND relnamespace = %s::regnamespace",
            (schema,),
        ).fetchone()
        with make_pool(s, url, min_size=8, max_size=8, open=True) as pool:
            vs = VectorSearch(pool, dim=dims)
            completed = data.completed

            def measure(
                user: str,
                path: str,
                ef: int | None,
                filters: SearchFilters | None,
                mask: np.ndarray,
                n_q: int,
                concurrency: bool,
            ) -> dict[str, Any]:
                truth = _truth(data, mask, k)
                uid = user_ids[user]

                def one(i: int) -> list[Any]:
                    return vs.search(uid, data.queries[i], k, filters, ef_search=ef, path=path)  # type: ignore[arg-type]

                for i in range(min(10, n_q)):
                    one(i)
                lat, recall, shortest = [], [], k
                for i in range(n_q):
                    t = time.perf_counter()
                    hits = one(i)
                    lat.append((time.perf_counter() - t) * 1000)
                    got = {row_of[h.media_id] for h in hits}
                    assert all(data.owner[r] == names.index(user) for r in got), (
                        "another user's media returned"
                    )
                    recall.append(len(got & truth[i]) / k)
                    shortest = min(shortest, len(hits))
                out: dict[str, Any] = {
                    "recall_at_10": round(float(np.mean(recall)), 4),
                    **_percentiles(lat),
                    "min_results": shortest,
                }
                if concurrency:
                    for c in (1, 4, 8):
                        out[f"qps_c{c}"] = _qps(one, n_q, c, duration_s)
                return out

            mine_a = (data.owner == names.index("A")) & completed
            configs: list[dict[str, Any]] = []
            log("exact ...")
            r = measure("A", "exact", None, None, mine_a, min(queries, 40), True)
            r.pop("min_results")
            configs.append(
                {
                    "index": "exact",
                    "ef_search": None,
                    **r,
                    "build_s": round(btree_s, 3),
                    "index_mb": round(size.get("idx_media_embeddings_filter", 0) / 2**20, 2),
                }
            )
            for ef in efs:
                log(f"hnsw ef_search={ef} ...")
                r = measure("A", "hnsw", ef, None, mine_a, queries, True)
                r.pop("min_results")
                configs.append(
                    {
                        "index": "hnsw",
                        "ef_search": ef,
                        **r,
                        "build_s": round(load.index_s, 2),
                        "index_mb": round(size.get("idx_media_embeddings_hnsw", 0) / 2**20, 2),
                    }
                )

            log("filtered ...")
            n_f = min(queries, 100)
            cases = []
            small = next(
                (n for n in names if n.startswith("sweep_") and data.user_sizes[n] >= 500), names[-1]
            )
            for case, user, flt, extra in (
                ("small_user", small, None, None),
                ("mid_user", "mid", None, None),
                ("A_videos_only", "A", SearchFilters(media_type="video"), data.media_type == "video"),
            ):
                mask = (data.owner == names.index(user)) & completed
                if extra is not None:
                    mask &= extra
                r = measure(user, "auto", None, flt, mask, n_f, False)
                cases.append(
                    {
                        "case": case,
                        "user_rows": data.user_sizes[user],
                        "matching_rows": int(mask.sum()),
                        "selectivity": round(float(mask.sum()) / rows, 4),
                        "path": vs.path_for(user_ids[user]),
                        **r,
                    }
                )
            sweep = []
            for name in names:
                if not name.startswith("sweep_"):
                    continue
                mask = (data.owner == names.index(name)) & completed
                entry: dict[str, Any] = {"user_rows": data.user_sizes[name]}
                for path in ("exact", "hnsw"):
                    r = measure(name, path, None, None, mask, min(queries, 60), False)
                    entry[path] = {
                        "recall_at_10": r["recall_at_10"],
                        "p50_ms": r["p50_ms"],
                        "p95_ms": r["p95_ms"],
                    }
                sweep.append(entry)
    finally:
        drop_schema(conn, schema)
        conn.close()
    return {
        "rows": rows,
        "dims": dims,
        "data": f"clustered synthetic: {rows} unit vectors in 100 gaussian clusters, seed {seed}; "
        f"{queries} held-out queries from the same clusters; ground truth = numpy brute force",
        "k": k,
        "search": "perflab.db.VectorSearch.search (pooled psycopg, prepared statements, SET LOCAL ef_search)",
        "configs_user": f"user A owns {data.user_sizes['A']} of {rows} rows; the HNSW graph holds all rows",
        "configs": configs,
        "filtered": {
            "exact_threshold": EXACT_THRESHOLD,
            "default_ef_search": vs.ef_search,
            "cases": cases,
            "sweep": sweep,
        },
        "load": {
            "copy_s": round(load.copy_s, 2),
            "hnsw_build_s": round(load.index_s, 2),
            "maintenance_work_mem": load.maintenance_work_mem,
            "hnsw_options": hnsw_opts[0] if hnsw_opts else None,
        },
        "server": {
            "postgres": versions[0] if versions else None,
            "pgvector": versions[1] if versions else None,
            "cpus": os.cpu_count(),
            "loadavg_1m_before_after": [load_before, round(os.getloadavg()[0], 2)],
        },
    }


def main(settings: Settings, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="perflab bench vector", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rows",
        type=int,
        default=20_000,
        help="rows in the table (default 20000; the README figures are at 100000)",
    )
    parser.add_argument("--queries", type=int, default=200, help="query vectors (default 200)")
    parser.add_argument("--ef", default="40,100,200", help="comma-separated hnsw.ef_search values")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per concurrency level for QPS")
    parser.add_argument("--json", action="store_true", help="print one JSON object (otherwise a table)")
    args = parser.parse_args(argv)
    if args.rows < 1000:
        parser.error("--rows must be at least 1000")
    efs = [int(x) for x in args.ef.split(",") if x.strip()]
    quiet = args.json

    def log(msg: str) -> None:
        if not quiet:
            print(msg, flush=True)

    result = run(
        settings,
        rows=args.rows,
        queries=args.queries,
        seed=args.seed,
        k=args.k,
        efs=efs,
        duration_s=args.duration,
        log=log,
    )
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{result['rows']} x {result['dims']}  ({result['data']})")
    print(
        f"{'index':6} {'ef':>4} {'recall':>7} {'p50':>7} {'p95':>7} {'p99':>7} {'qps1':>7} {'qps4':>7} {'qps8':>7} {'build_s':>8} {'MB':>7}"
    )
    for c in result["configs"]:
        print(
            f"{c['index']:6} {c['ef_search'] or '-':>4} {c['recall_at_10']:7.4f} {c['p50_ms']:7.2f} {c['p95_ms']:7.2f}"
            f" {c['p99_ms']:7.2f} {c['qps_c1']:7.0f} {c['qps_c4']:7.0f} {c['qps_c8']:7.0f} {c['build_s']:8.2f} {c['index_mb']:7.1f}"
        )
    for c in result["filtered"]["cases"]:
        print(
            f"filtered {c['case']:14} rows={c['user_rows']:<6} path={c['path']:5} recall={c['recall_at_10']:.4f} p95={c['p95_ms']:.2f} ms min_results={c['min_results']}"
        )
    for e in result["filtered"]["sweep"]:
        print(
            f"sweep {e['user_rows']:>5} rows: exact p50 {e['exact']['p50_ms']:.2f} ms (recall {e['exact']['recall_at_10']:.3f}), hnsw p50 {e['hnsw']['p50_ms']:.2f} ms (recall {e['hnsw']['recall_at_10']:.3f})"
        )
    return 0
