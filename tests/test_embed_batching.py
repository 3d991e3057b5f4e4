from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import pytest

from perflab.embed import BatchingEmbedder, HashingEmbedder


class _Counting:
    """A real embedder (hashing) that records the batch sizes it was called with."""

    def __init__(self) -> None:
        self.inner = HashingEmbedder(64)
        self.model_name, self.dim = self.inner.model_name, self.inner.dim
        self.calls: list[int] = []
        self.fail_on: str | None = None

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


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        BatchingEmbedder(HashingEmbedder(8), max_batch=0)
