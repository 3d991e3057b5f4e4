"""The library guard: a user's vectors and the query vectors must come from the same embedder.

Distances between two models' vectors mean nothing, so a search (or an upload) into a library made by
another model is refused with EmbedderMismatch (409) instead of returning confident nonsense. The
check is db.vector.check_embedder (a few index probes); a user who passed it is not asked again for
`ttl_s`, so the cold path pays it once a minute per user, and a cache hit never."""

from __future__ import annotations

import threading
import time
import uuid

from perflab.db import check_embedder
from perflab.db.pool import PoolOrConn


class LibraryGuard:
    def __init__(self, source: PoolOrConn, model_name: str, *, ttl_s: float = 60.0) -> None:
        self.source = source
        self.model_name = model_name
        self.ttl_s = ttl_s
        self._passed: dict[str, float] = {}  # user id -> when their library last passed
        self._lock = threading.Lock()

    def check(self, user_id: uuid.UUID | str) -> None:
        key, now = str(user_id), time.monotonic()
        with self._lock:
            passed = self._passed.get(key)
        if passed is not None and now - passed <= self.ttl_s:
            return
        check_embedder(self.source, self.model_name, user_id)  # raises EmbedderMismatch
        with self._lock:
            if len(self._passed) > 100_000:  # bounded: forget everyone rather than grow
                self._passed.clear()
            self._passed[key] = now
