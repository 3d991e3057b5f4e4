"""`perflab bench vector [--json] [--rows N]`: per-user vector search through perflab's VectorSearch,
timed side by side with a raw psycopg + pgvector loop on the same table.

On the measurement contract (perflab/bench/contract.py): `Config` holds every knob (its fields are the
flags: `--rows --queries --ef --k --seed --duration --trials --kinds --batch-rows --parallel-workers`),
`run(settings, cfg) -> Result`; notebook 04 and `perflab bench vector` call the same `run`.

Data (`--data`), loaded with perflab's binary COPY into a schema of the benchmark's own
(`bench_vector_<pid>`, dropped at the end; nothing else is read or written):
- `clustered` (default): synthetic unit vectors, gaussian blobs around 100 random centres on the
  sphere; queries are fresh draws from the same blobs. Isotropic noise in 384 dimensions makes a
  point's neighbours within its blob nearly equidistant: a worst case for a graph index.
- `captions`: what the service searches: the seeded library's captions (perflab/db/vocabulary.py,
  the same generator as `perflab db seed`) through the configured embedder, each distinct caption
  embedded once (and cached under `<home>/cache/bench_vector/`), and queries drawn from the seeded
  query vocabulary, embedded by the same model. Captions repeat (about 420k distinct in 1M rows), so
  there are exact ties.
Ground truth is numpy brute force over exactly the rows each query may see (the user's, after
filters). recall@10 counts a returned row as a true neighbour when it may be seen and its similarity
is at least the 10th best's (less `TIE_EPS`): a duplicate of a true neighbour is as good an answer,
which is how ann-benchmarks scores ties. Without ties this is the overlap with the true top 10.

Layout of the `rows` rows: user A (50 %), user B (10 %), user C (1 %), and small users of 100..8000
rows for the exact/HNSW crossover sweep; the rest belongs to filler users. 5 % of rows are videos,
2 % are not `completed`, upload dates are uniform over a year.

Printed (one JSON object with --json, perflab/bench/contract.py's envelope):
- `configs`: exact, and HNSW over the halfvec index (the schema's default, migration 0005) and over a
  `vector` index at each ef_search, all searching user A: recall@10, serial p50/p95/p99 (medians of
  `trials` trials), QPS at concurrency 1/4/8, build time, index size; beside each, the raw loop's p95
  measured in the same trials, interleaved (perflab, raw, perflab, raw ...), and `p95_vs_raw`.
  QPS is measured in `trials` trials per concurrency level, interleaved (c1, c4, c8, c1, ...), each
  trial a closed loop of `duration_s / trials` seconds (so `--duration` is still the time spent per
  level) and a measured phase (`<config>_qps_c<N>`: CPU per query, noise); `qps_cN` is the median of
  the trials, `qps_cN_ci95` its 95 % CI and `qps_cN_trials` the trial values.
- `filter_matrix`: a user filter (users C / B / A, 1 / 10 / 50 % of the table) and a type + date
  filter on user A (images in a date window keeping 1 / 10 / 50 / 99 % of A's rows), each cell: the
  route, min rows returned, recall@10, p99 and p99 / unfiltered p99.
- `filtered`: small/mid user and video-only cases, and the crossover sweep behind EXACT_THRESHOLD.
- `residency`: shared_buffers, index sizes and each HNSW index's buffer hit ratio during the configs.
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import numpy as np

from perflab.bench.contract import MIN_TRIALS, Phase, Result, cli, estimate, interleave, percentile_estimate
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
from perflab.db.indexes import (
    FLOAT_HNSW_INDEX,
    BlockingProbe,
    build_indexes,
    index_block_reads,
    index_options,
    index_sizes,
    maintenance_work_mem_for,
    reindex,
    table_size,
)
from perflab.db.seed import embed_captions
from perflab.db.vector import EXACT_THRESHOLD, IndexKind, raw_knn_hits_sql, raw_knn_sql, raw_session
from perflab.db.versions import server_versions
from perflab.db.vocabulary import QueryVocabulary, caption_for
from perflab.embed import Embedder, make_embedder
from perflab.errors import ConfigError
from perflab.lab.cpu import lab_sources
from perflab.lab.latency import LatencyHistogram
from perflab.lab.provenance import collect
from perflab.servers.registry import endpoints

SWEEP_SIZES = (100, 250, 500, 1000, 2000, 4000, 8000)
MODEL = "bench-clustered"
DATA = ("clustered", "captions")
TIE_EPS = 1e-5  # cosine similarities this close are a tie: far below halfvec's ~1e-3 resolution
T0 = datetime(2025, 1, 1, tzinfo=UTC)
MATRIX_SHARES = (0.01, 0.10, 0.50, 0.99)
VECTOR_INDEX = FLOAT_HNSW_INDEX.name
BATCH_ROWS = 50_000  # committed COPY batches above 200k rows (bulk.py: no load-long transaction)
KINDS: tuple[IndexKind, ...] = ("halfvec", "vector")
CONCURRENCY = (1, 4, 8)


@dataclass(frozen=True)
class Config:
    rows: int = field(
        default=20_000, metadata={"help": "rows in the table (>= 1000; the README figures are at 100000)"}
    )
    queries: int = field(default=200, metadata={"help": "query vectors"})
    ef: str = field(default="40,100,200", metadata={"help": "comma-separated hnsw.ef_search values"})
    k: int = 10
    seed: int = 42
    duration_s: float = field(
        default=2.0,
        metadata={
            "flag": "--duration",
            "help": "seconds per concurrency level for QPS, shared by its trials",
        },
    )
    trials: int = field(default=MIN_TRIALS, metadata={"help": "interleaved trials per measurement (>= 5)"})
    kinds: str = field(
        default="",
        metadata={"help": "HNSW index kinds: halfvec,vector (default both up to 200k rows, then halfvec)"},
    )
    batch_rows: int = field(
        default=0,
        metadata={
            "help": f"commit the load every N rows (0: {BATCH_ROWS} above 200k rows, else one transaction)"
        },
    )
    parallel_workers: int = field(default=1, metadata={"help": "parallel workers for the index builds"})
    data: str = field(
        default="clustered",
        metadata={
            "help": "clustered (gaussian blobs, a graph index's worst case) or captions (the seeded"
            " library's captions and queries through the configured embedder)"
        },
    )

    def __post_init__(self) -> None:
        if self.rows < 1000:
            raise ConfigError(f"--rows must be at least 1000, not {self.rows}")
        if self.data not in DATA:
            raise ConfigError(f"--data takes {' or '.join(DATA)}, not {self.data!r}")
        if self.trials < MIN_TRIALS:
            raise ConfigError(f"--trials must be at least {MIN_TRIALS}, not {self.trials}")
        try:
            efs = self.efs
        except ValueError:
            raise ConfigError(f"--ef takes comma-separated integers, not {self.ef!r}") from None
        if not efs:
            raise ConfigError("--ef names no ef_search value")
        if not set(self.kind_list) <= set(KINDS):
            raise ConfigError(f"--kinds takes halfvec and/or vector, not {self.kinds!r}")

    @property
    def efs(self) -> list[int]:
        return [int(x) for x in self.ef.split(",") if x.strip()]

    @property
    def kind_list(self) -> list[str]:
        return [x.strip() for x in self.kinds.split(",") if x.strip()]

    def index_kinds(self) -> tuple[IndexKind, ...]:
        """The HNSW kinds measured: as asked, else both up to 200k rows, then halfvec only."""
        if self.kind_list:
            return tuple(cast(IndexKind, x) for x in self.kind_list)
        return KINDS if self.rows <= 200_000 else ("halfvec",)

    def load_batch(self) -> int | None:
        """Rows per committed COPY batch, None for one transaction."""
        if self.batch_rows > 0:
            return self.batch_rows
        return BATCH_ROWS if self.rows > 200_000 else None


@dataclass
class _Data:
    vectors: np.ndarray  # (rows, dims), unit rows
    owner: np.ndarray  # user index per row
    media_type: np.ndarray  # str per row
    completed: np.ndarray  # bool per row
    uploaded: np.ndarray  # seconds after T0 per row
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
    a, b, c = rows // 2, rows // 10, rows // 100
    rest = rows - a - b - c - sum(sweep.values())
    filler = {f"filler_{i}": rest // 4 + (1 if i < rest % 4 else 0) for i in range(4)}
    return {"A": a, "mid": b, "C": c, **sweep, **{k: v for k, v in filler.items() if v}}


def _rows(
    rows: int, rng: np.random.Generator
) -> tuple[dict[str, int], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Both data kinds' rows: (user sizes, owner, media type, completed, uploaded) per row."""
    sizes = _layout(rows)
    owner = np.repeat(np.arange(len(sizes)), list(sizes.values()))
    rng.shuffle(owner)  # interleave users in the heap, as uploads over time would
    media_type = np.where(rng.uniform(size=rows) < 0.05, "video", "image")
    completed = rng.uniform(size=rows) >= 0.02
    uploaded = rng.integers(0, 365 * 86400, size=rows)  # whole seconds: date bounds compare exactly
    return sizes, owner, media_type, completed, uploaded


