"""CacheManager on the real shared Redis: values, TTLs, batches, SCAN deletes, stats, get_or_set."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from perflab.cache import (
    CacheError,
    CacheKeyError,
    CacheManager,
    CacheValueError,
    FactoryFailed,
    make_redis,
)
from perflab.config import Settings

pytestmark = pytest.mark.both_redis  # each Redis test runs on a single server and on the cluster


def test_values_round_trip_and_a_miss_is_none(cache_manager: CacheManager) -> None:
    values: dict[str, Any] = {
        "dict": {"a": [1, 2.5, "x"], "nested": {"ok": True}},
        "list": [1, 2, 3],
        "str": "héllo 😀",
        "int": 7,
        "bytes": b"\x00\xffraw",
    }
    for key, value in values.items():
        assert cache_manager.set(key, value)
    for key, value in values.items():
        assert cache_manager.get(key) == value
    assert cache_manager.get("missing") is None
    stats = cache_manager.stats()
    assert (stats.hits, stats.misses, stats.sets) == (5, 1, 5)
    assert stats.hit_rate == pytest.approx(5 / 6)


def test_keys_live_under_the_prefix_with_the_ttl(
    cache_manager: CacheManager, redis_client: redis.Redis
) -> None:
    cache_manager.set("a", 1)
    cache_manager.set("b", 1, ttl=0.5)
    assert 0 < redis_client.pttl(f"{cache_manager.prefix}:a") <= 60_000
    assert 0 < redis_client.pttl(f"{cache_manager.prefix}:b") <= 500


def test_bad_values_and_ttls_raise_typed_errors_without_writing(
    cache_manager: CacheManager, redis_client: redis.Redis
) -> None:
    with pytest.raises(CacheValueError):
        cache_manager.set("x", object())
    with pytest.raises(CacheError):
        cache_manager.set("x", 1, ttl=0)
    with pytest.raises(CacheError):
        CacheManager(cache_manager.client, prefix="p", default_ttl=0)
    with pytest.raises(CacheKeyError):
        CacheManager(cache_manager.client, prefix="p{1}", default_ttl=1)
    assert not redis_client.exists(f"{cache_manager.prefix}:x")


def test_get_many_and_set_many_take_one_round_trip_each(cache_manager: CacheManager) -> None:
    assert cache_manager.set_many({f"k{i}": {"i": i} for i in range(50)}, ttl=30)
    got = cache_manager.get_many([f"k{i}" for i in range(50)] + ["absent"])
    assert got == [{"i": i} for i in range(50)] + [None]
    latency = cache_manager.stats().latency
    assert latency["set_many"].count == 1
    assert latency["get_many"].count == 1
    assert "get" not in latency and "set" not in latency
    assert cache_manager.get_many([]) == []


def test_a_corrupt_or_foreign_value_is_a_counted_miss(
    cache_manager: CacheManager, redis_client: redis.Redis
) -> None:
    redis_client.set(f"{cache_manager.prefix}:foreign", b"\x7fnot ours")
    redis_client.set(f"{cache_manager.prefix}:truncated", b'\x01{"a":')
    assert cache_manager.get("foreign") is None
    assert cache_manager.get_many(["truncated", "foreign"]) == [None, None]
    stats = cache_manager.stats()
    assert (stats.corrupt, stats.hits, stats.misses) == (3, 0, 3)


def test_delete_and_delete_pattern_stay_inside_the_prefix(
    cache_manager: CacheManager, redis_client: redis.Redis, settings
) -> None:
    neighbour = CacheManager(cache_manager.client, prefix=settings.key_prefix + "n", default_ttl=60)
    cache_manager.set_many({f"dp:{i}": i for i in range(1200)})
    cache_manager.set_many({"keep": 1, "dq:1": 1})
    neighbour.set("dp:1", 1)
    assert cache_manager.delete_pattern("dp:*") == 1200
    assert cache_manager.get_many(["keep", "dq:1"]) == [1, 1]
    assert neighbour.get("dp:1") == 1
    assert cache_manager.delete("keep", "dq:1", "never") == 2
    assert cache_manager.delete() == 0
    neighbour.delete_pattern("*")
    assert cache_manager.stats().deletes == 1202


def test_server_stats_and_health(cache_manager: CacheManager) -> None:
    assert cache_manager.healthy()
    info = cache_manager.server_stats()
    assert info["available"] is True
    assert info["redis_version"].startswith(("6.", "7."))
    for field in ("keyspace_hits", "keyspace_misses", "used_memory", "evicted_keys", "maxmemory"):
        assert isinstance(info[field], int)


# -- get_or_set --------------------------------------------------------------------------------------


def _counting(value: Any, delay: float = 0.0) -> tuple[Callable[[], Any], list[int]]:
    calls: list[int] = []
    lock = threading.Lock()

    def factory() -> Any:
        with lock:
            calls.append(1)
        time.sleep(delay)
        return value

    return factory, calls


def test_get_or_set_computes_once_then_hits(cache_manager: CacheManager) -> None:
    factory, calls = _counting({"v": 1})
    assert cache_manager.get_or_set("g", factory) == {"v": 1}
    assert cache_manager.get_or_set("g", factory) == {"v": 1}
    assert cache_manager.get("g") == {"v": 1}  # a plain get reads what get_or_set wrote
    assert len(calls) == 1


def test_get_or_set_caches_none(cache_manager: CacheManager) -> None:
    factory, calls = _counting(None)
    assert cache_manager.get_or_set("none", factory) is None
    assert cache_manager.get_or_set("none", factory) is None
    assert len(calls) == 1


def _stampede(
    managers: list[CacheManager], threads_per_manager: int, factory: Callable[[], Any]
) -> list[Any]:
    n = len(managers) * threads_per_manager
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        manager = managers[i % len(managers)]
        barrier.wait()
        results[i] = manager.get_or_set("hot", factory, ttl=30, wait_timeout=20)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_stampede_of_200_threads_runs_the_factory_once(cache_manager: CacheManager) -> None:
    factory, calls = _counting({"answer": 42}, delay=0.2)
    results = _stampede([cache_manager], 200, factory)
    assert len(calls) == 1
    assert results == [{"answer": 42}] * 200
    stats = cache_manager.stats()
    assert stats.factory_calls == 1
    # the callers that arrived while it ran waited on the flight; any that arrived after it stored
    # found a plain hit (hits never wait, so which of the two each caller was depends on timing)
    assert 1 <= stats.coalesced <= 199


def test_stampede_across_120_managers_runs_the_factory_once(
    cache_manager: CacheManager, settings: Settings, redis_url: str
) -> None:
    """Every thread its own manager, as if each were its own process: only the Redis lock protects.

    The client gets room for every thread and patient timeouts: on a starved machine a 0.25 s socket
    timeout or a full pool is Redis "down" for that caller, which rightly fails open and computes."""
    patient = settings.replace(redis_socket_timeout=10, redis_connect_timeout=5, redis_max_connections=128)
    client = make_redis(patient, redis_url)
    managers = [CacheManager(client, prefix=cache_manager.prefix, default_ttl=60) for _ in range(120)]
    factory, calls = _counting({"answer": 42}, delay=0.2)
    try:
        results = _stampede(managers, 1, factory)
    finally:
        client.close()
    assert len(calls) == 1
    assert results == [{"answer": 42}] * 120
    stats = [m.stats() for m in managers]
    assert sum(s.lock_waits for s in stats) >= 1  # followers waited on the Redis lock...
    assert sum(s.lock_timeouts for s in stats) == 0  # ...and got the leader's value


def test_a_follower_gives_up_after_wait_timeout_and_computes(
    cache_manager: CacheManager, redis_client: redis.Redis
) -> None:
    lock = cache_manager.lock_key("stuck")
    assert lock.startswith(cache_manager.key(""))  # cleaned up with the prefix
    redis_client.set(lock, "someone-else", px=60_000)
    factory, calls = _counting("mine")
    assert cache_manager.get_or_set("stuck", factory, wait_timeout=0.2) == "mine"
    assert len(calls) == 1
    stats = cache_manager.stats()
    assert (stats.lock_waits, stats.lock_timeouts) == (1, 1)
    assert redis_client.get(lock) == b"someone-else"  # not ours to release


def test_a_lock_whose_holder_died_expires_and_a_waiter_takes_over(
    cache_manager: CacheManager, redis_client: redis.Redis
) -> None:
    redis_client.set(cache_manager.lock_key("orphan"), "dead-process", px=150)
    factory, calls = _counting("recovered")
    assert cache_manager.get_or_set("orphan", factory, wait_timeout=10) == "recovered"
    assert len(calls) == 1
    assert cache_manager.stats().lock_timeouts == 0


@pytest.mark.parametrize("fails", [False, True])
def test_a_slow_owner_never_releases_the_next_owners_lock(
    cache_manager: CacheManager, redis_client: redis.Redis, fails: bool
) -> None:
    lock = cache_manager.lock_key("slow")

    def slow_factory() -> str:
        # Our lock "expired" while we computed and another process took it.
        redis_client.set(lock, "next-owner", px=60_000)
        if fails:
            raise RuntimeError("late and failing")
        return "late"

    if fails:
        with pytest.raises(RuntimeError):
            cache_manager.get_or_set("slow", slow_factory)
    else:
        assert cache_manager.get_or_set("slow", slow_factory) == "late"
        assert cache_manager.get("slow") == "late"  # stored all the same
    assert redis_client.get(lock) == b"next-owner"


def test_a_failing_factory_releases_the_lock_and_propagates(
    cache_manager: CacheManager, redis_client: redis.Redis
) -> None:
    def boom() -> Any:
        raise RuntimeError("factory failed")

    with pytest.raises(RuntimeError, match="factory failed"):
        cache_manager.get_or_set("fails", boom, failure_ttl=0.3)
    assert not redis_client.exists(cache_manager.lock_key("fails"))
    assert 0 < redis_client.pttl(cache_manager.failure_key("fails")) <= 300  # remembered, briefly
    factory, calls = _counting("second try")
    with pytest.raises(FactoryFailed, match="RuntimeError: factory failed"):
        cache_manager.get_or_set("fails", factory)  # within the window: not called
    assert calls == []
    _wait_until(lambda: not redis_client.exists(cache_manager.failure_key("fails")))
    _wait_until(lambda: _succeeds(lambda: cache_manager.get_or_set("fails", factory)))
    assert cache_manager.get_or_set("fails", factory) == "second try"
    assert len(calls) == 1
    assert not redis_client.exists(cache_manager.failure_key("fails"))


def _wait_until(condition: Callable[[], bool], limit: float = 10.0) -> None:
    """Poll `condition` (a TTL running out, threads reaching a point); fail the test after `limit` s."""
    end = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.01)


def _succeeds(call: Callable[[], Any]) -> bool:
    try:
        call()
    except FactoryFailed:
        return False
    return True


def test_xfetch_recomputes_early_only_when_enabled(cache_manager: CacheManager) -> None:
    factory, calls = _counting("v", delay=0.02)
    cache_manager.get_or_set("x", factory, ttl=60)
    cache_manager.get_or_set("x", factory, ttl=60, beta=0)  # disabled: a plain hit
    assert len(calls) == 1
    # beta so large that -delta * beta * ln(u) exceeds the remaining 60 s for any u < 1.
    cache_manager.get_or_set("x", factory, ttl=60, beta=1e9)
    assert len(calls) == 2
    assert cache_manager.stats().early_refreshes == 1


def test_get_or_set_from_inside_its_own_factory_is_refused(cache_manager: CacheManager) -> None:
    def recursive() -> Any:
        return cache_manager.get_or_set("r", recursive)

    with pytest.raises(CacheKeyError):
        cache_manager.get_or_set("r", recursive)


def test_a_decoding_client_is_refused(servers) -> None:
    with pytest.raises(CacheError, match="decode_responses"):
        CacheManager(
            redis.Redis.from_url(servers.redis_url, decode_responses=True), prefix="p", default_ttl=1
        )


def test_make_redis_does_no_io_until_the_first_command(settings) -> None:
    from perflab.servers.ports import free_port

    client = make_redis(settings, f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    with pytest.raises(redis.ConnectionError):
        client.ping()
    assert client.connection_pool.connection_kwargs["socket_timeout"] == settings.redis_socket_timeout
    assert client.connection_pool.connection_kwargs["retry"].get_retries() == 0


# -- XFetch never blocks a hit; a failing factory is not called by every waiter ------------------------


def test_an_early_refresh_never_blocks_the_other_threads_of_its_process(cache_manager: CacheManager) -> None:
    """Issue 16.3: threads sharing one manager on a hot key while one of them refreshes it early."""
    # a 20 ms factory: with beta=1e9 XFetch then finds every later read due (see test_xfetch_...)
    assert cache_manager.get_or_set("hot", _counting("old", delay=0.02)[0], ttl=60) == "old"
    started, release = threading.Event(), threading.Event()
    refresh_calls: list[int] = []

    def slow_refresh() -> str:
        refresh_calls.append(1)
        started.set()
        release.wait(30)
        return "new"

    def reader_factory() -> str:
        raise AssertionError("a reader of a cached key must never compute it")

    refresher = threading.Thread(
        target=lambda: cache_manager.get_or_set("hot", slow_refresh, ttl=60, beta=1e9)
    )
    refresher.start()
    try:
        assert started.wait(10)
        answers: list[Any] = []
        # beta=1e9: XFetch says "due" to every reader too; only the lock holder may refresh.
        readers = [
            threading.Thread(
                target=lambda beta=beta: answers.append(
                    cache_manager.get_or_set("hot", reader_factory, ttl=60, beta=beta)
                )
            )
            for beta in [1e9, 1.0, 0.0] * 4
        ]
        for t in readers:
            t.start()
        for t in readers:
            t.join(10)
        assert not release.is_set()  # the refresh is still running...
        assert answers == ["old"] * 12  # ...and every reader already has the current value
    finally:
        release.set()
        refresher.join(10)
    assert refresh_calls == [1]
    assert cache_manager.get("hot") == "new"
    stats = cache_manager.stats()
    assert (stats.coalesced, stats.early_refreshes, stats.factory_calls) == (0, 1, 2)


def test_a_failing_early_refresh_keeps_the_current_value(cache_manager: CacheManager) -> None:
    cache_manager.get_or_set("hot", _counting("old", delay=0.02)[0], ttl=60)

    def boom() -> str:
        raise RuntimeError("backend down")

    assert cache_manager.get_or_set("hot", boom, ttl=60, beta=1e9) == "old"
    assert cache_manager.get("hot") == "old"
    # the failure is remembered: the next due reader does not call the failing backend again
    factory, calls = _counting("new")
    assert cache_manager.get_or_set("hot", factory, ttl=60, beta=1e9) == "old"
    assert calls == []


def _failing_herd(managers: list[CacheManager], threads_per_manager: int) -> tuple[list[int], list[Any]]:
    """Everyone asks for one missing key whose factory fails once the others are waiting for it."""
    n = len(managers) * threads_per_manager
    calls: list[int] = []
    barrier = threading.Barrier(n)

    def waiting() -> int:
        return sum(m.stats().coalesced + m.stats().lock_waits for m in managers)

    def failing() -> Any:
        calls.append(1)
        _wait_until(lambda: waiting() >= n - 1, limit=60)
        raise RuntimeError("backend down")

    outcomes: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            outcomes[i] = managers[i % len(managers)].get_or_set(
                "herd", failing, ttl=30, lock_timeout=120, wait_timeout=120, failure_ttl=120
            )
        except Exception as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return calls, outcomes


def test_a_failing_factory_is_called_once_by_a_herd_of_one_process(cache_manager: CacheManager) -> None:
    calls, outcomes = _failing_herd([cache_manager], 32)
    assert len(calls) == 1
    assert all(isinstance(o, RuntimeError) for o in outcomes)  # the factory's own error, for every waiter
    factory, later = _counting("value")
    for _ in range(5):  # callers within the failure window: a typed error, no call
        with pytest.raises(FactoryFailed):
            cache_manager.get_or_set("herd", factory, failure_ttl=30)
    assert later == []


def test_a_failing_factory_is_called_once_by_a_herd_across_processes(cache_manager: CacheManager) -> None:
    """Issue 16.4: one manager per thread, as if each were a process: only Redis remembers the failure.
    Before, each waiter took the released lock in turn and called the failing factory again."""
    managers = [
        CacheManager(cache_manager.client, prefix=cache_manager.prefix, default_ttl=60) for _ in range(32)
    ]
    calls, outcomes = _failing_herd(managers, 1)
    assert len(calls) == 1
    assert sum(isinstance(o, RuntimeError) and not isinstance(o, FactoryFailed) for o in outcomes) == 1
    assert sum(isinstance(o, FactoryFailed) for o in outcomes) == 31
    fresh = CacheManager(cache_manager.client, prefix=cache_manager.prefix, default_ttl=60)
    factory, later = _counting("value")
    with pytest.raises(FactoryFailed, match="backend down"):
        fresh.get_or_set("herd", factory)
    assert later == []


def test_with_redis_down_a_failure_is_remembered_in_process(settings) -> None:
    from perflab.servers.ports import free_port

    dead = CacheManager(
        make_redis(settings, f"redis://127.0.0.1:{free_port()}/0"), prefix="dead", default_ttl=60
    )
    factory, calls = _counting("v")

    def boom() -> Any:
        calls.append(1)
        raise RuntimeError("backend down")

    with pytest.raises(RuntimeError):
        dead.get_or_set("k", boom, failure_ttl=30)
    with pytest.raises(FactoryFailed):
        dead.get_or_set("k", factory, failure_ttl=30)
    assert len(calls) == 1
    assert dead.get_or_set("other", factory) == "v"  # other keys are not affected
