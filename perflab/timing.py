"""Stage timings: wall time per named stage of one request or one image, accumulated when a stage
runs more than once; rendered as a dict or a Server-Timing header."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class StageTimer:
    """Accumulates wall time per named stage, in the order stages first ran."""

    __slots__ = ("_t0", "stages")

    def __init__(self) -> None:
        self.stages: dict[str, float] = {}
        self._t0 = time.perf_counter()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = self.stages.get(name, 0.0) + (time.perf_counter() - t0) * 1000.0

    def total_ms(self) -> float:
        return (time.perf_counter() - self._t0) * 1000.0

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in self.stages.items()}

    def server_timing(self, total_ms: float | None = None) -> str:
        """`Server-Timing: search_cache;dur=0.21, embed;dur=13.9, ..., total;dur=15.2`."""
        parts = [f"{name};dur={ms:.3f}" for name, ms in self.stages.items()]
        parts.append(f"total;dur={(total_ms if total_ms is not None else self.total_ms()):.3f}")
        return ", ".join(parts)
