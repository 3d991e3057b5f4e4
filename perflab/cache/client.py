"""Build the one redis-py client a process uses: a blocking pool, bounded timeouts, bounded retries.

Every knob that bounds how long a cache call can take when Redis is dead or slow lives here: socket
and connect timeouts from settings, a bounded wait for a free pooled connection, and no client-side
retries (redis-py 6+ retries up to 10 times with backoff by default, which would turn one dead-server
call into seconds; the circuit breaker handles retrying instead). redis-py picks the hiredis parser
by itself when it is installed.

A `redis+cluster://h1:p1,h2:p2/` URL gives a `ShardedCluster`: a `RedisCluster` whose connection
errors are not retried either (MOVED and ASK redirections still are: they are answers, not failures),
and which keeps one circuit breaker per node, so a dead master short-circuits only its own slots.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.commands.core import Script
from redis.exceptions import (
    AskError,
    ClusterError,
    MovedError,
    NoScriptError,
    RedisClusterException,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from perflab.cache.breaker import ShardBreakers
from perflab.config import Settings, is_cluster_url, parse_cluster_url, redact_url
from perflab.errors import ConfigError, ServiceUnavailable


class ShardOpen(RedisConnectionError):
    """The circuit breaker of the node that owns this key's slot is open: not sent."""


class ShardedCluster(RedisCluster):
    """A RedisCluster that checks and feeds a per-node circuit breaker around every routed command."""

    def __init__(self, *, breakers: ShardBreakers, **kwargs: Any) -> None:
        self.breakers = breakers  # before super(): discovering the topology may already route commands
        super().__init__(**kwargs)

    def register_script(self, script: Any) -> Script:
        return _ShardScript(self, script)

    def _execute_command(self, target_node: ClusterNode, *args: Any, **kwargs: Any) -> Any:
        breaker = self.breakers.for_node(target_node.name)
        if not breaker.clean and not breaker.allow():
            raise ShardOpen(f"circuit breaker open for redis node {target_node.name}")
        try:
            result = super()._execute_command(target_node, *args, **kwargs)  # type: ignore[no-untyped-call]
        except (RedisConnectionError, RedisTimeoutError):
            breaker.record_failure()
            raise
        if not breaker.clean:
            breaker.record_success()
        return result


class _ShardScript(Script):
    """A Lua script that a node lacking it gets by EVAL on that node alone.

    redis-py's Script answers NOSCRIPT with SCRIPT LOAD, which a cluster client sends to every master:
    one dead master would then fail every script call on every shard.
    """

    def __call__(self, keys: Any = None, args: Any = None, client: Any = None) -> Any:
        keys, args = list(keys or []), list(args or [])
        target = client if client is not None else self.registered_client
        try:
            return target.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return target.eval(cast(str, self.script), len(keys), *keys, *args)


def _timeouts(settings: Settings) -> dict[str, object]:
    return {
        "socket_timeout": settings.redis_socket_timeout,
        "socket_connect_timeout": settings.redis_connect_timeout,
        "socket_keepalive": True,
        "client_name": "perflab",
    }


def make_redis(
    settings: Settings, url: str, *, breakers: ShardBreakers | None = None
) -> redis.Redis | ShardedCluster:
    """A client on a BlockingConnectionPool (or a cluster client); it does no I/O until its first command.

    `breakers` (cluster only) are the per-node breakers to share; a fresh set by default.
    """
    if is_cluster_url(url):
        return _make_cluster(settings, url, breakers)
    options: dict[str, object] = {
        **_timeouts(settings),
        "max_connections": settings.redis_max_connections,
        # How long a caller waits for a free connection when all are busy (e.g. stuck on a slow server).
        "timeout": settings.redis_socket_timeout + settings.redis_connect_timeout,
        "retry": Retry(NoBackoff(), 0),
    }
    try:
        pool = redis.BlockingConnectionPool.from_url(url, **options)
    except ValueError as exc:
        raise ConfigError(f"Redis URL {redact_url(url)}: {exc}") from exc
    return redis.Redis(connection_pool=pool)


