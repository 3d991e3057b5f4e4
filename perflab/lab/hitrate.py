"""Search-cache hit rates, measured on a real Redis with the real SearchCache.

A stream of (user, query) searches (users uniform, queries Zipf-distributed like real search logs) is
replayed through `SearchCache.lookup`/`set` exactly as the service does on a miss, with result payloads
shaped like the service's. What varies per experiment is the one thing under study: TTL (replayed at a
fixed request rate in real time), query skew, Redis memory (a private server with `maxmemory` and
allkeys-lru, so eviction is Redis's own), and a warmed start against a cold one.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from perflab.cache import CacheManager, EmbeddingCache, SearchCache, make_redis
from perflab.config import Settings
from perflab.db.vocabulary import QueryVocabulary, ZipfQuerySampler
from perflab.embed import Embedder
from perflab.servers import RedisServer, endpoints
from perflab.servers.lifetime import scratch_dir
from perflab.servers.ports import free_port

Stream = list[tuple[str, str]]


@dataclass
class HitRateRun:
    label: str
    requests: int
    hits: int
    window: int
    timeline: list[float] = field(default_factory=list)  # hit rate per window of `window` requests
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def hit_rate(self) -> float:
        return self.hits / self.requests if self.requests else float("nan")


def synthetic_results(k: int = 20, seed: int = 0) -> list[dict[str, Any]]:
    """Results shaped (and sized) like the service's cached ones: ~350 bytes each as JSON."""
    rng = np.random.default_rng(seed)
    return [
        {
            "id": str(uuid.UUID(int=int(rng.integers(0, 2**63)))),
            "filename": f"IMG_{int(rng.integers(1000, 9999))}.jpg",
            "caption": "a golden retriever running along a beach at sunset, warm film photo",
            "media_type": "image",
            "mime_type": "image/jpeg",
            "uploaded_at": "2025-06-01T12:00:00+00:00",
            "width": 4032,
            "height": 3024,
            "similarity": float(1 - i * 0.01),
            "distance": float(i * 0.01),
            "derivatives": [{"name": "thumbnail", "key": "ab/cd/" + "0" * 56 + ".webp", "width": 300}],
        }
        for i in range(k)
    ]


def zipf_stream(n: int, *, users: int = 50, s: float = 1.1, seed: int = 0) -> Stream:
    """n searches: user ids uniform over `users`, queries Zipf(s) over the lab's query vocabulary."""
    rng = np.random.default_rng([seed, 17])
    who = rng.integers(0, users, size=n)
    sampler = ZipfQuerySampler(seed, s=s, vocabulary=QueryVocabulary(seed))
    queries = sampler.sample(n)
    return [(f"user-{int(u)}", q) for u, q in zip(who, queries, strict=True)]


def replay(
    cache: SearchCache,
    stream: Stream,
    *,
    label: str,
    rate_per_s: float | None = None,
    window: int = 250,
    results: list[dict[str, Any]] | None = None,
    track: bool = True,
) -> HitRateRun:
    """Send `stream` through the cache as the service would; optionally paced at `rate_per_s`."""
    payload = results if results is not None else synthetic_results()
    run = HitRateRun(label, len(stream), 0, window)
    in_window = 0
    t0 = time.perf_counter()
    for i, (user, query) in enumerate(stream):
        if rate_per_s:
            delay = t0 + i / rate_per_s - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        found = cache.lookup(user, query)
        if found.results is not None:
            run.hits += 1
            in_window += 1
        else:
            cache.set(user, query, None, payload, generation=found.generation)
        if track:
            cache.track(query)
        if (i + 1) % window == 0:
            run.timeline.append(in_window / window)
            in_window = 0
    return run


@contextmanager
def scratch_cache(
    settings: Settings, *, redis_url: str | None = None, ttl: float = 3600
) -> Iterator[SearchCache]:
    """A SearchCache under a fresh key prefix (deleted afterwards), on the lab's Redis or `redis_url`."""
    url = redis_url or endpoints(settings).redis_url
    prefix = f"hr{uuid.uuid4().hex[:10]}"
    client = make_redis(settings.replace(redis_socket_timeout=2.0, redis_connect_timeout=2.0), url)
    manager = CacheManager(client, prefix=prefix, default_ttl=int(max(ttl, 1)))
    try:
        yield SearchCache(manager, ttl=ttl)
    finally:
        manager.delete_pattern("*")
        client.close()


@contextmanager
def private_redis(folder: Path, maxmemory: str) -> Iterator[RedisServer]:
    """A Redis of our own with `maxmemory` and allkeys-lru: eviction under memory pressure is real.
    It is a child that dies with this process, and its files (the AOF: ~100 MB) go when it stops."""
    server = RedisServer(folder / f"redis-{maxmemory}", free_port(), maxmemory=maxmemory, daemonize=False)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)