def make_data(rows: int, dims: int, queries: int, seed: int, clusters: int = 100) -> _Data:
    rng = np.random.default_rng(seed)
    vectors, centres = clustered(rows, dims, clusters, rng)
    sizes, owner, media_type, completed, uploaded = _rows(rows, rng)
    q, _ = clustered(queries, dims, clusters, rng, centres)
    return _Data(vectors, owner, media_type, completed, uploaded, sizes, q)


def caption_data(rows: int, queries: int, seed: int, embedder: Embedder, cache: Path) -> _Data:
    """The `captions` data: the seeder's captions over the same layout as `make_data`, embedded once
    per distinct caption (the vectors cached in `cache` by model, seed and rows), and queries drawn
    without replacement from the seeded query vocabulary."""
    rng = np.random.default_rng([seed, 1_000_003])
    sizes, owner, media_type, completed, uploaded = _rows(rows, rng)
    captions = [caption_for(rng, str(t))[0] for t in media_type]
    vocabulary = QueryVocabulary(seed).queries
    if queries > len(vocabulary):
        raise ConfigError(
            f"--data captions has {len(vocabulary)} distinct queries, fewer than --queries {queries}"
        )
    texts = [vocabulary[i] for i in rng.choice(len(vocabulary), size=queries, replace=False)]
    path = cache / f"{embedder.model_name.replace('/', '_')}-seed{seed}-rows{rows}.npy"
    vectors = _cached_vectors(path, rows, embedder.dim)
    if vectors is None:
        vectors = embed_captions(embedder, captions, batch_size=256)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        try:
            cache.mkdir(parents=True, exist_ok=True)
            with tmp.open("wb") as f:
                np.save(f, vectors)
            tmp.replace(path)  # whole or absent: a run killed mid-write leaves no half file
        except OSError:  # a full or read-only disk costs the next run the embedding, not this run
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
    return _Data(vectors, owner, media_type, completed, uploaded, sizes, embedder.embed(texts))


