"""A measured phase: CPU per process and the noise record around one block of load.

with Phase("warm", sources) as ph:
    result = run_closed(...)
ph.finish(result.requests)      # -> ph.record: cpu_ms_per_request + noise

`start()` / `stop()` do what `with` does, for a phase that begins and ends on another process's signal
(perflab.lab.loadtest: Locust's test start and stop, not its start-up).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from perflab.lab import cpu, noise


@dataclass(frozen=True)
class PhaseRecord:
    name: str
    requests: int
    cpu_ms_per_request: dict[str, float | None]
    noise: noise.NoiseRecord

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "requests": self.requests,
            "cpu_ms_per_request": self.cpu_ms_per_request,
            "noise": self.noise.as_dict(),
        }


class Phase:
    def __init__(self, name: str, sources: Mapping[str, cpu.Source]) -> None:
        self.name = name
        self.sources = sources
        self.record: PhaseRecord | None = None
        self._cpu0: cpu.CpuReading | None = None
        self._cpu1: cpu.CpuReading | None = None

    def start(self) -> None:
        """Begin measuring (what `with` does; called directly when the phase begins elsewhere, e.g.
        when Locust starts its test in another process)."""
        self._stat0 = noise.cpu_times()
        self._cpu0 = cpu.read(self.sources)
        self._t0 = time.perf_counter()

    def stop(self) -> None:
        self._seconds = time.perf_counter() - self._t0
        self._cpu1 = cpu.read(self.sources)
        self._stat1 = noise.cpu_times()

    @property
    def measured(self) -> bool:
        """Whether the phase ran (started and stopped), so `finish` has readings to work on."""
        return self._cpu0 is not None and self._cpu1 is not None

    def __enter__(self) -> Phase:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def finish(self, requests: int) -> PhaseRecord:
        """The phase's record, once the block has run `requests` requests."""
        assert self._cpu0 is not None and self._cpu1 is not None, "finish() after the with block"
        lab_ticks = self._cpu1.lab_ticks - self._cpu0.lab_ticks
        self.record = PhaseRecord(
            self.name,
            requests,
            cpu.per_request_ms(self._cpu0, self._cpu1, requests),
            noise.noise_record(self._stat0, self._stat1, lab_ticks, self._seconds),
        )
        return self.record


def merge_cpu(records: list[PhaseRecord]) -> dict[str, float | None]:
    """CPU ms per request over several trials of one phase (request-weighted mean per source)."""
    out: dict[str, float | None] = {}
    total = sum(r.requests for r in records)
    for name in records[0].cpu_ms_per_request if records else ():
        vals = [(r.cpu_ms_per_request.get(name), r.requests) for r in records]
        if total <= 0 or any(v is None for v, _ in vals):
            out[name] = None
        else:
            out[name] = round(sum(float(v or 0.0) * n for v, n in vals) / total, 4)
    return out
