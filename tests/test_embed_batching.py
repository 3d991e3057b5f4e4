from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import pytest

from perflab.embed import BatchingEmbedder, HashingEmbedder, LatencyEmbedder


class _Counting:
    """A real embedder (hashing) that records the batch sizes it was called with."""

    def __init__(self) -> None:
        self.inner = HashingEmbedder(64)
        self.model_name, self.dim = self.inner.model_name, self.inner.dim
        self.calls: list[int] = []
        self.fail_on: str | None = None

    def warm(self) -> None:
        self.inner.warm()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        if self.fail_on in texts:
            raise RuntimeError("model failed")
        return self.inner.embed(texts)


def test_concurrent_callers_share_batches_and_get_their_own_rows() -> None:
    inner = _Counting()
    emb = BatchingEmbedder(inner, max_batch=64, max_wait_ms=20)
    texts = [f"query number {i}" for i in range(40)]
    out: dict[int, np.ndarray] = {}
    barrier = threading.Barrier(len(texts))

    def call(i: int) -> None:
        barrier.wait()
        out[i] = emb.embed([texts[i]])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = HashingEmbedder(64).embed(texts)
    for i in range(len(texts)):
        np.testing.assert_array_equal(out[i][0], expected[i])
    assert sum(inner.calls) == 40 and len(inner.calls) < 40  # batched
    assert max(inner.calls) <= 64


def test_batches_respect_max_batch_and_multi_text_calls() -> None:
    inner = _Counting()
    emb = BatchingEmbedder(inner, max_batch=3, max_wait_ms=0)
    rows = emb.embed(["a b", "c d", "e f", "g h", "i j"])  # one caller larger than max_batch
    assert rows.shape == (5, 64) and inner.calls == [5]


def test_errors_reach_every_waiter_and_nobody_hangs() -> None:
    inner = _Counting()
    inner.fail_on = "boom"
    emb = BatchingEmbedder(inner, max_batch=8, max_wait_ms=50)
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def call(text: str) -> None:
        barrier.wait()
        try:
            emb.embed([text])
        except RuntimeError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(t,)) for t in ("boom", "x", "y", "z")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert not any(t.is_alive() for t in threads)
    assert errors  # the batch with "boom" failed for all its members
    assert emb.embed(["after the failure"]).shape == (1, 64)  # leadership was handed back


def test_no_caller_waits_more_than_a_few_batches_under_continuous_load() -> None:
    """Issue 16.1: the leader used to run batches until nobody was waiting, so under steady load its
    own call returned only when the load stopped. Counted in batches, not seconds: a call may see the
    batch in progress when it arrives, the batches for the calls queued ahead of it, and its own."""
    threads_n, calls_each, max_batch = 8, 30, 4
    inner = LatencyEmbedder(HashingEmbedder(64), base_ms=5.0, per_item_ms=0.0, jitter=0.0)
    emb = BatchingEmbedder(inner, max_batch=max_batch, max_wait_ms=2.0)
    waited: list[int] = []  # batches completed while one call was in flight
    barrier = threading.Barrier(threads_n)

    def loop(t: int) -> None:
        barrier.wait()
        for i in range(calls_each):
            before = inner.calls
            emb.embed([f"thread {t} call {i}"])
            waited.append(inner.calls - before)

    threads = [threading.Thread(target=loop, args=(t,)) for t in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert len(waited) == threads_n * calls_each
    # in progress + ceil(all callers / max_batch) + one batch of slack for thread scheduling
    bound = 1 + -(-threads_n // max_batch) + 1
    assert max(waited) <= bound, sorted(waited)[-5:]
    assert inner.calls < threads_n * calls_each  # and it still batches


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        BatchingEmbedder(HashingEmbedder(8), max_batch=0)