def _cached_vectors(path: Path, rows: int, dim: int) -> np.ndarray | None:
    """The cached caption vectors, or None when absent or not what this run needs (then re-embedded)."""
    try:
        out = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):  # absent, not a numpy file, or cut short
        return None
    ok = out.dtype == np.float32 and out.shape == (rows, dim) and bool(np.isfinite(out).all())
    return out if ok else None


@dataclass
class _Truth:
    """The exact answer per query over the rows a filter lets it see."""

    mask: np.ndarray  # bool per row: may this query's filter see it
    kth: np.ndarray  # the k-th best similarity per query (-inf when nothing matches)
    matching: int  # rows the filter lets through


def _truth(data: _Data, mask: np.ndarray, k: int) -> _Truth:
    idx = np.flatnonzero(mask)
    nq = len(data.queries)
    if idx.size == 0:
        return _Truth(mask, np.full(nq, -np.inf), 0)
    sims = data.queries @ data.vectors[idx].T
    kk = min(k, idx.size)
    top = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
    kth = np.take_along_axis(sims, top, axis=1).min(axis=1)
    return _Truth(mask, kth, int(idx.size))


def _recall(data: _Data, truth: _Truth, i: int, got: list[int], k: int) -> float:
    """recall@k of query i's answer `got` (rows), ties counted as hits (see the module docstring)."""
    if truth.matching == 0:
        return 1.0
    kk = min(k, truth.matching)
    rows = np.fromiter(dict.fromkeys(got), dtype=np.int64)
    if rows.size == 0:
        return 0.0
    seen = rows[truth.mask[rows]]  # a row the filter should have hidden is never a hit
    sims = data.vectors[seen] @ data.queries[i]
    return min(int((sims >= truth.kth[i] - TIE_EPS).sum()), kk) / kk


