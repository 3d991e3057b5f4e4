"""Argument checks shared by the database modules: refuse bad input before it reaches SQL."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np

from perflab.arrays import real_floats
from perflab.db.errors import InvalidInput

MEDIA_TYPES = ("image", "video", "audio", "document")
STATUSES = ("pending", "processing", "completed", "failed")


def as_uuid(value: Any, what: str = "id") -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise InvalidInput(f"{what} {str(value)[:80]!r} is not a UUID")


def as_unit_rows(matrix: np.ndarray, n: int | None = None) -> np.ndarray:
    """A (n, dim) float32 matrix of real finite numbers, every row scaled to unit norm (none may be zero)."""
    arr = np.ascontiguousarray(real_floats(matrix, InvalidInput, "embeddings"))
    if arr.ndim != 2 or (n is not None and arr.shape[0] != n):
        raise InvalidInput(
            f"embeddings must have shape ({n if n is not None else 'n'}, dim), got {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise InvalidInput("embedding has NaN or infinite values")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    if arr.shape[0] and (norms == 0).any():
        raise InvalidInput(
            f"embedding row {int(np.argmin(norms))} is the zero vector (no direction to compare)"
        )
    return arr / np.where(norms == 0, 1, norms)


def as_vector(value: np.ndarray | Sequence[float], dim: int | None = None) -> np.ndarray:
    """One embedding: 1-D, `dim` long when given, finite, non-zero, scaled to unit norm (cosine distance
    ignores the scale, and stored vectors stay comparable)."""
    arr = real_floats(value, InvalidInput)
    if arr.ndim != 1 or arr.size == 0:
        raise InvalidInput(f"embedding must be one non-empty vector, got shape {arr.shape}")
    if dim is not None and arr.size != dim:
        raise InvalidInput(f"embedding has {arr.size} dimensions, the column has {dim}")
    return as_unit_rows(arr[None, :])[0]


def check_choice(value: str | None, choices: tuple[str, ...], what: str) -> None:
    if value is not None and value not in choices:
        raise InvalidInput(f"{what} {str(value)[:40]!r} is not one of {', '.join(choices)}")


def check_aware(value: datetime | None, what: str) -> None:
    if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
        raise InvalidInput(f"{what} must be a timezone-aware datetime")
