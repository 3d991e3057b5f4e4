"""Writes to Redis that must land eventually: retried in the background until Redis takes them.

The service fails open when Redis is down, but some writes cannot simply be dropped: a search-cache
invalidation after an upload (else the uploader keeps seeing results from before it) and a session
deletion after a logout or revoke-all (else the session revives when Redis returns with its data).
`RetryQueue.add(item)` remembers the item; one daemon thread calls `attempt(item)` every `interval`
seconds until it returns a true value, and exits when nothing is left. Items live in this process only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

_log = logging.getLogger(__name__)
T = TypeVar("T", bound=Hashable)


class RetryQueue(Generic[T]):
    def __init__(self, attempt: Callable[[T], object], *, name: str, interval: float = 0.5) -> None:
        self._attempt = attempt
        self._name = name
        self._interval = interval
        self._items: set[T] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, item: T) -> None:
        with self._lock:
            self._items.add(item)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def __len__(self) -> int:
        return len(self._items)

    def _run(self) -> None:
        while True:
            time.sleep(self._interval)
            with self._lock:
                items = list(self._items)
                if not items:
                    self._thread = None
                    return
            for item in items:
                try:
                    done = bool(self._attempt(item))
                except Exception as exc:  # a bug in one item must not stop the others being retried
                    _log.warning("%s: retry of %r failed: %s", self._name, item, exc)
                    done = False
                if done:
                    with self._lock:
                        self._items.discard(item)