def _qps(fn: Any, n_queries: int, threads: int, duration_s: float) -> tuple[float, int]:
    """One QPS trial: `threads` closed loops for `duration_s` (each runs at least one query);
    returns (queries per second, queries run)."""
    stop = time.perf_counter() + duration_s
    counts = [0] * threads

    def loop(t: int) -> None:
        i = t
        while True:
            fn(i % n_queries)
            counts[t] += 1
            i += threads
            if time.perf_counter() >= stop:
                break

    workers = [threading.Thread(target=loop, args=(t,)) for t in range(threads)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return round(sum(counts) / (time.perf_counter() - t0), 1), sum(counts)


def _serial(fn: Callable[[int], Any], n: int, check: Callable[[int, Any], None]) -> LatencyHistogram:
    """One trial: queries 0..n-1 one after another, each latency recorded; `check(i, answer)` runs
    after the trial, so what a result is checked against costs the timed loop nothing."""
    hist = LatencyHistogram()
    answers = []
    for i in range(n):
        t = time.perf_counter_ns()
        answers.append(fn(i))
        hist.record_ns(time.perf_counter_ns() - t)
    for i, answer in enumerate(answers):
        check(i, answer)
    return hist


def _window(data: _Data, mine: np.ndarray, share: float) -> tuple[datetime, datetime]:
    """A date window keeping about `share` of the rows in `mine` (centred in the year)."""
    days = np.sort(data.uploaded[mine])
    n = max(1, round(share * days.size))
    start = (days.size - n) // 2
    lo, hi = days[start], days[min(start + n - 1, days.size - 1)]
    return T0 + timedelta(seconds=float(lo)), T0 + timedelta(seconds=float(hi))


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)  # stdout carries the one JSON line


