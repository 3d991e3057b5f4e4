"""A wrapper that makes any embedder cost what a remote embedding API costs.

The notebooks use it to show what the embedding cache saves when each miss is a network call
(a fixed round trip plus a per-text cost, log-normally jittered), without calling a paid API.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from perflab.embed.base import Embedder


class LatencyEmbedder:
    """Delegates to `inner`, after sleeping `base_ms + per_item_ms * n`, times a jitter factor."""

    def __init__(
        self,
        inner: Embedder,
        *,
        base_ms: float = 80.0,
        per_item_ms: float = 0.5,
        jitter: float = 0.25,
        seed: int = 0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if base_ms < 0 or per_item_ms < 0 or jitter < 0:
            raise ValueError("latencies and jitter must be non-negative")
        self.inner = inner
        self.model_name = inner.model_name
        self.dim = inner.dim
        self.base_ms = base_ms
        self.per_item_ms = per_item_ms
        self.jitter = jitter
        self._rng = np.random.default_rng(seed)
        self._sleep = sleep
        self._lock = threading.Lock()
        self.calls = 0
        self.simulated_s = 0.0

    def delay_s(self, n: int) -> float:
        """The simulated cost of one call with `n` texts (median `base + per_item * n`)."""
        with self._lock:
            factor = float(self._rng.lognormal(0.0, self.jitter)) if self.jitter else 1.0
        return (self.base_ms + self.per_item_ms * n) * factor / 1000.0

    def warm(self) -> None:
        """Warms the inner model only: the simulated latency is per call, there is nothing to load."""
        self.inner.warm()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self.inner.embed(texts)
        delay = self.delay_s(len(vectors))
        self._sleep(delay)
        with self._lock:
            self.calls += 1
            self.simulated_s += delay
        return vectors
