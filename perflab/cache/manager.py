"""CacheManager: fail-open get/set/delete over one redis-py client, with stampede-proof get_or_set.

Every call goes through the same guard: the circuit breaker decides whether to touch Redis at all, a
Redis error is counted and turned into a miss (or a no-op), and the latency lands in a histogram. Keys
passed in are relative: the manager prefixes them with `{prefix}:`.

`get_or_set` runs the factory once per key across threads and processes: threads of one process
coalesce on an in-process flight, processes on a Redis lock with an owner token that only its owner
can release (compare-and-delete in Lua). Waiters poll for the value with a bounded wait. Values it
writes carry XFetch metadata, so hot keys are recomputed by one caller shortly before they expire.
"""

from __future__ import annotations

import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from time import perf_counter_ns
from typing import Any, TypeVar, cast

import redis
from redis.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from perflab.cache.breaker import CircuitBreaker, ShardBreakers
from perflab.cache.client import NodeBatch, ShardedCluster, ShardOpen, node_batch
from perflab.cache.errors import CacheError, CacheKeyError, CacheUnavailable
from perflab.cache.keys import check_prefix, glob_escape, sibling
from perflab.cache.serializer import CorruptValue, dumps, dumps_entry, loads, loads_entry
from perflab.cache.stats import CacheStats, StatsRecorder

log = logging.getLogger(__name__)

T = TypeVar("T")
RedisClient = redis.Redis | RedisCluster

_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError)
# redis-py's cluster errors about the slot map (e.g. a slot no node covers) are not RedisErrors.
_FAILURES = (RedisError, RedisClusterException)
_SCAN_COUNT = 1000
_UNLINK_BATCH = 500
_POLL_FIRST = 0.002
_POLL_MAX = 0.05