def run(settings: Settings, cfg: Config, *, log: Callable[[str], None] = _log) -> Result:
    """Load, build, measure; `result.envelope()` is the JSON (legacy keys + contract figures)."""
    rows, queries, seed, k, trials = cfg.rows, cfg.queries, cfg.seed, cfg.k, cfg.trials
    efs, duration_s, parallel_workers = cfg.efs, cfg.duration_s, cfg.parallel_workers
    dims = settings.embedding_dim
    kinds = cfg.index_kinds()
    load_before = round(os.getloadavg()[0], 2)  # the machine is shared: say how busy it was
    schema = f"bench_vector_{os.getpid()}"
    s = settings.replace(db_schema=schema)
    url = endpoints(s).database_url
    if cfg.data == "captions":
        embedder = make_embedder(settings, threads=os.cpu_count() or 1)  # as seeding: every core
        model = embedder.model_name
        cache = settings.home / "cache" / "bench_vector"
        log(f"captions data: embedding with {model} (cached under {cache}) ...")
        data = caption_data(rows, queries, seed, embedder, cache)
    else:
        model = MODEL
        data = make_data(rows, dims, queries, seed)
    user_ids = {name: uuid.UUID(int=i + 1) for i, name in enumerate(data.user_sizes)}
    names = list(data.user_sizes)
    media_ids = [uuid.UUID(int=(1 << 64) + i) for i in range(rows)]
    row_of = {m: i for i, m in enumerate(media_ids)}
    result = Result("vector", {**asdict(cfg), "efs": efs, "kinds": list(kinds)}, provenance=collect(settings))
    sources = lab_sources(settings)
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
                    uploaded_at=T0 + timedelta(seconds=int(data.uploaded[i])),
                ),
            )
            for i in range(rows)
        ]
        batch = cfg.load_batch()
        log(
            f"loading {rows} x {dims} into {schema} ({'one transaction' if batch is None else f'batches of {batch}'}) ..."
        )
        t_load = time.perf_counter()
        probe_conn = connect(s, url)
        try:
            with BlockingProbe(probe_conn, schema) as probe:
                load = bulk_load(
                    conn,
                    users=users,
                    media=media,
                    embeddings=data.vectors,
                    model_name=model,
                    rebuild_vector_index=True,
                    progress=False,
                    parallel_workers=parallel_workers,
                    batch_rows=batch,
                )
        finally:
            probe_conn.close()
        log(f"loaded: copy {load.copy_s:.1f} s, hnsw {load.index_s:.1f} s, probe {probe.summary()}")
        del media, users
        vector_build_s = None
        if "vector" in kinds:
            log("building the vector (float32) HNSW index beside the halfvec one ...")
            vector_build_s = build_indexes(
                conn,
                [FLOAT_HNSW_INDEX],
                maintenance_work_mem=maintenance_work_mem_for(rows, dims),
                parallel_workers=parallel_workers,
            )  # fmt: skip
        btree_s = reindex(conn, "idx_media_embeddings_filter")
        load_wall_s = time.perf_counter() - t_load
        size = index_sizes(conn)
        table_bytes = table_size(conn)
        versions = server_versions(conn)
        hnsw_opts = index_options(conn, "idx_media_embeddings_hnsw")
        index_name = {"halfvec": "idx_media_embeddings_hnsw", "vector": VECTOR_INDEX}
        build_s = {"halfvec": load.index_s, "vector": vector_build_s}
        raw = connect(s, url)  # the raw loop's own connection, autocommit, session settings
        with make_pool(s, url, min_size=8, max_size=8, open=True) as pool:
            searchers = {kind: VectorSearch(pool, dim=dims, index=kind) for kind in kinds}
            vs = searchers[kinds[0]]
            completed = data.completed

            def recall_of(hits: list[Any], truth: _Truth, i: int, user: str) -> float:
                got = [row_of[h.media_id] for h in hits]
                assert all(data.owner[r] == names.index(user) for r in got), "another user's media returned"
                return _recall(data, truth, i, got, k)

            def measure(
                user: str,
                path: str,
                ef: int | None,
                filters: SearchFilters | None,
                mask: np.ndarray,
                n_q: int,
                concurrency: bool,
                searcher: VectorSearch | None = None,
                raw_kind: IndexKind | None = None,
                label: str = "",
            ) -> dict[str, Any]:
                """`trials` interleaved trials of n_q serial queries (perflab, then raw when asked)."""
                truth = _truth(data, mask, k)
                uid = user_ids[user]
                sv = searcher or vs
                recall: list[float] = []
                shortest = [k]
                routes: list[Any] = []

                def one(i: int) -> list[Any]:
                    hits, route = sv.search_routed(uid, data.queries[i], k, filters, ef_search=ef, path=path)  # type: ignore[arg-type]
                    routes.append(route)
                    return hits

                def checked(i: int, hits: list[Any]) -> None:
                    recall.append(recall_of(hits, truth, i, user))
                    shortest[0] = min(shortest[0], len(hits))

                raw_sql = raw_knn_sql(raw_kind, dims).encode() if raw_kind else b""
                hits_sql = raw_knn_hits_sql(raw_kind, dims).encode() if raw_kind else b""
                raw_recall: list[float] = []

                def raw_query(sql: bytes) -> Callable[[int], list[Any]]:
                    def go(i: int) -> list[Any]:
                        return raw.execute(
                            sql, {"u": uid, "q": data.queries[i], "k": k}, prepare=True
                        ).fetchall()

                    return go

                def raw_checked(i: int, got: list[Any]) -> None:
                    raw_recall.append(_recall(data, truth, i, [row_of[g[0]] for g in got], k))

                for i in range(min(10, n_q)):  # warm all
                    one(i)
                    if raw_kind:
                        raw_query(raw_sql)(i)
                        raw_query(hits_sql)(i)
                arms: dict[str, Callable[[int], LatencyHistogram]] = {}

                def mine(i: int) -> LatencyHistogram:
                    with Phase(f"search{label}", sources) as ph:
                        h = _serial(one, n_q, checked)
                    result.add_phase(ph.finish(n_q))
                    return h

                arms["perflab"] = mine
                if raw_kind:
                    raw_session(raw, ef)
                    arms["raw"] = lambda i: _serial(raw_query(raw_sql), n_q, raw_checked)
                    arms["raw_hits"] = lambda i: _serial(raw_query(hits_sql), n_q, lambda i, got: None)
                runs = interleave(arms, trials)
                est = {p: percentile_estimate(runs["perflab"], p) for p in (50, 95, 99)}
                out: dict[str, Any] = {
                    "recall_at_10": round(float(np.mean(recall)), 4),
                    **{f"p{p}_ms": e.median for p, e in est.items()},
                    "min_results": shortest[0],
                    "p95_ci95": list(est[95].ci95),
                    "p99_ci95": list(est[99].ci95),
                    "trials": trials,
                    "samples_per_trial": n_q,
                    "route": routes[-1].path if routes else None,
                    "route_ef": routes[-1].ef if routes else None,
                    "route_threshold": routes[-1].threshold if routes else None,
                }
                if label:
                    result.estimates[f"{label}_p95_ms"] = est[95]
                    result.estimates[f"{label}_p99_ms"] = est[99]
                if raw_kind:
                    raw95 = percentile_estimate(runs["raw"], 95)
                    ratio = estimate([a.percentile_ms(95) / b.percentile_ms(95)
                                      for a, b in zip(runs["perflab"], runs["raw"], strict=True)])  # fmt: skip
                    hits95 = percentile_estimate(runs["raw_hits"], 95)
                    vs_hits = estimate([a.percentile_ms(95) / b.percentile_ms(95)
                                        for a, b in zip(runs["perflab"], runs["raw_hits"], strict=True)])  # fmt: skip
                    out.update({"raw_recall_at_10": round(float(np.mean(raw_recall)), 4),
                                "raw_p95_ms": raw95.median, "raw_p95_ci95": list(raw95.ci95),
                                "p95_vs_raw": round(ratio.median, 3),
                                "p95_vs_raw_ci95": [round(x, 3) for x in ratio.ci95],
                                "raw_hits_p95_ms": hits95.median, "raw_hits_p95_ci95": list(hits95.ci95),
                                "p95_vs_raw_hits": round(vs_hits.median, 3),
                                "p95_vs_raw_hits_ci95": [round(x, 3) for x in vs_hits.ci95]})  # fmt: skip
                    if label:
                        result.estimates[f"{label}_raw_p95_ms"] = raw95
                        result.estimates[f"{label}_p95_vs_raw"] = ratio
                        result.estimates[f"{label}_raw_hits_p95_ms"] = hits95
                        result.estimates[f"{label}_p95_vs_raw_hits"] = vs_hits
                if concurrency:
                    out.update(qps(one, n_q, label))
                return out

            def qps(one: Callable[[int], Any], n_q: int, label: str) -> dict[str, Any]:
                """`trials` QPS trials per concurrency level, interleaved, each a measured phase."""

                def level(c: int) -> Callable[[int], float]:
                    def go(i: int) -> float:
                        with Phase(f"{label}_qps_c{c}", sources) as ph:
                            rate, done = _qps(one, n_q, c, duration_s / trials)
                        result.add_phase(ph.finish(done))
                        return rate

                    return go

                runs = interleave({f"qps_c{c}": level(c) for c in CONCURRENCY}, trials)
                out: dict[str, Any] = {}
                for key, rates in runs.items():
                    e = estimate(rates, noisy=result.phase_noisy(f"{label}_{key}"))
                    out[key] = round(e.median, 1)
                    out[f"{key}_ci95"] = [round(x, 1) for x in e.ci95]
                    out[f"{key}_trials"] = list(e.trials)
                    result.estimates[f"{label}_{key}"] = e
                return out

            mine_a = (data.owner == names.index("A")) & completed
            configs: list[dict[str, Any]] = []
            legacy_keys = ("recall_at_10", "p50_ms", "p95_ms", "p99_ms", "qps_c1", "qps_c4", "qps_c8",
                           *(f"qps_c{c}_{x}" for c in CONCURRENCY for x in ("ci95", "trials")))  # fmt: skip
            log("exact ...")
            r = measure("A", "exact", None, None, mine_a, min(queries, 40), True, label="exact")
            configs.append({"index": "exact", "ef_search": None, **{x: r[x] for x in legacy_keys},
                            "build_s": round(btree_s, 3),
                            "index_mb": round(size.get("idx_media_embeddings_filter", 0) / 2**20, 2),
                            "vector_type": None, "p95_ci95": r["p95_ci95"], "trials": trials})  # fmt: skip
            hits_before = index_block_reads(conn)
            for kind in kinds:
                for ef in efs:
                    log(f"hnsw {kind} ef_search={ef} ...")
                    r = measure("A", "hnsw", ef, None, mine_a, queries, True, searchers[kind], kind,
                                label=f"hnsw_{kind}_ef{ef}")  # fmt: skip
                    configs.append({"index": "hnsw", "ef_search": ef, **{x: r[x] for x in legacy_keys},
                                    "build_s": round(build_s[kind] or 0.0, 2),
                                    "index_mb": round(size.get(index_name[kind], 0) / 2**20, 2),
                                    "vector_type": kind,
                                    **{x: r[x] for x in ("p95_ci95", "trials", "raw_recall_at_10", "raw_p95_ms", "raw_p95_ci95",
                                                         "p95_vs_raw", "p95_vs_raw_ci95", "raw_hits_p95_ms", "raw_hits_p95_ci95",
                                                         "p95_vs_raw_hits", "p95_vs_raw_hits_ci95")}})  # fmt: skip
            time.sleep(1.2)  # let the pool's backends flush their I/O counters
            hits_after = index_block_reads(conn)
            residency: dict[str, Any] = {"shared_buffers": versions.shared_buffers, "effective_cache_size": versions.effective_cache_size,
                                         "index_mb": {n: round(b / 2**20, 2) for n, b in sorted(size.items())},
                                         "buffer_hit_ratio": {}}  # fmt: skip
            for kind in kinds:
                n = index_name[kind]
                h0, r0 = hits_before.get(n, (0, 0))
                h1, r1 = hits_after.get(n, (0, 0))
                dh, dr = h1 - h0, r1 - r0
                residency["buffer_hit_ratio"][n] = round(dh / (dh + dr), 5) if dh + dr else None

            log("filter matrix ...")
            n_f = min(queries, 100)
            base = measure("A", "auto", None, None, mine_a, n_f, False, label="matrix_unfiltered")
            cells: list[dict[str, Any]] = []
            user_of_share = {0.01: "C", 0.10: "mid", 0.50: "A"}
            for share in MATRIX_SHARES:
                user = user_of_share.get(share)
                if user is not None and user in names:
                    mask = (data.owner == names.index(user)) & completed
                    r = measure(
                        user, "auto", None, None, mask, n_f, False, label=f"matrix_user_{round(share * 100)}"
                    )
                    cells.append(_cell("user", share, int(mask.sum()), rows, r, base))
                else:
                    cells.append({"filter": "user", "target_share": share, "measured": False,
                                  "why": "a user owning 99 % of the table leaves no room for users A, B and C"
                                         " in the same table; the type/date column covers the near-unfiltered end"})  # fmt: skip
                lo, hi = _window(data, mine_a & (data.media_type == "image"), share)
                f = SearchFilters(media_type="image", date_from=lo, date_to=hi)
                up = T0 + np.array([timedelta(seconds=int(x)) for x in data.uploaded[mine_a]])
                mask = mine_a.copy()
                mask[mine_a] = (data.media_type[mine_a] == "image") & (up >= lo) & (up <= hi)
                r = measure(
                    "A", "auto", None, f, mask, n_f, False, label=f"matrix_type_date_{round(share * 100)}"
                )
                cells.append(_cell("type_date", share, int(mask.sum()), rows, r, base))

            log("filtered ...")
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
                        "path": vs.path_for(user_ids[user], flt),
                        **{x: r[x] for x in ("recall_at_10", "p50_ms", "p95_ms", "p99_ms", "min_results")},
                    }
                )
            log("exact/HNSW crossover sweep ...")
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
        raw.close()
    finally:
        drop_schema(conn, schema)
        conn.close()
    result.legacy = {
        "rows": rows,
        "dims": dims,
        "data": (
            f"clustered synthetic: {rows} unit vectors in 100 gaussian clusters, seed {seed}; "
            f"{queries} held-out queries from the same clusters; ground truth = numpy brute force"
            if cfg.data == "clustered"
            else f"captions: {rows} seeded captions (seed {seed}) embedded by {model}; {queries} queries from"
            " the seeded query vocabulary, same model; ground truth = numpy brute force, ties counted as hits"
        ),
        "data_kind": cfg.data,
        "model": model,
        "k": k,
        "search": "perflab.db.VectorSearch.search (pooled psycopg, session ef_search sent when it changes,"
        " one statement per search, k candidates ordered by exact distance)",
        "raw": "one psycopg connection, prepared `SELECT media_file_id ... ORDER BY <index expr> LIMIT k`,"
        " session SET hnsw.ef_search / iterative_scan; same queries, same trials, interleaved",
        "raw_hits": "the same loop and statement joined to media_files for the hit columns perflab returns"
        " (prepared): `p95_vs_raw_hits` prices perflab's own code apart from the join the answer needs",
        "configs_user": f"user A owns {data.user_sizes['A']} of {rows} rows; the HNSW graph holds all rows",
        "configs": configs,
        "filter_matrix": {
            "unfiltered": {x: base[x] for x in ("p99_ms", "p99_ci95", "recall_at_10", "route")},
            "cells": cells,
            "note": "user: the whole user (status completed); type_date: user A, images in a date window."
            " p99 from `trials` trials of ~100 queries: status insufficient (a p99 wants 10,000 per trial)",
        },
        "filtered": {
            "exact_threshold": EXACT_THRESHOLD,
            "exact_threshold_at_rows": vs.threshold_for(rows),
            "default_ef_search": vs.ef_search,
            "cases": cases,
            "sweep": sweep,
        },
        "residency": residency,
        "load": {
            "copy_s": round(load.copy_s, 2),
            "hnsw_build_s": round(load.index_s, 2),
            "vector_hnsw_build_s": None if vector_build_s is None else round(vector_build_s, 2),
            "wall_s": round(load_wall_s, 2),
            "parallel_workers": parallel_workers,
            "maintenance_work_mem": load.maintenance_work_mem,
            "hnsw_options": hnsw_opts,
            "batches": load.batches,
            "longest_batch_s": round(load.longest_batch_s, 2),
            "blocking_probe": probe.summary(),
        },
        "memory": {
            "bench_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "table_mb": round(table_bytes / 2**20, 1),
            "hnsw_index_mb": round(size.get("idx_media_embeddings_hnsw", 0) / 2**20, 1),
            "maintenance_work_mem": load.maintenance_work_mem,
            "shared_buffers": versions.shared_buffers,
        },
        "server": {
            "postgres": versions.postgres,
            "pgvector": versions.pgvector,
            "cpus": os.cpu_count(),
            "loadavg_1m_before_after": [load_before, round(os.getloadavg()[0], 2)],
        },
    }
    return result


