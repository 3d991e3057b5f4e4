"""Argument checks shared by the database modules: refuse bad input before it reaches SQL."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np

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


def as_vector(value: np.ndarray | Sequence[float], dim: int | None = None) -> np.ndarray:
    """A 1-D, finite, non-zero float32 vector scaled to unit norm (cosine distance ignores the scale)."""
    try:
        arr = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"embedding is not numeric: {exc}") from exc
    if arr.ndim != 1 or arr.size == 0:
        raise InvalidInput(f"embedding must be one non-empty vector, got shape {arr.shape}")
    if dim is not None and arr.size != dim:
        raise InvalidInput(f"embedding has {arr.size} dimensions, the column has {dim}")
    if not np.isfinite(arr).all():
        raise InvalidInput("embedding has NaN or infinite values")
    norm = float(np.linalg.norm(arr))
    if norm == 0.0:
        raise InvalidInput("embedding is the zero vector (no direction to compare)")
    return arr / norm


def check_choice(value: str | None, choices: tuple[str, ...], what: str) -> None:
    if value is not None and value not in choices:
        raise InvalidInput(f"{what} {str(value)[:40]!r} is not one of {', '.join(choices)}")


def check_aware(value: datetime | None, what: str) -> None:
    if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
        raise InvalidInput(f"{what} must be a timezone-aware datetime")
