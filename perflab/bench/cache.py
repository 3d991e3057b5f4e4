"""`perflab bench cache [--json] [--quick]`: the cache layer against the seed's design, side by side.

Everything comes from one run on the same data, on the shared Redis, under a key prefix of the run's own
that is deleted at the end:

- `embedding_batch_speedup_vs_seed`: read back N x D float32 embeddings. Ours: `EmbeddingCache.get_many`
  (one MGET of packed float32, decoded without parsing). The seed's layout: a JSON object
  `{embedding, text, model, cachedAt}` per key, read with one GET per item and parsed. Rounds alternate
  between the two (3 reads of ours per read of the seed's); the figure is median(seed) / median(ours).
- `embedding_memory_ratio_vs_seed`: Redis `MEMORY USAGE` per entry (median of a sample), seed / ours.
- `get_overhead_vs_raw`: `CacheManager.get` p50 over raw redis-py `GET` p50, minus 1: same client, same
  key (a small JSON object), samples interleaved, order alternating. Ours includes the breaker check,
  stats, latency histogram and decoding.
- `stampede_factory_calls`: callers on one cold key, each with its own CacheManager (as if each were a
  process: no in-process coalescing helps), released together by a barrier. 1 is the target.
- `ops_per_s`: one thread, keys per second: get/set one at a time, get_many/set_many in batches.
- `cluster` (with `--cluster`): the same `ops_per_s` on the single embedded server and on the embedded
  cluster (3 masters), trials interleaved (A B B A ...), medians per op and cluster / single. Batches
  of 100 unrelated keys span ~100 slots on all three masters (`get_many_span` says how many): `get_many`
  is one pipeline per master, and every key must come back (a fail-open miss would flatter the rate).

The targets are the `bench_cache.*` objectives of notebooks/slo.toml (profile "bench": gated here, in
`meets_targets`, not by the report, whose notebooks do not run this bench). The seed-layout sections
and the one-node baseline need one Redis node: the embedded single server, also when
PERFLAB_REDIS_CLUSTER=1 names the embedded cluster (then add `--cluster`); a staging cluster URL is
refused with one line.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import redis

from perflab.cache import CacheManager, EmbeddingCache, ShardedCluster, make_redis
from perflab.config import Settings, is_cluster_url
from perflab.errors import ConfigError
from perflab.lab import slo
from perflab.servers.registry import endpoints

MODEL = "text-embedding-3-small"
SLO_PREFIX = "bench_cache."  # this bench's objectives in notebooks/slo.toml
SLO_PROFILE = "bench"


def targets() -> dict[str, slo.Objective]:
    """{result key: its objective}: the `bench_cache.*` lines of notebooks/slo.toml."""
    found = {o.figure.removeprefix(SLO_PREFIX): o for o in slo.load() if o.figure.startswith(SLO_PREFIX)}
    if not found:
        raise ConfigError(f"notebooks/slo.toml sets no {SLO_PREFIX}* objective")
    return found


def _ms(ns: list[int] | np.ndarray) -> dict[str, float]:
    a = np.asarray(ns, dtype=np.float64) / 1e6
    return {"median_ms": round(float(np.median(a)), 4), "p95_ms": round(float(np.percentile(a, 95)), 4)}


def _us(ns: list[int] | np.ndarray) -> dict[str, float]:
    a = np.asarray(ns, dtype=np.float64) / 1e3
    return {"p50_us": round(float(np.median(a)), 2), "p95_us": round(float(np.percentile(a, 95)), 2)}


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
    client: redis.Redis, manager: CacheManager, n: int, dim: int, repeats: int, log: Callable[[str], None]
) -> dict[str, Any]:
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

    # Rounds alternate which layout goes first. Ours is ~60x cheaper, so each round reads it 3 times:
    # more samples make its median robust to the scheduling bursts of a shared machine.
    log(f"embeddings: {repeats} rounds of 3 reads (ours) and 1 read (seed) of {n} vectors")
    ours_ns: list[int] = []
    seed_ns: list[int] = []
    for i in range(repeats):
        if i % 2:
            seed_ns.append(_timed(lambda: _seed_get_batch(client, manager.prefix, texts))[0])
        ours_ns.extend(_timed(lambda: cache.get_many(texts))[0] for _ in range(3))
        if not i % 2:
            seed_ns.append(_timed(lambda: _seed_get_batch(client, manager.prefix, texts))[0])

    sample = range(0, n, max(1, n // 100))
    ours_mem = [int(client.memory_usage(manager.key(cache.key(texts[i]))) or 0) for i in sample]
    seed_mem = [int(client.memory_usage(seed_keys[i]) or 0) for i in sample]
    ours = _ms(ours_ns)
    seed = _ms(seed_ns)
    return {
        "embedding_batch_speedup_vs_seed": round(seed["median_ms"] / ours["median_ms"], 1),
        "embedding_memory_ratio_vs_seed": round(float(np.median(seed_mem)) / float(np.median(ours_mem)), 2),
        "embedding_get_many": {
            "vectors": n,
            "dim": dim,
            "samples": {"ours": len(ours_ns), "seed": len(seed_ns)},
            "ours": ours,
            "seed": seed,
        },
        "embedding_bytes_per_entry": {"ours": int(np.median(ours_mem)), "seed": int(np.median(seed_mem))},
    }


def _overhead(client: redis.Redis, manager: CacheManager, samples: int) -> dict[str, Any]:
    value = {"id": "2f6c1b9e", "title": "sunset over the bay", "score": 0.9132, "tags": ["sea", "sky"]}
    manager.set("small", value, ttl=3600)
    full = manager.key("small")
    get_raw, get_ours = client.get, manager.get
    for _ in range(300):  # warm the connection, caches, branch predictors
        get_raw(full)
        get_ours("small")
    raw_ns = np.empty(samples, dtype=np.int64)
    ours_ns = np.empty(samples, dtype=np.int64)
    clock = time.perf_counter_ns
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for i in range(samples):
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
    if manager.get("small") != value:
        raise RuntimeError("overhead benchmark: CacheManager.get returned the wrong value")
    raw, ours = _us(raw_ns), _us(ours_ns)
    return {
        "get_overhead_vs_raw": round(ours["p50_us"] / raw["p50_us"] - 1, 4),
        "get_overhead_us": round(ours["p50_us"] - raw["p50_us"], 2),
        "get_latency": {"samples": samples, "raw_redis_py": raw, "cache_manager": ours},
    }


def _stampede(client: redis.Redis, prefix: str, callers: int) -> dict[str, Any]:
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
        results[i] = managers[i].get_or_set("stampede", factory, ttl=60, wait_timeout=30)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    stats = [m.stats() for m in managers]
    return {
        "stampede_factory_calls": calls,
        "stampede": {
            "callers": callers,
            "all_got_the_value": all(r == {"answer": 42} for r in results),
            "waited_for_lock_holder": sum(s.lock_waits for s in stats),
            "gave_up_waiting": sum(s.lock_timeouts for s in stats),
            "errors": sum(s.errors for s in stats),
            "wall_ms": round(wall * 1000, 1),
        },
    }


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
    ops_names = ("get", "set", "get_many", "set_many")
    for kind, runs in rates.items():
        out[kind] = {op: round(float(np.median([r[op] for r in runs])), 1) for op in ops_names}
    # each trial's rate, in trial order: the spread behind each median
    out["per_trial"] = {kind: {op: [r[op] for r in runs] for op in ops_names} for kind, runs in rates.items()}
    out["ratio_cluster_vs_single"] = {
        op: round(out["cluster"][op] / out["single"][op], 3) for op in out["single"] if out["single"][op]
    }
    return out


def _verdicts(result: dict[str, Any], goals: dict[str, slo.Objective]) -> dict[str, bool]:
    figures = {SLO_PREFIX + name: result.get(name) for name in goals}
    verdicts = slo.evaluate(list(goals.values()), figures, SLO_PROFILE)
    return {v.figure.removeprefix(SLO_PREFIX): v.passed for v in verdicts}


def run(
    settings: Settings,
    *,
    quick: bool = False,
    cluster: bool = False,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    n, dim, repeats, samples, callers, ops = (
        (50, 64, 3, 300, 50, 200) if quick else (1000, 1536, 9, 5000, 200, 3000)
    )
    goals = targets()
    url, cluster_url = _single_and_cluster(settings, cluster)
    client = make_redis(settings, url)
    if not isinstance(client, redis.Redis):  # the seed-layout sections run raw single-node commands
        client.close()
        raise ConfigError(f"perflab bench cache needs one Redis node, not the cluster at {url}")
    prefix = f"{settings.key_prefix}bench{uuid.uuid4().hex[:8]}"
    manager = CacheManager(client, prefix=prefix, default_ttl=600)
    try:
        result: dict[str, Any] = {}
        result.update(_embeddings(client, manager, n, dim, repeats, log))
        log(f"get overhead: {samples} interleaved samples")
        result.update(_overhead(client, manager, samples))
        log(f"stampede: {callers} cold callers")
        result.update(_stampede(client, prefix, callers))
        log(f"throughput: {ops} keys")
        result["ops_per_s"] = _throughput(manager, ops, 100)
        if cluster_url is not None:
            urls = {"single": url, "cluster": cluster_url}
            result["cluster"] = _cluster_compare(settings, urls, ops, 2 if quick else 5, log)
        result["targets"] = {name: f"{o.op} {o.threshold:g}" for name, o in goals.items()}
        result["meets_targets"] = _verdicts(result, goals)
        info = client.info("server")
        result["environment"] = {
            "redis_version": info.get("redis_version"),
            "redis_py": redis.__version__,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "quick": quick,
        }
        return result
    finally:
        manager.delete_pattern("*")
        client.close()


def main(settings: Settings, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="perflab bench cache", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object (otherwise a summary)")
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes, for smoke tests (figures meaningless)"
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="also compare ops/s on one server against the embedded 3-master cluster (key `cluster`)",
    )
    args = parser.parse_args(argv)

    def log(msg: str) -> None:
        if not args.json:
            print(msg, flush=True)

    result = run(settings, quick=args.quick, cluster=args.cluster, log=log)
    if args.json:
        print(json.dumps(result))
        return 0
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
    print(f"stampede: {st['callers']} callers -> factory ran {result['stampede_factory_calls']}x")
    print("ops/s: " + ", ".join(f"{k} {v}" for k, v in result["ops_per_s"].items() if k not in ("unit",)))
    if "cluster" in result:
        c = result["cluster"]
        span = c["get_many_span"]
        print(
            f"cluster ({c['masters']} masters) vs one node, median of {c['trials']} interleaved trials: "
            + ", ".join(f"{op} {c['cluster'][op]} vs {c['single'][op]}" for op in c["single"])
            + f" (a get_many of {span['keys']} keys spans {span['slots']} slots on {span['masters']} masters)"
        )
    print("targets met: " + ", ".join(f"{k}={v}" for k, v in result["meets_targets"].items()))
    return 0