def best_within(configs: list[dict[str, Any]], p95_ms: float) -> dict[str, Any] | None:
    """The HNSW config with the highest recall@10 among those whose serial p95 is within `p95_ms`
    (the lower p95 among equals), or None: the issue-style target "some setting reaches recall R at
    p95 <= B" as one figure."""
    fits = [c for c in configs if c["index"] == "hnsw" and c["p95_ms"] <= p95_ms]
    return max(fits, key=lambda c: (c["recall_at_10"], -c["p95_ms"]), default=None)


def _cell(
    kind: str, share: float, matching: int, rows: int, r: dict[str, Any], base: dict[str, Any]
) -> dict[str, Any]:
    return {
        "filter": kind,
        "target_share": share,
        "matching_rows": matching,
        "table_share": round(matching / rows, 5),
        "route": r["route"],
        "route_ef": r["route_ef"],
        "route_threshold": r["route_threshold"],
        "min_results": r["min_results"],
        "k_rows_whenever_k_match": r["min_results"] >= min(10, matching),
        "recall_at_10": r["recall_at_10"],
        "p99_ms": r["p99_ms"],
        "p99_ci95": r["p99_ci95"],
        "p99_vs_unfiltered": round(r["p99_ms"] / base["p99_ms"], 3) if base["p99_ms"] else None,
    }