def _make_cluster(settings: Settings, url: str, breakers: ShardBreakers | None) -> ShardedCluster:
    parsed = parse_cluster_url(url)
    (host, port), *others = parsed.nodes
    userinfo = ""
    if parsed.username or parsed.password:
        userinfo = f"{quote(parsed.username or '', safe='')}:{quote(parsed.password or '', safe='')}@"
    options: dict[str, Any] = {
        **_timeouts(settings),
        # The first seed as a URL, so that every node's pool is a BlockingConnectionPool: busy callers
        # wait (bounded) for a connection rather than failing, as on a single server.
        "url": f"{'rediss' if parsed.ssl else 'redis'}://{userinfo}{host}:{port}/0",
        "startup_nodes": [ClusterNode(h, p) for h, p in others],
        "connection_pool_class": redis.BlockingConnectionPool,
        "max_connections": settings.redis_max_connections,  # per node
        "timeout": settings.redis_socket_timeout + settings.redis_connect_timeout,
        "retry": Retry(NoBackoff(), 0),  # connection errors: one attempt, the breaker does the rest
    }
    # Unlike a single-node client, redis-py's RedisCluster discovers the slot map here, so a cluster
    # client needs one seed node answering when it is built.
    try:
        return ShardedCluster(breakers=breakers or ShardBreakers(), **options)
    except (RedisError, RedisClusterException, OSError) as exc:
        raise ServiceUnavailable(
            "Redis Cluster", redact_url(url), _short(exc), "check the seed nodes in PERFLAB_REDIS_URL"
        ) from exc


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def check_not_cluster_node(client: redis.Redis | RedisCluster, url: str) -> None:
    """Refuse a plain URL that points at a cluster-enabled node: every other key would be MOVED and lost.

    Costs one INFO; a server that does not answer is left to the fail-open path (no error here).
    """
    if isinstance(client, RedisCluster):
        return
    try:
        info = client.info("cluster")
    except RedisError:
        return
    if int(info.get("cluster_enabled", 0)):
        host = redact_url(url).split("://", 1)[-1].split("/", 1)[0]
        raise ConfigError(
            f"PERFLAB_REDIS_URL={redact_url(url)} is a Redis Cluster node (cluster_enabled:1): "
            f"name the cluster instead, PERFLAB_REDIS_URL=redis+cluster://{host}/"
        )


@dataclass
class NodeBatch:
    """What a batch across a cluster's nodes did: one value per key, and the nodes it could not use."""

    values: list[Any]
    failed: int = 0  # nodes that raised a connection error or timed out (each paid at most one timeout)
    skipped: int = 0  # nodes whose breaker was open: not tried
    errors: list[RedisError] = field(default_factory=list)


def _group_by_node(
    client: ShardedCluster, keys: Sequence[str]
) -> dict[str, tuple[ClusterNode, dict[int, list[int]]]]:
    """{node name: (node, {slot: [index of key, ...]})} for the primaries owning `keys`."""
    groups: dict[str, tuple[ClusterNode, dict[int, list[int]]]] = {}
    for i, key in enumerate(keys):
        slot = client.keyslot(key)
        node = client.nodes_manager.get_node_from_slot(slot)
        groups.setdefault(node.name, (node, {}))[1].setdefault(slot, []).append(i)
    return groups


def node_batch(
    client: ShardedCluster,
    keys: Sequence[str],
    queue: Callable[[Any, list[str]], None],
    default: Any = None,
) -> NodeBatch:
    """One pipeline per node, all written before any is read, as redis-py's ClusterPipeline does: the
    nodes work at once, and the batch costs about one round trip however many nodes it touches (at
    most one socket timeout per dead node). `queue(pipe, slot_keys)` adds one command for the slot
    (its reply a list, one item per key) or one command per key. The node's breaker is checked and
    fed, as for a single command.

    Each slot's reply lands at its keys' positions; a node that failed leaves `default` there. A MOVED
    reply (a failover or resharding under way) updates the slot map and leaves the default too.
    """
    out = NodeBatch([default] * len(keys))
    try:
        groups = _group_by_node(client, keys)
    except RedisClusterException as exc:  # a slot no node covers
        out.failed = 1
        out.errors.append(ClusterError(str(exc)))
        return out
    sent: list[_NodeFlight] = []
    try:
        for name, (node, slots) in groups.items():
            breaker = client.breakers.for_node(name)
            if not breaker.clean and not breaker.allow():
                out.skipped += 1
                continue
            flight = _NodeFlight(name, client.get_redis_connection(node).pipeline(transaction=False))
            for positions in slots.values():
                queued = len(flight.pipe)
                queue(flight.pipe, [keys[i] for i in positions])
                added = len(flight.pipe) - queued
                flight.owners.extend([positions] if added == 1 else [[i] for i in positions])
            if flight.send():
                sent.append(flight)
            else:
                _node_failed(client, out, flight)
        _read_flights(client, out, sent)
    finally:
        for flight in sent:  # unread after an unexpected error: drop, never hand back half-read sockets
            flight.discard()
    return out


