"""A circuit breaker, so a dead Redis costs one fast check per call instead of a socket timeout.

closed -> (failure_threshold consecutive failures) -> open -> (reset_timeout) -> half-open: one probe
call goes through; success closes the breaker, failure opens it again. Callers on a hot path may skip
both `allow()` and `record_success()` while `clean` is true (closed, no failures since the last success).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"


class CircuitBreaker:
    """Thread-safe breaker shared by every cache object that talks to the same Redis."""

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        reset_timeout: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        name: str = "redis",
    ) -> None:
        if failure_threshold < 1 or reset_timeout <= 0:
            raise ValueError("failure_threshold must be >= 1 and reset_timeout > 0")
        self.name = name  # for the log: "redis", or "redis node host:port" on a cluster
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._closed = True
        self.clean = True  # closed with no failures: allow() is True and record_success() a no-op
        self._state = CLOSED
        self._failures = 0
        self._retry_at = 0.0
        self.opened = 0  # times the breaker tripped, for stats

    @property
    def state(self) -> str:
        return self._state

    def allow(self) -> bool:
        """May a call go to Redis now? In half-open state, one probe per reset_timeout does."""
        if self._closed:
            return True
        with self._lock:
            if self._closed:
                return True
            now = self._clock()
            if now >= self._retry_at:
                self._state = HALF_OPEN
                self._retry_at = now + self.reset_timeout  # a probe that never reports is retried
                return True
            return False

    def record_success(self) -> None:
        if self.clean:
            return
        with self._lock:
            self._failures = 0
            if not self._closed:
                log.warning("%s circuit breaker closed: it answers again", self.name)
                self._closed = True
                self._state = CLOSED
            self.clean = True

    def record_failure(self) -> None:
        with self._lock:
            self.clean = False
            self._failures += 1
            if self._state == HALF_OPEN or self._failures >= self.failure_threshold:
                if self._state == CLOSED:
                    self.opened += 1
                    log.warning(
                        "%s circuit breaker open after %d failures; probing every %.2fs",
                        self.name,
                        self._failures,
                        self.reset_timeout,
                    )
                self._closed = False
                self._state = OPEN
                self._retry_at = self._clock() + self.reset_timeout


class ShardBreakers:
    """One CircuitBreaker per Redis Cluster node, so a dead master short-circuits its own slots only.

    The cluster client (`ShardedCluster`) checks and feeds the node's breaker around each command it
    routes. Seen by a CacheManager, this object stands in for its breaker: it never refuses a call
    itself (routing happens below it) and reports the worst node's state.
    """

    clean = True  # the manager's own checks are no-ops; the per-node ones run in the client

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        reset_timeout: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        CircuitBreaker(failure_threshold=failure_threshold, reset_timeout=reset_timeout)  # validates
        self._make: Callable[[str], CircuitBreaker] = lambda name: CircuitBreaker(
            failure_threshold=failure_threshold, reset_timeout=reset_timeout, clock=clock, name=name
        )
        self._nodes: dict[str, CircuitBreaker] = {}
        self._lock = threading.Lock()

    def for_node(self, name: str) -> CircuitBreaker:
        """The breaker of node `host:port`, made on first use."""
        breaker = self._nodes.get(name)
        if breaker is None:
            with self._lock:
                breaker = self._nodes.get(name) or self._nodes.setdefault(
                    name, self._make(f"redis node {name}")
                )
        return breaker

    def states(self) -> dict[str, str]:
        """Each known node's breaker state."""
        return {name: b.state for name, b in sorted(self._nodes.items())}

    @property
    def state(self) -> str:
        """open if any node's breaker is open, else half_open if any is probing, else closed."""
        states = set(self.states().values())
        return next((s for s in (OPEN, HALF_OPEN) if s in states), CLOSED)

    @property
    def opened(self) -> int:
        return sum(b.opened for b in list(self._nodes.values()))

    def allow(self) -> bool:
        return True

    def record_success(self) -> None:
        """Nothing: the client recorded it on the node's breaker."""

    def record_failure(self) -> None:
        """Nothing: the client recorded it on the node's breaker."""