def _render(res: Result) -> None:
    """The plain-text table (without --json)."""
    result = res.envelope()
    print(f"{result['rows']} x {result['dims']}  ({result['data']})")
    print(
        f"{'index':6} {'type':7} {'ef':>4} {'recall':>7} {'p50':>7} {'p95':>7} {'p99':>7} {'qps1':>7} {'qps4':>7} {'qps8':>7} {'build_s':>8} {'MB':>7}"
    )
    for c in result["configs"]:
        print(
            f"{c['index']:6} {c['vector_type'] or '-':7} {c['ef_search'] or '-':>4} {c['recall_at_10']:7.4f} {c['p50_ms']:7.2f} {c['p95_ms']:7.2f}"
            f" {c['p99_ms']:7.2f} {c['qps_c1']:7.0f} {c['qps_c4']:7.0f} {c['qps_c8']:7.0f} {c['build_s']:8.2f} {c['index_mb']:7.1f}"
        )
    for c in result["configs"]:
        if c.get("p95_vs_raw") is not None:
            print(
                f"{c['vector_type']} ef {c['ef_search']}: raw p95 {c['raw_p95_ms']:.2f} ms, p95_vs_raw {c['p95_vs_raw']}"
            )
    for cell in result["filter_matrix"]["cells"]:
        if cell.get("measured", True):
            print(
                f"matrix {cell['filter']:9} {cell['target_share']:>5}: rows {cell['matching_rows']:>7} route {cell['route']:5}"
                f" recall {cell['recall_at_10']:.3f} min {cell['min_results']} p99 {cell['p99_ms']:.2f} ms"
                f" ({cell['p99_vs_unfiltered']}x unfiltered)"
            )
    print(f"residency: {result['residency']}")
    for c in result["filtered"]["cases"]:
        print(
            f"filtered {c['case']:14} rows={c['user_rows']:<6} path={c['path']:5} recall={c['recall_at_10']:.4f} p95={c['p95_ms']:.2f} ms min_results={c['min_results']}"
        )
    for e in result["filtered"]["sweep"]:
        print(
            f"sweep {e['user_rows']:>5} rows: exact p50 {e['exact']['p50_ms']:.2f} ms (recall {e['exact']['recall_at_10']:.3f}), hnsw p50 {e['hnsw']['p50_ms']:.2f} ms (recall {e['hnsw']['recall_at_10']:.3f})"
        )


def main(settings: Settings, argv: list[str]) -> int:
    return cli(settings, argv, Config, run, __doc__, name="vector", render=_render)
