"""Fail-open on a private Redis we can stop, pause and restart; the circuit breaker on its own."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import redis

from perflab.cache import (
    CacheManager,
    CacheUnavailable,
    CircuitBreaker,
    EmbeddingCache,
    Invalidator,
    SearchCache,
    SessionStore,
    make_redis,
)
from perflab.config import Settings
from perflab.net import wait_until
from perflab.servers import RedisServer

# A generous bound: a call against a dead or paused server is bounded by ~0.2 s socket timeouts.
BOUND_S = 2.0


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_threshold_probes_once_and_closes_on_success() -> None:
    clock = _Clock()
    breaker = CircuitBreaker(failure_threshold=3, reset_timeout=1.0, clock=clock)
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state == "closed" and breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    clock.now += 1.0
    assert breaker.allow()  # the probe
    assert breaker.state == "half_open"
    assert not breaker.allow()  # only one probe at a time
    breaker.record_failure()  # probe failed: open again
    assert breaker.state == "open" and not breaker.allow()
    clock.now += 1.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed" and breaker.allow()
    assert breaker.opened == 1


def test_breaker_success_resets_the_failure_count() -> None:
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout=1.0, clock=_Clock())
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state == "closed"


@pytest.fixture()
def fast_settings(settings: Settings) -> Settings:
    return settings.replace(redis_socket_timeout=0.2, redis_connect_timeout=0.2)


@pytest.fixture()
def private_manager(private_redis: RedisServer, fast_settings: Settings) -> Iterator[CacheManager]:
    client = make_redis(fast_settings, private_redis.url)
    breaker = CircuitBreaker(failure_threshold=3, reset_timeout=0.2)
    yield CacheManager(client, prefix=fast_settings.key_prefix, default_ttl=60, breaker=breaker)
    client.close()


def _bounded(fn: Callable[[], Any]) -> Any:
    started = time.monotonic()
    result = fn()
    assert time.monotonic() - started < BOUND_S
    return result


def test_every_cache_call_fails_open_when_redis_stops_and_recovers_after_restart(
    private_redis: RedisServer, private_manager: CacheManager
) -> None:
    m = private_manager
    emb = EmbeddingCache(m, model="m", dim=4)
    search = SearchCache(m)
    assert m.set("k", {"v": 1}) and m.get("k") == {"v": 1}
    search.set("u", "q", None, [{"id": 1}])

    private_redis.stop()
    for _ in range(5):  # past the breaker threshold: later calls are short-circuited
        assert _bounded(lambda: m.get("k")) is None
        assert _bounded(lambda: m.get_many(["k", "j"])) == [None, None]
        assert _bounded(lambda: m.set("k", 2)) is False
        assert _bounded(lambda: m.set_many({"a": 1})) is False
        assert _bounded(lambda: m.delete("k")) == 0
        assert _bounded(lambda: m.delete_pattern("*")) == 0
        assert _bounded(lambda: m.get_or_set("g", lambda: "computed")) == "computed"
        assert _bounded(lambda: emb.get_many(["a", "b"])) == [None, None]
        assert _bounded(lambda: emb.set("a", np.zeros(4))) is False
        assert _bounded(lambda: search.get("u", "q")) is None
        assert _bounded(lambda: search.invalidate_user("u")) == 0
        assert _bounded(lambda: search.popular()) == []
        assert _bounded(lambda: Invalidator(m).publish_invalidation("u")) == 0
        assert _bounded(m.server_stats) == {"available": False}
        assert _bounded(m.healthy) is False
    stats = m.stats()
    assert stats.errors > 0 and stats.short_circuits > 0
    assert stats.breaker in ("open", "half_open")

    private_redis.start()
    assert wait_until(m.healthy, timeout=10), "the cache did not resume by itself"
    assert m.stats().breaker == "closed"
    assert m.set("k", {"v": 3}) and m.get("k") == {"v": 3}
    assert search.set("u", "q", None, [{"id": 2}]) and search.get("u", "q") == [{"id": 2}]


def test_a_paused_redis_costs_one_socket_timeout_not_a_hang(
    private_redis: RedisServer, private_manager: CacheManager
) -> None:
    m = private_manager
    assert m.set("k", 1)
    admin = redis.Redis.from_url(private_redis.url)
    admin.execute_command("CLIENT", "PAUSE", 600, "ALL")
    try:
        assert _bounded(lambda: m.get("k")) is None
        assert m.stats().errors == 1
        assert m.stats().latency["get.error"].count == 1
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
        admin.close()
    assert wait_until(lambda: m.get("k") == 1, timeout=10)


def test_sessions_refuse_rather_than_guess_when_redis_is_down(
    private_redis: RedisServer, private_manager: CacheManager
) -> None:
    store = SessionStore(private_manager, ttl=60, absolute_ttl=600)
    session = store.create("alice", {"role": "admin"})
    private_redis.stop()
    for call in (
        lambda: store.get(session.id),
        lambda: store.touch(session.id),
        lambda: store.update(session.id, role="user"),
        lambda: store.rotate(session.id),
        lambda: store.delete(session.id),
        lambda: store.create("alice", {}),
        lambda: store.list_user_sessions("alice"),
        lambda: store.revoke_all("alice"),
    ):
        with pytest.raises(CacheUnavailable):
            _bounded(call)
