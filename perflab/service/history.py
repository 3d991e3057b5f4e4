"""Search history and query popularity, written in batches off the request path.

A request only appends to an in-memory queue; one background thread drains it every `interval`
seconds, `batch` rows at a time: one COPY into search_history and one pipelined popularity bump for
the batch's distinct queries (the search cache's bounded sorted set, which cache warming reads). Both are analytics, not
state: when the queue is full (the database is down for long) rows are dropped and counted rather
than blocking search.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, deque

from psycopg_pool import ConnectionPool

from perflab.cache import SearchCache
from perflab.db.history import HistoryEntry, insert_history

_log = logging.getLogger(__name__)


class SearchHistoryWriter:
    def __init__(
        self,
        pool: ConnectionPool,
        *,
        popularity: SearchCache | None = None,
        batch: int = 200,
        interval: float = 0.5,
        max_queue: int = 50_000,
    ) -> None:
        self._pool = pool
        self._popularity = popularity
        self._batch = batch
        self._interval = interval
        self._queue: deque[HistoryEntry] = deque()  # append/popleft are atomic
        self._max_queue = max_queue
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.written = 0
        self.dropped = 0
        self.failed_flushes = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="search-history", daemon=True)
            self._thread.start()

    def record(self, entry: HistoryEntry) -> None:
        """On the request path: one append (no lock, no wake-up); the writer drains every interval."""
        if len(self._queue) >= self._max_queue:
            self.dropped += 1
            return
        self._queue.append(entry)

    def flush_items(self, items: list[HistoryEntry]) -> None:
        if not items:
            return
        if self._popularity is not None:
            self._popularity.track_many(Counter(e.query for e in items))
        try:
            with self._pool.connection(timeout=5) as conn:
                self.written += insert_history(conn, items)
        except Exception as exc:  # the database is down: drop this batch, keep serving
            self.failed_flushes += 1
            self.dropped += len(items)
            _log.warning("search history flush of %d rows failed: %s", len(items), exc)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):  # a batch per interval, not a flush per search
            self.flush()
        self.flush()

    def flush(self) -> None:
        """Write everything queued now, `batch` rows at a time (the writer thread, tests, shutdown)."""
        while self._queue:
            items: list[HistoryEntry] = []
            while self._queue and len(items) < self._batch:
                items.append(self._queue.popleft())
            self.flush_items(items)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.flush()
