"""Micro-batching: concurrent single-query embeds in one process become one model call.

A transformer costs far less per text in a batch than one text at a time, and a search service sees
many concurrent single-text calls. The first caller to arrive becomes the leader: it waits up to
`max_wait_ms` for others to join (or until `max_batch` texts are queued), runs the model once for the
oldest queued calls (its own always among them), hands each caller its rows, and returns. If calls are
still queued it first passes leadership to the oldest of them, which runs the next batch on its own
thread. So no caller runs batches for others after its own is done: a call waits for the batches
queued ahead of it and its own, never for the load to stop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from perflab.embed.base import Embedder, check_texts


@dataclass
class _Request:
    texts: list[str]
    # Set once: when the request is answered, or when it is made leader (never both: only the leader
    # answers requests, and a request is made leader while it is still queued).
    wake: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    done: bool = False
    result: np.ndarray | None = None
    error: BaseException | None = None


class BatchingEmbedder:
    """Wraps any Embedder; thread-safe; the same results as `inner`, batched across callers."""

    def __init__(self, inner: Embedder, *, max_batch: int = 32, max_wait_ms: float = 2.0) -> None:
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError("max_batch must be >= 1 and max_wait_ms >= 0")
        self.inner = inner
        self.model_name = inner.model_name
        self.dim = inner.dim
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._pending: list[_Request] = []
        self._leading = False  # invariant: while False, nothing is pending
        self.batches = 0
        self.texts = 0

    def warm(self) -> None:
        self.inner.warm()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        request = _Request(check_texts(texts))
        if not request.texts:
            return np.empty((0, self.dim), dtype=np.float32)
        with self._lock:
            self._pending.append(request)
            self._arrived.notify()
            if not self._leading:
                self._leading = request.lead = True
        if not request.lead:
            request.wake.wait()
        if request.lead:
            self._lead(request)
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _queued(self) -> int:
        return sum(len(r.texts) for r in self._pending)

    def _lead(self, own: _Request) -> None:
        """Run batches until `own` is answered (the first one: `own` is the oldest queued call),
        then pass leadership to the oldest waiting call, or give it up if none is waiting."""
        while not own.done:
            with self._lock:
                deadline = time.monotonic() + self.max_wait_s
                while self._queued() < self.max_batch and (left := deadline - time.monotonic()) > 0:
                    self._arrived.wait(left)
                batch: list[_Request] = []
                size = 0
                while self._pending and (not batch or size + len(self._pending[0].texts) <= self.max_batch):
                    request = self._pending.pop(0)
                    batch.append(request)
                    size += len(request.texts)
            self._run(batch)
        with self._lock:
            if self._pending:
                successor = self._pending[0]
                successor.lead = True
                successor.wake.set()
            else:
                self._leading = False

    def _run(self, batch: list[_Request]) -> None:
        texts = [t for r in batch for t in r.texts]
        try:
            rows = self.inner.embed(texts)
        except BaseException as exc:  # every waiter gets the error, none hangs
            for r in batch:
                r.error = exc
                r.done = True
                r.wake.set()
            return
        self.batches += 1
        self.texts += len(texts)
        start = 0
        for r in batch:
            r.result = rows[start : start + len(r.texts)]
            start += len(r.texts)
            r.done = True
            r.wake.set()