def _read_flights(client: ShardedCluster, out: NodeBatch, sent: list[_NodeFlight]) -> None:
    for flight in sent:
        replies = flight.read()
        if replies is None:
            _node_failed(client, out, flight)
            continue
        breaker = client.breakers.for_node(flight.name)
        if not breaker.clean:
            breaker.record_success()
        for positions, reply in zip(flight.owners, replies, strict=True):
            if isinstance(reply, (MovedError, AskError)):
                client.nodes_manager.move_slot(reply)
                out.errors.append(reply)
            elif isinstance(reply, RedisError):
                out.errors.append(reply)
            elif len(positions) > 1 or isinstance(reply, list):
                for i, value in zip(positions, reply, strict=True):
                    out.values[i] = value
            else:
                out.values[positions[0]] = reply


@dataclass
class _NodeFlight:
    """One node's pipeline of a `node_batch`, split in two: written to the socket, later read back.

    redis-py's Pipeline.execute does both at once; this uses the parts its ClusterPipeline uses
    (`command_stack`, `pack_commands`, `send_packed_command`, `parse_response`). No retries, as
    everywhere in perflab's clients: a connection error is the node's failure, for its breaker."""

    name: str
    pipe: Any  # redis.client.Pipeline
    owners: list[list[int]] = field(default_factory=list)  # key positions of each command's reply
    conn: Any = None
    error: RedisError | None = None

    def send(self) -> bool:
        try:
            self.conn = self.pipe.connection_pool.get_connection()  # connects: a dead node raises here
            self.conn.send_packed_command(self.conn.pack_commands([a for a, _ in self.pipe.command_stack]))
        except (RedisConnectionError, RedisTimeoutError) as exc:
            return self._lost(exc)
        except BaseException:
            self._lost(None)
            raise
        return True

    def read(self) -> list[Any] | None:
        replies: list[Any] = []
        try:
            for args, options in self.pipe.command_stack:
                try:
                    replies.append(self.pipe.parse_response(self.conn, args[0], **options))
                except ResponseError as exc:  # a reply, as raise_on_error=False keeps it
                    replies.append(exc)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            self._lost(exc)
            return None
        except BaseException:
            self._lost(None)  # replies left unread on the socket: never hand it to the next caller
            raise
        self.pipe.connection_pool.release(self.conn)
        self.conn = None
        self.pipe.reset()
        return replies

    def discard(self) -> None:
        """Drop the connection if it is still out (not read back): a no-op after `read`."""
        if self.conn is not None:
            self._lost(None)

    def _lost(self, exc: RedisError | None) -> bool:
        self.error = exc
        if self.conn is not None:
            self.conn.disconnect()
            self.pipe.connection_pool.release(self.conn)
            self.conn = None
        self.pipe.reset()
        return False


def _node_failed(client: ShardedCluster, out: NodeBatch, flight: _NodeFlight) -> None:
    client.breakers.for_node(flight.name).record_failure()
    out.failed += 1
    if flight.error is not None:
        out.errors.append(flight.error)
    # As redis-py does after a connection error: the node may have been replaced by its replica.
    client.nodes_manager.move_node_to_end_of_cached_nodes(flight.name)
    client.nodes_manager.initialize(last_failed_node_name=flight.name)
