"""`perflab bench cache [--json] [--quick]`: the cache layer against the seed's design, side by side.

On the measurement contract (perflab/bench/contract.py): `Config` (`--quick`, `--cluster`, `--trials`)
and `run(settings, cfg) -> Result`; `--json` prints the envelope: the flat keys below, and beside them
`figures` / `trials` / `ci95` of each headline figure (median of `trials` >= 5 trials, 95 % CI),
`cpu_ms_per_request` and `noise` per measured phase (`embedding_ours`, `embedding_seed`,
`get_overhead`, `ops`). Latency percentiles come from LatencyHistogram (microsecond resolution).

Everything comes from one run on the same data, on the shared Redis, under a key prefix of the run's own
that is deleted at the end:

- `embedding_batch_speedup_vs_seed`: read back N x D float32 embeddings. Ours: `EmbeddingCache.get_many`
  (one MGET of packed float32, decoded without parsing). The seed's layout: a JSON object
  `{embedding, text, model, cachedAt}` per key, read with one GET per item and parsed. Each trial reads
  ours 3 times and the seed's once, alternating which goes first; a trial's figure is seed / median(ours)
  of that trial, the flat key the median over trials.
- `embedding_memory_ratio_vs_seed`: Redis `MEMORY USAGE` per entry (median of a sample), seed / ours
  (a size, the same in every run: measured once).
- `get_overhead_vs_raw`: `CacheManager.get` p50 over raw redis-py `GET` p50, minus 1: same client, same
  key (a small JSON object), samples interleaved, order alternating, the samples split into `trials`
  trials; the flat key is the median of the trials' figures. Ours includes the breaker check, stats,
  latency histogram and decoding.
- `stampede_factory_calls`: callers on one cold key, each with its own CacheManager (as if each were a
  process: no in-process coalescing helps), released together by a barrier, in `trials` trials on cold
  keys of their own. 1 is the target; the flat key is the worst trial (every trial must call it once).
- `ops_per_s`: one thread, keys per second: get/set one at a time, get_many/set_many in batches; median
  of `trials` trials (`per_trial` beside).
- `cluster` (with `--cluster`): the same `ops_per_s` on the single embedded server and on the embedded
  cluster (3 masters), trials interleaved (A B B A ...), medians per op and cluster / single. Batches
  of 100 unrelated keys span ~100 slots on all three masters (`get_many_span` says how many): `get_many`
  is one pipeline per master, and every key must come back (a fail-open miss would flatter the rate).

The targets are the `bench_cache.*` objectives of notebooks/slo.toml (profile "bench": gated here, in
`meets_targets`, not by the report, whose notebooks do not run this bench). The seed-layout sections
and the one-node baseline need one Redis node: the embedded single server, also when
PERFLAB_REDIS_CLUSTER=1 names the embedded cluster (then add `--cluster`); a staging cluster URL is
refused with one line. `meets_targets` is True only for a target slo.evaluate passed; `target_status`
says pass / fail / inconclusive (a noisy figure, or a CI straddling the bound) / missing, and why.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import platform
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import redis

from perflab.bench.contract import MIN_TRIALS, Estimate, Phase, Result, cli, estimate, repeat
from perflab.cache import CacheManager, EmbeddingCache, ShardedCluster, make_redis
from perflab.config import Settings, is_cluster_url
from perflab.errors import ConfigError
from perflab.lab import slo
from perflab.lab.cpu import Source, lab_sources
from perflab.lab.latency import LatencyHistogram
from perflab.lab.provenance import collect
from perflab.servers.registry import endpoints

MODEL = "text-embedding-3-small"
SLO_PREFIX = "bench_cache."  # this bench's objectives in notebooks/slo.toml
SLO_PROFILE = "bench"
WORST_OF_TRIALS = frozenset({"stampede_factory_calls"})  # flat key = the worst trial, gated without a CI


@dataclass(frozen=True)
class Config:
    quick: bool = field(default=False, metadata={"help": "tiny sizes, for smoke tests (figures meaningless)"})
    cluster: bool = field(
        default=False,
        metadata={
            "help": "also compare ops/s on one server against the embedded 3-master cluster (key `cluster`)"
        },
    )
    trials: int = field(default=MIN_TRIALS, metadata={"help": "trials per headline figure (>= 5)"})

    def __post_init__(self) -> None:
        if self.trials < MIN_TRIALS:
            raise ConfigError(f"--trials must be at least {MIN_TRIALS}, not {self.trials}")


@dataclass(frozen=True)
class _Sizes:
    vectors: int  # embeddings read back per read
    dim: int
    samples: int  # interleaved GET pairs for the overhead, over all trials
    callers: int  # stampede callers per trial
    ops: int  # keys per throughput trial


QUICK = _Sizes(vectors=50, dim=64, samples=300, callers=50, ops=200)
FULL = _Sizes(vectors=1000, dim=1536, samples=5000, callers=200, ops=3000)


def targets() -> dict[str, slo.Objective]:
    """{result key: its objective}: the `bench_cache.*` lines of notebooks/slo.toml."""
    found = {o.figure.removeprefix(SLO_PREFIX): o for o in slo.load() if o.figure.startswith(SLO_PREFIX)}
    if not found:
        raise ConfigError(f"notebooks/slo.toml sets no {SLO_PREFIX}* objective")
    return found


def _histogram(ns: Iterable[int]) -> LatencyHistogram:
    h = LatencyHistogram()
    for x in ns:
        h.record_ns(int(x))
    return h


def _ms(h: LatencyHistogram) -> dict[str, float]:
    return {"median_ms": round(h.percentile_ms(50), 4), "p95_ms": round(h.percentile_ms(95), 4)}


def _us(h: LatencyHistogram) -> dict[str, float]:
    return {"p50_us": round(h.percentile_ms(50) * 1000, 2), "p95_us": round(h.percentile_ms(95) * 1000, 2)}


def _timed(fn: Callable[[], Any]) -> tuple[int, Any]:
    t0 = time.perf_counter_ns()
    out = fn()
    return time.perf_counter_ns() - t0, out


# -- the seed's embedding layout, ported faithfully ------------------------------------------------------


def _seed_key(prefix: str, text: str) -> str:
    """embedding-cache.ts: sha256(text + model + version), first 16 hex digits."""
    h = hashlib.sha256((text + MODEL + "v1").encode()).hexdigest()[:16]
    return f"{prefix}:seed:embedding:{MODEL}:{h}"


def _seed_value(text: str, vec: np.ndarray) -> str:
    """What the seed stores: JSON of {embedding: number[], text, model, cachedAt}."""
    return json.dumps(
        {"embedding": vec.tolist(), "text": text, "model": MODEL, "cachedAt": datetime.now(UTC).isoformat()}
    )


def _seed_get_batch(client: redis.Redis, prefix: str, texts: list[str]) -> list[list[float] | None]:
    """The seed's getBatch: per item, hash the key, one GET, JSON.parse, text check."""
    out: list[list[float] | None] = []
    for text in texts:
        raw = client.get(_seed_key(prefix, text))
        cached = json.loads(raw) if raw is not None else None
        out.append(cached["embedding"] if cached is not None and cached["text"] == text else None)
    return out


