"""The library guard: a user's vectors and the query vectors must come from the same embedder.

Distances between two models' vectors mean nothing, so a search (or an upload) into a library made by
another model is refused with EmbedderMismatch (409) instead of returning confident nonsense. The
check is a few index probes (db.vector.library_embedders); its answer is kept per user for `ttl_s`,
so the cold path pays it once a minute per user, and a cache hit never."""

from __future__ import annotations

import threading
import time
import uuid

from perflab.db import EmbedderMismatch, library_embedders
from perflab.db.pool import PoolOrConn


class LibraryGuard:
    def __init__(self, source: PoolOrConn, model_name: str, *, ttl_s: float = 60.0) -> None:
        self.source = source
        self.model_name = model_name
        self.ttl_s = ttl_s
        self._seen: dict[str, tuple[float, list[str]]] = {}
        self._lock = threading.Lock()

    def others(self, user_id: uuid.UUID | str) -> list[str]:
        """The models other than ours that hold vectors in this user's library (cached `ttl_s`)."""
        key, now = str(user_id), time.monotonic()
        with self._lock:
            seen = self._seen.get(key)
        if seen is None or now - seen[0] > self.ttl_s:
            models = [m for m in library_embedders(self.source, user_id) if m != self.model_name]
            with self._lock:
                if len(self._seen) > 100_000:  # bounded: forget everyone rather than grow
                    self._seen.clear()
                self._seen[key] = seen = (now, models)
        return seen[1]

    def check(self, user_id: uuid.UUID | str) -> None:
        others = self.others(user_id)
        if others:
            raise EmbedderMismatch(self.model_name, others)
