"""Cross-process invalidation over Redis pub/sub: "drop what you hold for this user".

The search cache itself needs no message (its generation counter lives in Redis); this is for state a
process keeps in memory. Pub/sub delivers at most once and only to connected subscribers, so after a
reconnect the subscriber calls `on_reset`: messages may have been missed, drop everything.

On a Redis Cluster whose masters all run Redis >= 7, the channel is a sharded one (SPUBLISH /
SSUBSCRIBE): it lives on the master owning the channel's slot, and is not broadcast over the cluster
bus to every node. Older clusters use plain pub/sub, sent to that same master. Either way, when that
master dies the subscriber reconnects (to its replica, once promoted) and resets.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisClusterException, RedisError

from perflab.cache.client import ShardedCluster
from perflab.cache.keys import UserId
from perflab.cache.manager import CacheManager

log = logging.getLogger(__name__)

_POLL_S = 0.5
_BACKOFF_MAX_S = 2.0
_SHARDED_SINCE = (7, 0)
_ERRORS = (RedisError, RedisClusterException, OSError)


def sharded_pubsub(client: Any) -> bool:
    """Use SPUBLISH/SSUBSCRIBE? True on a cluster whose masters all run Redis >= 7. Raises if one
    does not answer, so publisher and subscriber never guess differently."""
    if not isinstance(client, ShardedCluster):
        return False
    for node in client.get_primaries():
        info = client.info("server", target_nodes=node)
        if node.name in info and isinstance(info[node.name], dict):
            info = info[node.name]
        version = tuple(int(x) for x in str(info["redis_version"]).split(".")[:2])
        if version < _SHARDED_SINCE:
            return False
    return True


class Invalidator:
    """Publishes and subscribes to `{prefix}:{channel}`. Publishing fails open."""

    def __init__(self, manager: CacheManager, *, channel: str = "invalidate") -> None:
        self.manager = manager
        self.channel = manager.key(channel)
        self._sharded: bool | None = None  # found out on first use (one INFO per master)

    def publish_invalidation(self, user_id: UserId) -> int:
        """Tell every subscriber to drop `user_id`'s state; returns how many received it (0 if Redis failed)."""
        message = str(user_id).encode("utf-8", "surrogatepass")
        return int(self.manager.call("publish", lambda c: self._publish(c, message), 0))

    def _publish(self, client: Any, message: bytes) -> int:
        if not isinstance(client, ShardedCluster):
            return int(client.publish(self.channel, message))
        if self._sharded is None:
            self._sharded = sharded_pubsub(client)
        if self._sharded:
            return int(client.spublish(self.channel, message))
        # Plain PUBLISH to the master of the channel's slot, where the subscriber listens: it reaches
        # the subscriber even while the cluster bus to other nodes is in trouble.
        node = client.nodes_manager.get_node_from_slot(client.keyslot(self.channel))
        return int(client.publish(self.channel, message, target_nodes=node))

    def subscribe(
        self,
        on_invalidate: Callable[[str], None],
        *,
        on_reset: Callable[[], None] | None = None,
    ) -> Subscription:
        """Start a daemon thread calling `on_invalidate(user_id)` per message; `close()` it when done."""
        return Subscription(self.manager.client, self.channel, on_invalidate, on_reset)


class Subscription:
    """A background subscriber that reconnects by itself, with backoff, until closed."""

    def __init__(
        self,
        client: Any,
        channel: str,
        on_invalidate: Callable[[str], None],
        on_reset: Callable[[], None] | None,
    ) -> None:
        self._client = client
        self._channel = channel
        self._on_invalidate = on_invalidate
        self._on_reset = on_reset
        self._stop = threading.Event()
        self.ready = threading.Event()  # set while subscribed
        self.reconnects = 0
        self._thread = threading.Thread(target=self._run, name=f"invalidation:{channel}", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        backoff = 0.05
        subscribed_before = False
        while not self._stop.is_set():
            pubsub: Any = None
            try:
                sharded = sharded_pubsub(self._client)
                pubsub = self._client.pubsub(ignore_subscribe_messages=True)
                if sharded:
                    pubsub.ssubscribe(self._channel)
                    pubsub.get_sharded_message(
                        timeout=_POLL_S
                    )  # the confirmation: raises if the node is gone
                else:
                    pubsub.subscribe(self._channel)
                if subscribed_before:
                    self.reconnects += 1
                    self._call(self._on_reset)
                subscribed_before = True
                self.ready.set()
                backoff = 0.05
                while not self._stop.is_set():
                    if sharded:
                        message = pubsub.get_sharded_message(timeout=_POLL_S)
                    else:
                        message = pubsub.get_message(timeout=_POLL_S)
                    if message is not None and message.get("type") in ("message", "smessage"):
                        user = message["data"].decode("utf-8", "surrogatepass")
                        self._call(self._on_invalidate, user)
            except _ERRORS as exc:
                self.ready.clear()
                log.debug("invalidation subscriber lost redis (%r); reconnecting", exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_S)
                if isinstance(self._client, ShardedCluster):  # the channel's master may have been replaced
                    with contextlib.suppress(*_ERRORS):
                        self._client.nodes_manager.initialize()
            finally:
                if pubsub is not None:
                    with contextlib.suppress(*_ERRORS):
                        pubsub.close()
        self.ready.clear()

    @staticmethod
    def _call(fn: Callable[..., None] | None, *args: Any) -> None:
        if fn is None:
            return
        try:
            fn(*args)
        except Exception:
            log.exception("invalidation callback failed")
