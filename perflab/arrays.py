"""Checked conversion of user-given numbers to float32 arrays, shared by the database and the caches.

`np.asarray(x, dtype=np.float32)` is too forgiving for embeddings: it parses numeric strings ("1.5"),
drops the imaginary part of complex numbers (with only a warning), turns bools into 0/1 and unpacks
object arrays. Each of those would store a vector nobody meant, so they are refused here instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from perflab.errors import PerflabError

_REAL_KINDS = "fiu"  # floats, and integers (real numbers that float32 holds as they are meant)


def real_floats(value: Any, error: type[PerflabError], what: str = "embedding") -> np.ndarray:
    """`value` as a float32 array of real, finite numbers; `error(message)` for anything else."""
    try:
        arr = value if isinstance(value, np.ndarray) else np.asarray(value)
    except (TypeError, ValueError) as exc:  # ragged nesting, unconvertible objects
        raise error(f"{what} is not a numeric array: {exc}") from exc
    if arr.dtype.kind not in _REAL_KINDS:
        raise error(f"{what} must hold real numbers, not {arr.dtype} values")
    with np.errstate(over="ignore", invalid="ignore"):  # out of float32 range -> inf, refused below
        out = arr.astype(np.float32, copy=False)
    if out.size and not np.isfinite(out).all():
        raise error(f"{what} holds NaN or infinite values (or values beyond float32 range)")
    return out