def ttl_sweep(
    settings: Settings, stream: Stream, ttls: list[float], *, rate_per_s: float
) -> list[HitRateRun]:
    out = []
    for ttl in ttls:
        with scratch_cache(settings, ttl=ttl) as cache:
            out.append(replay(cache, stream, label=f"ttl={ttl:g}s", rate_per_s=rate_per_s))
            out[-1].extra["ttl_s"] = ttl
    return out


def skew_sweep(settings: Settings, n: int, skews: list[float], *, users: int, seed: int) -> list[HitRateRun]:
    out = []
    for s in skews:
        with scratch_cache(settings) as cache:
            out.append(replay(cache, zipf_stream(n, users=users, s=s, seed=seed), label=f"s={s:g}"))
            out[-1].extra["zipf_s"] = s
    return out


def capacity_sweep(
    settings: Settings, stream: Stream, capacities: list[str], folder: Path | None = None
) -> list[HitRateRun]:
    """One private Redis per capacity, under `folder` or a temp folder removed afterwards (also on
    failure and Ctrl-C)."""
    if folder is None:
        with scratch_dir("perflab-hitrate-") as tmp:
            return capacity_sweep(settings, stream, capacities, tmp)
    out = []
    for cap in capacities:
        with private_redis(folder, cap) as server, scratch_cache(settings, redis_url=server.url) as cache:
            run = replay(cache, stream, label=f"maxmemory={cap}")
            info = cache.manager.client.info()
            run.extra.update(maxmemory=cap, evicted_keys=int(info.get("evicted_keys", 0)),
                             used_memory_mb=round(int(info["used_memory"]) / 2**20, 2))  # fmt: skip
            out.append(run)
    return out


def warm_vs_cold(
    settings: Settings, yesterday: Stream, today: Stream, *, top_n: int = 20
) -> tuple[HitRateRun, HitRateRun]:
    """Start `today` with an empty cache, or after `SearchCache.warm` replayed yesterday's top queries
    for every user of today (what a deploy or a flush would do)."""
    payload = synthetic_results()
    with scratch_cache(settings) as cache:
        replay(cache, yesterday, label="yesterday")
        popular = cache.popular(top_n)
        users = sorted({u for u, _ in today})
        for user in users:
            cache.invalidate_user(user)
        cold = replay(cache, today, label="cold start", track=False)
    with scratch_cache(settings) as cache:
        replay(cache, yesterday, label="yesterday")
        for user in users:
            cache.invalidate_user(user)
        warmed_entries = sum(cache.warm(user, lambda q: payload, top_n=top_n) for user in users)
        warm = replay(cache, today, label=f"warmed (top {top_n})", track=False)
        warm.extra["warmed_entries"] = warmed_entries
    warm.extra["popular"] = popular[:10]
    return cold, warm


def embedding_savings(
    settings: Settings, embedder: Embedder, stream: Stream, *, sample: int = 60
) -> dict[str, float]:
    """What the embedding cache saves per search: its hit rate on the stream (it is shared by all
    users) times (embedding time − cache read time), each timed as medians here."""
    queries = [q for _, q in stream]
    seen: set[str] = set()
    hits = 0
    for q in queries:
        hits += q in seen
        seen.add(q)
    distinct = list(dict.fromkeys(queries))[:sample]
    embedder.embed(distinct[:2])  # load / warm up the model
    embed_ms = []
    for q in distinct:
        t0 = time.perf_counter()
        embedder.embed([q])
        embed_ms.append((time.perf_counter() - t0) * 1000)
    url = endpoints(settings).redis_url
    client = make_redis(settings, url)
    manager = CacheManager(client, prefix=f"emb{uuid.uuid4().hex[:10]}", default_ttl=3600)
    ecache = EmbeddingCache(manager, model=embedder.model_name.replace(":", "_"), dim=embedder.dim)
    vectors = embedder.embed(distinct)
    ecache.set_many(distinct, vectors)
    get_ms = []
    for q in distinct:
        t0 = time.perf_counter()
        ecache.get(q)
        get_ms.append((time.perf_counter() - t0) * 1000)
    manager.delete_pattern("*")
    client.close()
    hit_rate = hits / len(queries)
    embed_med, get_med = float(np.median(embed_ms)), float(np.median(get_ms))
    return {
        "embedding_hit_rate": hit_rate,
        "embed_p50_ms": embed_med,
        "embed_p95_ms": float(np.percentile(embed_ms, 95)),
        "cache_get_p50_ms": get_med,
        "cache_get_p95_ms": float(np.percentile(get_ms, 95)),
        "saved_ms_per_search": hit_rate * (embed_med - get_med),
        "speedup_on_hit": embed_med / get_med if get_med else float("nan"),
    }


def runs_table(runs: list[HitRateRun]) -> list[dict[str, Any]]:
    return [{"label": r.label, "requests": r.requests, "hit_rate": r.hit_rate, **r.extra} for r in runs]


RunFn = Callable[..., HitRateRun]