# GET the value; on a miss try to take the lock. -> {1, value} | {2} (lock is ours) | {0} (held by another)
_GET_OR_LOCK = """
local v = redis.call('GET', KEYS[1])
if v then return {1, v} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2} end
return {0}
"""
# Store the value, then release the lock only if we still own it.
_STORE_AND_RELEASE = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if redis.call('GET', KEYS[2]) == ARGV[3] then return redis.call('DEL', KEYS[2]) end
return 0
"""
# Compare-and-delete: a slow owner whose lock expired cannot release the next owner's lock.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_HIT, _LOCKED, _BUSY, _DOWN = 1, 2, 0, -1


@dataclass
class _Flight:
    """One in-process computation of a key that other threads wait for."""

    owner: int
    done: threading.Event = field(default_factory=threading.Event)
    value: Any = None
    error: BaseException | None = None


class CacheManager:
    """Fail-open cache operations under `{prefix}:`. The client (and its pool) is passed in, not owned."""

    def __init__(
        self,
        client: RedisClient,
        *,
        prefix: str,
        default_ttl: int,
        breaker: CircuitBreaker | ShardBreakers | None = None,
    ) -> None:
        if default_ttl <= 0:
            raise CacheError(f"default_ttl must be > 0 seconds, got {default_ttl}")
        self.client = client
        self.prefix = check_prefix(prefix)
        self.default_ttl = default_ttl
        # On a ShardedCluster the breakers are per node, inside the client (see cache/client.py).
        if breaker is None:
            breaker = client.breakers if isinstance(client, ShardedCluster) else CircuitBreaker()
        self.breaker = breaker
        self._p = prefix + ":"
        self._stats = StatsRecorder()
        if _decodes_responses(client):
            raise CacheError("CacheManager needs a bytes client (decode_responses=False): values are binary")
        self._cluster = isinstance(client, RedisCluster)
        # Typed for a bytes client. On a cluster, MGET across slots is split per slot by redis-py.
        mget = client.mget_nonatomic if isinstance(client, RedisCluster) else client.mget
        self._mget = cast(Callable[[list[str]], list[bytes | None]], mget)
        self._get = cast(Callable[[str], bytes | None], client.get)
        self._observe = self._stats.observe
        # register_script only computes the SHA; the script is loaded on first use.
        self._get_or_lock = client.register_script(_GET_OR_LOCK)
        self._store_and_release = client.register_script(_STORE_AND_RELEASE)
        self._release = client.register_script(_RELEASE)
        self._flights: dict[str, _Flight] = {}
        self._flights_lock = threading.Lock()

    # -- keys and the guard every call goes through ------------------------------------------------

    def key(self, key: str) -> str:
        """The full Redis key for a relative key."""
        return self._p + key

    def lock_key(self, key: str) -> str:
        """The full key of `key`'s get_or_set lock: under the prefix, in the same cluster slot as `key`."""
        return sibling(self._p + key, "lock", self._p)

    def call(self, op: str, fn: Callable[[RedisClient], T], default: T, *, fail_open: bool = True) -> T:
        """Run `fn(client)` under the breaker, timing it as `op`.

        On a Redis failure return `default` (fail_open) or raise CacheUnavailable (fail_open=False).
        """
        if not self.breaker.allow():
            self._stats.add(errors=1, short_circuits=1)
            if fail_open:
                return default
            raise CacheUnavailable(f"redis is unavailable (circuit breaker open) during {op}")
        t0 = perf_counter_ns()
        try:
            result = fn(self.client)
        except _FAILURES as exc:
            self._failed(op, exc, t0)
            if fail_open:
                return default
            raise CacheUnavailable(f"redis {op} failed: {exc}") from exc
        self.breaker.record_success()
        self._stats.observe(op, perf_counter_ns() - t0, 0, 0)
        return result

    def count(self, *, hits: int = 0, misses: int = 0, corrupt: int = 0) -> None:
        """Let a cache built on this manager count its own lookups (e.g. a stale search result)."""
        if hits or misses:
            self._stats.add(hits=hits, misses=misses)
        if corrupt:
            self._stats.corrupt(corrupt)

    def _failed(self, op: str, exc: Exception, t0: int) -> None:
        self._stats.add(errors=1, short_circuits=int(isinstance(exc, ShardOpen)))
        self._stats.observe(op + ".error", perf_counter_ns() - t0, 0, 0)
        if isinstance(exc, _UNAVAILABLE):
            self.breaker.record_failure()
        log.debug("redis %s failed: %r", op, exc)

    def _ttl_ms(self, ttl: float | None) -> int:
        ttl = self.default_ttl if ttl is None else ttl
        if not ttl > 0:
            raise CacheError(f"ttl must be > 0 seconds, got {ttl}")
        return max(1, int(ttl * 1000))

    # -- bytes -------------------------------------------------------------------------------------

    def get_raw(self, key: str) -> bytes | None:
        """The stored bytes of `key`, or None on a miss or any Redis failure. The hot path."""
        breaker = self.breaker
        if not breaker.clean and not breaker.allow():
            self._stats.add(errors=1, short_circuits=1)
            return None
        t0 = perf_counter_ns()
        try:
            data = self._get(self._p + key)
        except _FAILURES as exc:
            self._failed("get", exc, t0)
            return None
        elapsed = perf_counter_ns() - t0
        if not breaker.clean:
            breaker.record_success()
        if data is None:
            self._observe("get", elapsed, 0, 1)
        else:
            self._observe("get", elapsed, 1, 0)
        return data

    def get_many_raw(self, keys: Iterable[str]) -> list[bytes | None]:
        """Stored bytes for each key in one round trip (MGET); all None when Redis fails."""
        full = [self._p + k for k in keys]
        if not full:
            return []
        if not self.breaker.allow():
            self._stats.add(errors=1, short_circuits=1)
            return [None] * len(full)
        t0 = perf_counter_ns()
        if isinstance(self.client, ShardedCluster):  # per node: a dead master costs only its keys
            batch = node_batch(self.client, full, lambda pipe, keys: pipe.mget(keys))
            self._count_batch("get_many", batch, t0)
            values = batch.values
            found = len(full) - values.count(None)
            self._stats.observe("get_many", perf_counter_ns() - t0, found, len(full) - found)
            return values
        try:
            values = self._mget(full)
        except RedisError as exc:
            self._failed("get_many", exc, t0)
            return [None] * len(full)
        self.breaker.record_success()
        found = len(full) - values.count(None)
        self._stats.observe("get_many", perf_counter_ns() - t0, found, len(full) - found)
        return values

    def set_raw(self, key: str, data: bytes, ttl: float | None = None) -> bool:
        """Store bytes with a TTL (seconds, default_ttl when None). False when Redis failed."""
        px = self._ttl_ms(ttl)
        ok = self.call("set", lambda c: c.set(self._p + key, data, px=px), None)
        if ok:
            self._stats.add(sets=1)
        return bool(ok)

    def set_many_raw(self, mapping: Mapping[str, bytes], ttl: float | None = None) -> bool:
        """Store many values with one TTL in one round trip (a non-transactional pipeline)."""
        px = self._ttl_ms(ttl)
        if not mapping:
            return True

        if isinstance(self.client, ShardedCluster):  # per node, as get_many_raw
            t0 = perf_counter_ns()
            full = [self._p + k for k in mapping]
            data = list(mapping.values())
            index = {k: i for i, k in enumerate(full)}

            def queue(pipe: Any, keys: list[str]) -> None:
                for k in keys:
                    pipe.set(k, data[index[k]], px=px)

            batch = node_batch(self.client, full, queue)
            self._count_batch("set_many", batch, t0)
            stored = sum(1 for v in batch.values if v)
            self._stats.add(sets=stored)
            self._stats.observe("set_many", perf_counter_ns() - t0, 0, 0)
            return stored == len(full)

        def run(client: RedisClient) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for key, data in mapping.items():
                pipe.set(self._p + key, data, px=px)
            return pipe.execute()

        done = self.call("set_many", run, None)
        if done is None:
            return False
        self._stats.add(sets=len(mapping))
        return True

    def _count_batch(self, op: str, batch: NodeBatch, t0: int) -> None:
        """Count a per-node batch's failures as the guard counts one call's."""
        if batch.skipped:
            self._stats.add(errors=batch.skipped, short_circuits=batch.skipped)
        for exc in batch.errors:
            self._failed(op, exc, t0)

    # -- values ------------------------------------------------------------------------------------

    def get(self, key: str) -> Any:
        """The cached value, or None on a miss, a corrupt value or any Redis failure."""
        data = self.get_raw(key)
        if data is None:
            return None
        try:
            return loads(data)
        except CorruptValue:
            self._stats.corrupt(1)
            return None

    def get_many(self, keys: Iterable[str]) -> list[Any]:
        """Values for each key (None where missing) in one round trip."""
        out: list[Any] = []
        bad = 0
        for data in self.get_many_raw(keys):
            if data is None:
                out.append(None)
                continue
            try:
                out.append(loads(data))
            except CorruptValue:
                bad += 1
                out.append(None)
        if bad:
            self._stats.corrupt(bad)
        return out

    def set(self, key: str, value: Any, ttl: float | None = None) -> bool:
        """Cache a JSON-like value or bytes; CacheValueError if it cannot be encoded, False if Redis failed."""
        return self.set_raw(key, dumps(value), ttl)

    def set_many(self, mapping: Mapping[str, Any], ttl: float | None = None) -> bool:
        """Cache many values with one TTL in one round trip."""
        return self.set_many_raw({k: dumps(v) for k, v in mapping.items()}, ttl)

    def delete(self, *keys: str) -> int:
        """UNLINK keys (freed in the background); the number that existed, 0 when Redis failed."""
        if not keys:
            return 0
        n = int(self.call("delete", lambda c: c.unlink(*[self._p + k for k in keys]), 0))
        if n:
            self._stats.add(deletes=n)
        return n

    def delete_pattern(self, pattern: str) -> int:
        """Delete keys matching a glob under this prefix with SCAN + batched UNLINK (never KEYS).

        Returns how many were deleted (so far, if Redis failed midway).
        """
        match = glob_escape(self.prefix) + ":" + pattern
        deleted = 0

        def run(client: RedisClient) -> int:
            nonlocal deleted
            batch: list[bytes] = []
            for key in client.scan_iter(match=match, count=_SCAN_COUNT):
                batch.append(key)
                if len(batch) >= _UNLINK_BATCH:
                    deleted += client.unlink(*batch)
                    batch.clear()
            if batch:
                deleted += client.unlink(*batch)
            return deleted

        self.call("delete_pattern", run, deleted)
        if deleted:
            self._stats.add(deletes=deleted)
        return deleted

    # -- get_or_set ----------------------------------------------------------------------------------

    def get_or_set(
        self,
        key: str,
        factory: Callable[[], T],
        ttl: float | None = None,
        *,
        lock_timeout: float = 10.0,
        wait_timeout: float = 5.0,
        beta: float = 1.0,
    ) -> T:
        """The cached value of `key`, or `factory()`'s, computed by one caller across threads and processes.

        Callers that find another one computing wait up to `wait_timeout` seconds for its value, then
        compute it themselves. The lock expires after `lock_timeout` seconds in case its holder dies.
        `beta` tunes XFetch early recomputation (0 disables it; above 1 favours earlier refreshes).
        When Redis is down the factory is called directly: slower, never wrong. Exceptions of the
        factory propagate to the caller and to the threads that waited for it.
        """
        full = self._p + key
        lock = self.lock_key(key)
        me = threading.get_ident()
        with self._flights_lock:
            flight = self._flights.get(full)
            leader = flight is None
            if flight is None:
                flight = self._flights[full] = _Flight(owner=me)
        if not leader:
            if flight.owner == me:
                raise CacheKeyError(f"get_or_set({key!r}) called again from inside its own factory")
            self._stats.add(coalesced=1)
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return flight.value
        try:
            flight.value = self._fill(
                full, lock, factory, self._ttl_ms(ttl), lock_timeout, wait_timeout, beta
            )
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._flights_lock:
                del self._flights[full]
            flight.done.set()
        return flight.value

    def _fill(
        self,
        full: str,
        lock: str,
        factory: Callable[[], T],
        ttl_ms: int,
        lock_timeout: float,
        wait_timeout: float,
        beta: float,
    ) -> T:
        token = os.urandom(16).hex()
        lock_ms = max(1, int(lock_timeout * 1000))
        deadline: float | None = None
        delay = _POLL_FIRST
        first = True
        while True:
            status, data = self._get_or_lock_once(full, lock, token, lock_ms)
            if first:
                self.count(hits=int(status == _HIT), misses=int(status != _HIT))
                first = False
            if status == _DOWN:
                return self._compute(factory)
            if status == _LOCKED:
                return self._lead(full, lock, token, factory, ttl_ms)
            if status == _HIT:
                try:
                    value, delta, expiry = loads_entry(cast(bytes, data))
                except CorruptValue:
                    self._stats.corrupt(1)
                    if self._try_lock(lock, token, lock_ms):
                        return self._lead(full, lock, token, factory, ttl_ms)
                else:
                    due = beta > 0 and delta > 0 and _xfetch_due(delta, beta, expiry)
                    if due and self._try_lock(lock, token, lock_ms):
                        self._stats.add(early_refreshes=1)
                        return self._lead(full, lock, token, factory, ttl_ms)
                    return value
            # Someone else holds the lock: wait for their value, bounded.
            now = time.monotonic()
            if deadline is None:
                deadline = now + wait_timeout
                self._stats.add(lock_waits=1)
            if now >= deadline:
                self._stats.add(lock_timeouts=1)
                return self._compute_and_store(full, factory, ttl_ms)
            time.sleep(min(delay * (0.5 + random.random()), deadline - now))
            delay = min(delay * 2, _POLL_MAX)

    def _get_or_lock_once(self, full: str, lock: str, token: str, lock_ms: int) -> tuple[int, bytes | None]:
        reply = self.call(
            "get_or_lock",
            lambda c: self._get_or_lock(keys=[full, lock], args=[token, lock_ms], client=c),
            None,
        )
        if reply is None:
            return _DOWN, None
        return int(reply[0]), (reply[1] if len(reply) > 1 else None)

    def _try_lock(self, lock: str, token: str, lock_ms: int) -> bool:
        return bool(self.call("lock", lambda c: c.set(lock, token, nx=True, px=lock_ms), None))

    def _unlock(self, lock: str, token: str) -> None:
        self.call("unlock", lambda c: self._release(keys=[lock], args=[token], client=c), 0)

    def _timed(self, factory: Callable[[], T]) -> tuple[T, float]:
        self._stats.add(factory_calls=1)
        t0 = time.perf_counter()
        value = factory()
        return value, time.perf_counter() - t0

    def _compute(self, factory: Callable[[], T]) -> T:
        return self._timed(factory)[0]

    def _compute_and_store(self, full: str, factory: Callable[[], T], ttl_ms: int) -> T:
        """The waiter that gave up: compute, store without the lock (the holder may be dead)."""
        value, delta = self._timed(factory)
        data = dumps_entry(value, delta, time.time() + ttl_ms / 1000)
        if self.call("set", lambda c: c.set(full, data, px=ttl_ms), None):
            self._stats.add(sets=1)
        return value

    def _lead(self, full: str, lock: str, token: str, factory: Callable[[], T], ttl_ms: int) -> T:
        try:
            value, delta = self._timed(factory)
            data = dumps_entry(value, delta, time.time() + ttl_ms / 1000)
        except BaseException:
            self._unlock(lock, token)
            raise
        stored = self.call(
            "store",
            lambda c: self._store_and_release(keys=[full, lock], args=[data, ttl_ms, token], client=c),
            None,
        )
        if stored is not None:
            self._stats.add(sets=1)
        return value

    # -- health and stats ----------------------------------------------------------------------------

    def healthy(self) -> bool:
        """True when Redis answers PING now (bounded by the socket timeout; False while the breaker is open)."""
        return bool(self.call("ping", lambda c: c.ping(), False))

    def stats(self) -> CacheStats:
        """This manager's counters and latency percentiles, plus the breaker state."""
        return self._stats.snapshot(self.breaker.state)

    def counts(self) -> dict[str, int]:
        """Just the counters (see stats.COUNTERS): cheap, no latency percentiles computed."""
        return self._stats.counts()

    def reset_stats(self) -> None:
        self._stats.reset()

    def server_stats(self) -> dict[str, Any]:
        """Server-wide figures from INFO: keyspace hit rate, memory, evictions. {"available": False} if down.

        On a cluster the counters are summed over the masters that answered (replicas hold copies, and
        serve no reads here); `nodes` / `nodes_down` say how many that was, `redis_versions` lists them.
        """
        if isinstance(self.client, ShardedCluster):
            nodes = [self._node_info(n) for n in self.client.get_primaries()]
            infos = [i for i in nodes if i is not None]
            if not infos:
                return {"available": False}
            info = _sum_info(infos)
            extra: dict[str, Any] = {"nodes": len(infos), "nodes_down": len(nodes) - len(infos)}
        else:
            single: dict[str, Any] | None = self.call("info", lambda c: c.info(), None)
            if not single:
                return {"available": False}
            info = single
            extra = {"nodes": 1, "nodes_down": 0}
        hits = int(info.get("keyspace_hits", 0))
        misses = int(info.get("keyspace_misses", 0))
        return {
            "available": True,
            "redis_version": info.get("redis_version"),
            "redis_versions": sorted(set(str(info.get("redis_version")).split(","))),
            "keyspace_hits": hits,
            "keyspace_misses": misses,
            "hit_rate": hits / (hits + misses) if hits + misses else None,
            "used_memory": int(info.get("used_memory", 0)),
            "used_memory_human": info.get("used_memory_human"),
            "maxmemory": int(info.get("maxmemory", 0)),
            "maxmemory_policy": info.get("maxmemory_policy"),
            "evicted_keys": int(info.get("evicted_keys", 0)),
            "expired_keys": int(info.get("expired_keys", 0)),
            "connected_clients": int(info.get("connected_clients", 0)),
            **extra,
        }

    def _node_info(self, node: Any) -> dict[str, Any] | None:
        """One node's INFO (redis-py returns {name: info} or the info itself), None if it did not answer."""
        reply = self.call("info", lambda c: c.info(target_nodes=node), None)
        if isinstance(reply, dict) and node.name in reply and isinstance(reply[node.name], dict):
            reply = reply[node.name]
        return reply if isinstance(reply, dict) and reply else None


def _decodes_responses(client: RedisClient) -> bool:
    kwargs = client.get_connection_kwargs() if hasattr(client, "get_connection_kwargs") else {}
    return bool(kwargs.get("decode_responses"))


def _xfetch_due(delta: float, beta: float, expiry: float) -> bool:
    """XFetch (Vattani et al., VLDB 2015): recompute early with probability rising towards expiry."""
    return time.time() - delta * beta * math.log(1.0 - random.random()) >= expiry


_SUMMED = ("keyspace_hits", "keyspace_misses", "used_memory", "maxmemory", "evicted_keys", "expired_keys",
           "connected_clients")  # fmt: skip


def _sum_info(nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """One INFO for several masters: counters summed, versions and policies joined when they differ."""
    merged = dict(nodes[0])
    for name in _SUMMED:
        merged[name] = sum(int(n.get(name, 0)) for n in nodes)
    for name in ("redis_version", "maxmemory_policy"):
        merged[name] = ",".join(sorted({str(n.get(name)) for n in nodes}))
    merged["used_memory_human"] = f"{merged['used_memory'] / 2**20:.2f}M"
    return merged
