"""Cross-process invalidation over Redis pub/sub: "drop what you hold for this user".

The search cache itself needs no message (its generation counter lives in Redis); this is for state a
process keeps in memory. Pub/sub delivers at most once and only to connected subscribers, so after a
reconnect the subscriber calls `on_reset`: messages may have been missed, drop everything.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from perflab.cache.keys import UserId
from perflab.cache.manager import CacheManager

log = logging.getLogger(__name__)

_POLL_S = 0.5
_BACKOFF_MAX_S = 2.0


class Invalidator:
    """Publishes and subscribes to `{prefix}:{channel}`. Publishing fails open."""

    def __init__(self, manager: CacheManager, *, channel: str = "invalidate") -> None:
        self.manager = manager
        self.channel = manager.key(channel)

    def publish_invalidation(self, user_id: UserId) -> int:
        """Tell every subscriber to drop `user_id`'s state; returns how many received it (0 if Redis failed)."""
        message = str(user_id).encode("utf-8", "surrogatepass")
        return int(self.manager.call("publish", lambda c: c.publish(self.channel, message), 0))

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
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self._channel)
                if subscribed_before:
                    self.reconnects += 1
                    self._call(self._on_reset)
                subscribed_before = True
                self.ready.set()
                backoff = 0.05
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=_POLL_S)
                    if message is not None and message.get("type") == "message":
                        user = message["data"].decode("utf-8", "surrogatepass")
                        self._call(self._on_invalidate, user)
            except (RedisError, OSError) as exc:
                self.ready.clear()
                log.debug("invalidation subscriber lost redis (%r); reconnecting", exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_S)
            finally:
                with contextlib.suppress(RedisError, OSError):
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
