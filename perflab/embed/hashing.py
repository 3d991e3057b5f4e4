"""Feature hashing: a deterministic embedder with no model and no dependency beyond numpy.

It is LEXICAL, not semantic: two texts are close when they share words, word pairs or character
n-grams ("dog" ~ "dogs"), never because they mean the same thing ("dog" is not close to "puppy").
It exists so the lab runs, seeds and tests everywhere, fast and reproducibly; use MiniLM for meaning.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from perflab.embed.base import check_texts, normalize_rows

_WORD = re.compile(r"\w+", re.UNICODE)
# Relative weight of each feature family; words dominate, n-grams add robustness to inflection.
_W_WORD, _W_BIGRAM, _W_CHAR = 1.0, 0.5, 0.25


@lru_cache(maxsize=1 << 17)
def _slot(feature: str, dim: int) -> tuple[int, float]:
    """Bucket and sign of a feature. blake2b, not hash(): Python's hash is salted per process."""
    h = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8, person=b"perflab-hash").digest())
    return h % dim, (1.0 if h >> 63 else -1.0)


def _features(text: str) -> list[tuple[str, float]]:
    words = _WORD.findall(unicodedata.normalize("NFKC", text).casefold())
    feats: list[tuple[str, float]] = [("w:" + w, _W_WORD) for w in words]
    feats += [(f"b:{a} {b}", _W_BIGRAM) for a, b in itertools.pairwise(words)]
    for w in words:
        padded = f"<{w}>"
        feats += [("c:" + padded[i : i + 3], _W_CHAR) for i in range(len(padded) - 2)]
    # Text with no word characters ("!!!") still gets a stable, unit-norm vector.
    return feats or [("raw:" + text, 1.0)]


class HashingEmbedder:
    """Signed feature hashing of words, word bigrams and character trigrams into `dim` buckets."""

    def __init__(self, dim: int = 384) -> None:
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        self.dim = dim
        self.model_name = f"perflab-hashing-v1-{dim}"

    def warm(self) -> None:
        self.embed(["warm up"])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        batch = check_texts(texts)
        out = np.zeros((len(batch), self.dim), dtype=np.float32)
        for row, text in enumerate(batch):
            for feature, weight in _features(text):
                idx, sign = _slot(feature, self.dim)
                out[row, idx] += sign * weight
        # Signed buckets can cancel to exactly zero for tiny inputs; nudge such rows deterministically.
        zero = ~out.any(axis=1)
        if zero.any():
            out[zero, 0] = 1.0
        return normalize_rows(out, source=self.model_name)
