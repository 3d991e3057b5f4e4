"""The embedder interface: a batch of texts in, one float32 row per text out, each of unit L2 norm.

Unit norm is part of the contract because the vector index orders by cosine distance and the caches
store vectors as raw float32: every embedder returns the same shape and scale, so callers never check.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from perflab.errors import PerflabError


class EmbeddingError(PerflabError):
    """The embedder could not produce vectors (model missing, remote API failed or answered nonsense)."""


class InvalidText(EmbeddingError, ValueError):
    """The caller passed something that is not a batch of non-empty strings."""


@runtime_checkable
class Embedder(Protocol):
    """What the search path, the seeder and the benchmarks need from any embedding model."""

    model_name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 array of shape (len(texts), dim), rows L2-normalized, in input order."""
        ...

    def warm(self) -> None:
        """Load the model and run it once, so that the first real call pays neither (readiness)."""
        ...


def check_texts(texts: Sequence[str]) -> list[str]:
    """Validate a batch. A bare string is refused: iterating it would embed one character per row."""
    if isinstance(texts, str | bytes):
        raise InvalidText("embed() takes a sequence of strings, not one string; wrap it in a list")
    out = list(texts)
    for i, text in enumerate(out):
        if not isinstance(text, str):
            raise InvalidText(f"text {i} is {type(text).__name__}, not str")
        if not text.strip():
            raise InvalidText(f"text {i} is empty")
    return out


def normalize_rows(matrix: np.ndarray, *, source: str) -> np.ndarray:
    """Return `matrix` as C-contiguous float32 with unit-norm rows; a zero or non-finite row is an error."""
    arr = np.ascontiguousarray(matrix, dtype=np.float32)
    if arr.ndim != 2:
        raise EmbeddingError(f"{source} returned an array of shape {arr.shape}, expected (n, dim)")
    if arr.shape[0] == 0:
        return arr
    if not np.isfinite(arr).all():
        raise EmbeddingError(f"{source} returned non-finite values")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    if (norms == 0).any():
        raise EmbeddingError(f"{source} returned a zero vector")
    out: np.ndarray = arr / norms
    return out