# -- the measurements -------------------------------------------------------------------------------------


def _embeddings(
    client: redis.Redis,
    manager: CacheManager,
    size: _Sizes,
    trials: int,
    result: Result,
    sources: dict[str, Source],
    log: Callable[[str], None],
) -> dict[str, Any]:
    n, dim = size.vectors, size.dim
    rng = np.random.default_rng(7)
    vecs = rng.standard_normal((n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    texts = [f"photo of item {i}: a cat on a sofa in the afternoon light" for i in range(n)]
    cache = EmbeddingCache(manager, model=MODEL, dim=dim, ttl=3600)
    seed_keys = [_seed_key(manager.prefix, t) for t in texts]

    log(f"embeddings: writing {n} x {dim} in both layouts")
    for start in range(0, n, 200):
        cache.set_many(texts[start : start + 200], vecs[start : start + 200])
        pipe = client.pipeline(transaction=False)
        for key, text, vec in zip(
            seed_keys[start : start + 200], texts[start : start + 200], vecs[start : start + 200], strict=True
        ):
            pipe.set(key, _seed_value(text, vec), ex=3600)
        pipe.execute()

    # Both layouts must return every vector, exactly, before their speed means anything.
    ours_out, seed_out = cache.get_many(texts), _seed_get_batch(client, manager.prefix, texts)
    if any(v is None for v in ours_out) or any(v is None for v in seed_out):
        raise RuntimeError("embedding benchmark: a stored vector was not read back")
    if not all(a is not None and np.array_equal(a, b) for a, b in zip(ours_out, vecs, strict=True)):
        raise RuntimeError("embedding benchmark: our round trip is not exact")
    if not np.array_equal(np.asarray(seed_out, dtype=np.float32), vecs):
        raise RuntimeError("embedding benchmark: the seed's round trip is not exact")
    # 1.5 M float objects kept alive would make every full GC during the timed reads slower.
    del ours_out, seed_out
    gc.collect()

    # Each trial reads ours 3 times and the seed's once, alternating which goes first. Ours is ~60x
    # cheaper: more samples make its median robust to the scheduling bursts of a shared machine.
    log(f"embeddings: {trials} trials of 3 reads (ours) and 1 read (seed) of {n} vectors")
    ours_all, seed_all = LatencyHistogram(), LatencyHistogram()

    def read_seed() -> float:
        with Phase("embedding_seed", sources) as ph:
            ns = _timed(lambda: _seed_get_batch(client, manager.prefix, texts))[0]
        result.add_phase(ph.finish(n))  # per vector read
        seed_all.record_ns(ns)
        return ns / 1e6

    def trial(i: int) -> float:
        seed_ms = read_seed() if i % 2 else 0.0
        ours = LatencyHistogram()
        with Phase("embedding_ours", sources) as ph:
            for _ in range(3):
                ours.record_ns(_timed(lambda: cache.get_many(texts))[0])
        result.add_phase(ph.finish(3 * n))
        ours_all.merge(ours)
        if not i % 2:
            seed_ms = read_seed()
        return seed_ms / ours.percentile_ms(50)

    speedups = repeat(trial, trials)
    noisy = result.phase_noisy("embedding_ours") or result.phase_noisy("embedding_seed")
    speedup = result.estimates["embedding_batch_speedup_vs_seed"] = estimate(speedups, noisy=noisy)

    sample = range(0, n, max(1, n // 100))
    ours_mem = [int(client.memory_usage(manager.key(cache.key(texts[i]))) or 0) for i in sample]
    seed_mem = [int(client.memory_usage(seed_keys[i]) or 0) for i in sample]
    return {
        "embedding_batch_speedup_vs_seed": round(speedup.median, 1),
        "embedding_memory_ratio_vs_seed": round(float(np.median(seed_mem)) / float(np.median(ours_mem)), 2),
        "embedding_get_many": {
            "vectors": n,
            "dim": dim,
            "trials": trials,
            "samples": {"ours": ours_all.count, "seed": seed_all.count},
            "ours": _ms(ours_all),
            "seed": _ms(seed_all),
        },
        "embedding_bytes_per_entry": {"ours": int(np.median(ours_mem)), "seed": int(np.median(seed_mem))},
    }


def _overhead(
    client: redis.Redis,
    manager: CacheManager,
    samples: int,
    trials: int,
    result: Result,
    sources: dict[str, Source],
) -> dict[str, Any]:
    value = {"id": "2f6c1b9e", "title": "sunset over the bay", "score": 0.9132, "tags": ["sea", "sky"]}
    manager.set("small", value, ttl=3600)
    full = manager.key("small")
    get_raw, get_ours = client.get, manager.get
    for _ in range(300):  # warm the connection, caches, branch predictors
        get_raw(full)
        get_ours("small")
    per_trial = max(1, samples // trials)
    raw_all, ours_all = LatencyHistogram(), LatencyHistogram()
    clock = time.perf_counter_ns

    def trial(_: int) -> float:
        raw_ns = np.empty(per_trial, dtype=np.int64)
        ours_ns = np.empty(per_trial, dtype=np.int64)
        gc_was_enabled = gc.isenabled()
        with Phase("get_overhead", sources) as ph:
            gc.disable()
            try:
                for i in range(per_trial):
                    if i & 1:
                        t0 = clock()
                        get_raw(full)
                        t1 = clock()
                        get_ours("small")
                        t2 = clock()
                        raw_ns[i], ours_ns[i] = t1 - t0, t2 - t1
                    else:
                        t0 = clock()
                        get_ours("small")
                        t1 = clock()
                        get_raw(full)
                        t2 = clock()
                        ours_ns[i], raw_ns[i] = t1 - t0, t2 - t1
            finally:
                if gc_was_enabled:
                    gc.enable()
        result.add_phase(ph.finish(2 * per_trial))  # per GET, both clients
        raw, ours = _histogram(raw_ns), _histogram(ours_ns)
        raw_all.merge(raw)
        ours_all.merge(ours)
        return ours.percentile_ms(50) / raw.percentile_ms(50) - 1

    overheads = repeat(trial, trials)
    if manager.get("small") != value:
        raise RuntimeError("overhead benchmark: CacheManager.get returned the wrong value")
    overhead = result.estimates["get_overhead_vs_raw"] = estimate(
        overheads, noisy=result.phase_noisy("get_overhead")
    )
    raw, ours = _us(raw_all), _us(ours_all)
    return {
        "get_overhead_vs_raw": round(overhead.median, 4),
        "get_overhead_us": round(ours["p50_us"] - raw["p50_us"], 2),
        "get_latency": {
            "samples": raw_all.count,
            "trials": trials,
            "raw_redis_py": raw,
            "cache_manager": ours,
        },
    }


def _stampede_once(client: redis.Redis, prefix: str, callers: int, key: str) -> dict[str, Any]:
    managers = [CacheManager(client, prefix=prefix, default_ttl=60) for _ in range(callers)]
    calls = 0
    calls_lock = threading.Lock()
    barrier = threading.Barrier(callers)
    results: list[Any] = [None] * callers

    def factory() -> dict[str, Any]:
        nonlocal calls
        with calls_lock:
            calls += 1
        time.sleep(0.1)  # an expensive query
        return {"answer": 42}

    def caller(i: int) -> None:
        barrier.wait()
        results[i] = managers[i].get_or_set(key, factory, ttl=60, wait_timeout=30)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    stats = [m.stats() for m in managers]
    return {
        "factory_calls": calls,
        "all_got_the_value": all(r == {"answer": 42} for r in results),
        "waited_for_lock_holder": sum(s.lock_waits for s in stats),
        "gave_up_waiting": sum(s.lock_timeouts for s in stats),
        "errors": sum(s.errors for s in stats),
        "wall_ms": round(wall * 1000, 1),
    }


def _stampede(client: redis.Redis, prefix: str, callers: int, trials: int, result: Result) -> dict[str, Any]:
    """`trials` stampedes, each on a cold key of its own. The flat `stampede_factory_calls` is the worst
    trial (the target holds only if every trial ran the factory once); `figures` has the median."""
    runs = repeat(lambda i: _stampede_once(client, prefix, callers, f"stampede:{i}"), trials)
    calls = [r["factory_calls"] for r in runs]
    result.estimates["stampede_factory_calls"] = estimate(calls)
    return {
        "stampede_factory_calls": max(calls),
        "stampede": {
            "callers": callers,
            "trials": trials,
            "all_got_the_value": all(r["all_got_the_value"] for r in runs),
            **{k: max(r[k] for r in runs) for k in ("waited_for_lock_holder", "gave_up_waiting", "errors")},
            "wall_ms": round(statistics.median(r["wall_ms"] for r in runs), 1),
            "per_trial": runs,
        },
    }


OPS = ("get", "set", "get_many", "set_many")


def _throughput(manager: CacheManager, n: int, batch: int) -> dict[str, Any]:
    keys = [f"ops:{i}" for i in range(n)]
    value = {"id": 1, "title": "x" * 64}
    missed = 0

    def rate(fn: Callable[[], Any]) -> float:
        elapsed, _ = _timed(fn)
        return round(n / (elapsed / 1e9), 1)

    def set_each() -> None:
        for k in keys:
            manager.set(k, value, ttl=600)

    def get_each() -> None:
        for k in keys:
            manager.get(k)

    def set_batched() -> None:
        for s in range(0, n, batch):
            manager.set_many(dict.fromkeys(keys[s : s + batch], value), ttl=600)

    def get_batched() -> None:
        nonlocal missed
        for s in range(0, n, batch):
            missed += sum(v is None for v in manager.get_many(keys[s : s + batch]))

    out = {
        "set": rate(set_each),
        "get": rate(get_each),
        "set_many": rate(set_batched),
        "get_many": rate(get_batched),
        "batch_size": batch,
        "unit": "keys per second, one thread",
    }
    if missed:  # a node failed open: its keys came back as misses, and the rate means nothing
        raise RuntimeError(f"throughput benchmark: get_many missed {missed} of {n} keys")
    return out


def _ops_per_s(
    manager: CacheManager, n: int, trials: int, result: Result, sources: dict[str, Source]
) -> dict[str, Any]:
    """`_throughput` in `trials` trials, each a measured phase; per op the median of the trials."""

    def trial(_: int) -> dict[str, Any]:
        with Phase("ops", sources) as ph:
            rates = _throughput(manager, n, 100)
        result.add_phase(ph.finish(4 * n))  # keys, over the four ops
        return rates

    runs = repeat(trial, trials)
    noisy = result.phase_noisy("ops")
    out: dict[str, Any] = {}
    for op in OPS:
        e = result.estimates[f"ops_per_s_{op}"] = estimate([r[op] for r in runs], noisy=noisy)
        out[op] = round(e.median, 1)
    out.update({"batch_size": 100, "unit": "keys per second, one thread", "trials": trials})
    out["per_trial"] = {op: [r[op] for r in runs] for op in OPS}
    return out


def _span(client: Any, keys: list[str]) -> dict[str, int]:
    """How many slots and masters one batch of `keys` touches on a cluster."""
    slots = {client.keyslot(k) for k in keys}
    masters = {client.nodes_manager.get_node_from_slot(s).name for s in slots}
    return {"keys": len(keys), "slots": len(slots), "masters": len(masters)}


def _single_and_cluster(settings: Settings, cluster: bool) -> tuple[str, str | None]:
    """(URL of one Redis node for the single-node sections, URL of the cluster or None)."""
    if not settings.embedded:
        assert settings.redis_url is not None
        if is_cluster_url(settings.redis_url):
            raise ConfigError(
                "perflab bench cache needs one Redis node (the seed-layout sections, the one-node baseline) "
                "and PERFLAB_REDIS_URL names a cluster: unset PERFLAB_REDIS_URL and PERFLAB_DATABASE_URL "
                "and run `perflab bench cache --cluster` on the embedded servers"
            )
        if cluster:
            raise ConfigError(
                "perflab bench cache --cluster compares the embedded single server with the embedded "
                "cluster: unset PERFLAB_REDIS_URL and PERFLAB_DATABASE_URL"
            )
        return settings.redis_url, None
    if settings.redis_cluster and not cluster:
        raise ConfigError(
            "perflab bench cache compares against the seed's layout on one Redis and PERFLAB_REDIS_CLUSTER=1 "
            "names the cluster: add --cluster (one node against the cluster's masters), or unset it"
        )
    single = endpoints(settings.replace(redis_cluster=False)).redis_url
    return single, endpoints(settings.replace(redis_cluster=True)).redis_url if cluster else None


def _cluster_compare(
    settings: Settings, urls: dict[str, str], ops: int, trials: int, log: Callable[[str], None]
) -> dict[str, Any]:
    """ops/s on one server against the embedded 3-master cluster, same code, trials interleaved."""
    clients = {kind: make_redis(settings, url) for kind, url in urls.items()}
    node = clients["cluster"]
    if not isinstance(node, ShardedCluster):
        raise ConfigError(f"{urls['cluster']} is not a cluster URL")
    prefix = f"{settings.key_prefix}benchc{uuid.uuid4().hex[:8]}"
    managers = {kind: CacheManager(c, prefix=prefix, default_ttl=600) for kind, c in clients.items()}
    rates: dict[str, list[dict[str, Any]]] = {"single": [], "cluster": []}
    try:
        for trial in range(trials):
            order = ["single", "cluster"] if trial % 2 == 0 else ["cluster", "single"]
            for kind in order:
                rates[kind].append(_throughput(managers[kind], ops, 100))
            log(f"cluster compare: trial {trial + 1}/{trials}")
    finally:
        for kind, m in managers.items():
            m.delete_pattern("*")
            clients[kind].close()
    out: dict[str, Any] = {
        "trials": trials,
        "masters": len(node.get_primaries()),
        "batch_size": 100,
        "get_many_span": _span(node, [managers["cluster"].key(f"ops:{i}") for i in range(100)]),
        "unit": "keys per second, one thread",
    }
    for kind, runs in rates.items():
        out[kind] = {op: round(float(np.median([r[op] for r in runs])), 1) for op in OPS}
    # each trial's rate, in trial order: the spread behind each median
    out["per_trial"] = {kind: {op: [r[op] for r in runs] for op in OPS} for kind, runs in rates.items()}
    out["ratio_cluster_vs_single"] = {
        op: round(out["cluster"][op] / out["single"][op], 3) for op in out["single"] if out["single"][op]
    }
    return out


def _verdicts(
    flat: dict[str, Any], goals: dict[str, slo.Objective], estimates: dict[str, Estimate]
) -> dict[str, slo.Verdict]:
    """Each target judged by slo.evaluate on the flat figure; a figure that is the median of trials
    carries its CI and status (so a noisy or straddling one is inconclusive, not passed)."""
    figures: dict[str, Any] = {}
    for name in goals:
        figures[SLO_PREFIX + name] = flat.get(name)
        e = estimates.get(name)
        if e is not None and name not in WORST_OF_TRIALS:
            d = e.as_dict()
            figures[f"{SLO_PREFIX}{name}.ci95"] = d["ci95"]
            figures[f"{SLO_PREFIX}{name}.status"] = d["status"]
    verdicts = slo.evaluate(list(goals.values()), figures, SLO_PROFILE)
    return {v.figure.removeprefix(SLO_PREFIX): v for v in verdicts}


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)  # stdout carries the one JSON line


def run(settings: Settings, cfg: Config, *, log: Callable[[str], None] = lambda _: None) -> Result:
    size = QUICK if cfg.quick else FULL
    goals = targets()
    url, cluster_url = _single_and_cluster(settings, cfg.cluster)
    client = make_redis(settings, url)
    if not isinstance(client, redis.Redis):  # the seed-layout sections run raw single-node commands
        client.close()
        raise ConfigError(f"perflab bench cache needs one Redis node, not the cluster at {url}")
    result = Result("cache", asdict(cfg), provenance=collect(settings))
    sources = lab_sources(settings.replace(redis_cluster=False) if settings.embedded else settings)
    prefix = f"{settings.key_prefix}bench{uuid.uuid4().hex[:8]}"
    manager = CacheManager(client, prefix=prefix, default_ttl=600)
    trials = cfg.trials
    try:
        flat: dict[str, Any] = {}
        flat.update(_embeddings(client, manager, size, trials, result, sources, log))
        log(f"get overhead: {size.samples} interleaved samples in {trials} trials")
        flat.update(_overhead(client, manager, size.samples, trials, result, sources))
        log(f"stampede: {size.callers} cold callers, {trials} trials")
        flat.update(_stampede(client, prefix, size.callers, trials, result))
        log(f"throughput: {size.ops} keys, {trials} trials")
        flat["ops_per_s"] = _ops_per_s(manager, size.ops, trials, result, sources)
        if cluster_url is not None:
            urls = {"single": url, "cluster": cluster_url}
            c = flat["cluster"] = _cluster_compare(settings, urls, size.ops, 2 if cfg.quick else trials, log)
            for op in OPS:  # each trial's cluster rate over the single rate measured beside it
                pairs = zip(c["per_trial"]["cluster"][op], c["per_trial"]["single"][op], strict=True)
                result.estimates[f"cluster_ratio_vs_single_{op}"] = estimate([a / b for a, b in pairs if b])
        verdicts = _verdicts(flat, goals, result.estimates)
        flat["targets"] = {name: f"{o.op} {o.threshold:g}" for name, o in goals.items()}
        flat["meets_targets"] = {name: v.passed for name, v in verdicts.items()}
        flat["target_status"] = {
            name: {"status": v.status, "reason": v.reason} for name, v in verdicts.items()
        }
        info = client.info("server")
        flat["environment"] = {
            "redis_version": info.get("redis_version"),
            "redis_py": redis.__version__,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "quick": cfg.quick,
        }
        result.legacy = flat
        return result
    finally:
        manager.delete_pattern("*")
        client.close()


def _render(res: Result) -> None:
    result = res.legacy
    emb, lat, st = result["embedding_get_many"], result["get_latency"], result["stampede"]
    print(
        f"embedding get_many {emb['vectors']} x {emb['dim']}: ours {emb['ours']['median_ms']} ms, "
        f"seed {emb['seed']['median_ms']} ms -> {result['embedding_batch_speedup_vs_seed']}x"
    )
    print(
        f"bytes per entry: ours {result['embedding_bytes_per_entry']['ours']}, "
        f"seed {result['embedding_bytes_per_entry']['seed']} -> {result['embedding_memory_ratio_vs_seed']}x"
    )
    print(
        f"get p50: raw {lat['raw_redis_py']['p50_us']} us, CacheManager {lat['cache_manager']['p50_us']} us "
        f"-> overhead {result['get_overhead_vs_raw']:+.1%}"
    )
    print(
        f"stampede: {st['callers']} callers -> factory ran {result['stampede_factory_calls']}x (worst trial)"
    )
    print("ops/s: " + ", ".join(f"{op} {result['ops_per_s'][op]}" for op in OPS))
    if "cluster" in result:
        c = result["cluster"]
        span = c["get_many_span"]
        print(
            f"cluster ({c['masters']} masters) vs one node, median of {c['trials']} interleaved trials: "
            + ", ".join(f"{op} {c['cluster'][op]} vs {c['single'][op]}" for op in c["single"])
            + f" (a get_many of {span['keys']} keys spans {span['slots']} slots on {span['masters']} masters)"
        )
    for key, e in res.estimates.items():
        lo, hi = e.ci95
        print(f"  {key:34} {e.median:12.4f}  95% CI [{lo:.4f}, {hi:.4f}]  {e.status}")
    print("targets: " + ", ".join(f"{k}={v['status']}" for k, v in result["target_status"].items()))


def main(settings: Settings, argv: list[str]) -> int:
    return cli(
        settings, argv, Config, lambda s, cfg: run(s, cfg, log=_log), __doc__, name="cache", render=_render
    )
