"""How busy the machine was during a phase, from the outside: a noise record.

The CPU share outsiders took is the machine's busy time (/proc/stat) minus the lab's own processes'
time, over the machine's total. A phase where outsiders, or steal (a VM's CPU given to another guest),
took more than NOISY_SHARE is noisy, and an SLO judged on a noisy figure is inconclusive rather than
pass or fail.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

NOISY_SHARE = 0.10


@dataclass(frozen=True)
class CpuTimes:
    """The machine-wide counters of /proc/stat's first line, in clock ticks."""

    total: int
    busy: int
    steal: int


def parse_proc_stat(text: str) -> CpuTimes:
    fields = [int(x) for x in text.split("\n", 1)[0].split()[1:]]
    fields += [0] * (8 - len(fields))
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
    total = user + nice + system + idle + iowait + irq + softirq + steal  # guest time is inside user
    return CpuTimes(total, total - idle - iowait - steal, steal)


def cpu_times(path: Path = Path("/proc/stat")) -> CpuTimes:
    return parse_proc_stat(path.read_text())


def cpu_model_and_mhz(path: Path = Path("/proc/cpuinfo")) -> tuple[str, float | None]:
    model, mhz = "", []
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and not model:
                model = value.strip()
            elif key == "cpu MHz":
                mhz.append(float(value))
    except (OSError, ValueError):
        pass
    return model, (round(sum(mhz) / len(mhz), 1) if mhz else None)


@dataclass(frozen=True)
class NoiseRecord:
    seconds: float
    outsider_share: float | None  # CPU share of the machine used by processes outside the lab
    lab_share: float | None
    steal_share: float | None
    loadavg: tuple[float, float, float]
    cpus: int
    cpu_model: str
    cpu_mhz: float | None
    threshold: float = NOISY_SHARE

    @property
    def noisy(self) -> bool:
        """Outsiders on this machine, or the hypervisor giving our CPUs to another guest (steal), took
        more than the threshold: either way the lab's processes waited for cores it did not measure."""
        return any(s is not None and s > self.threshold for s in (self.outsider_share, self.steal_share))

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "loadavg": list(self.loadavg), "noisy": self.noisy}


def noise_record(
    start: CpuTimes, end: CpuTimes, lab_ticks: int, seconds: float, *, threshold: float = NOISY_SHARE
) -> NoiseRecord:
    """The noise over a phase, given the lab processes' ticks used in it."""
    total = end.total - start.total
    busy = end.busy - start.busy
    steal = end.steal - start.steal
    model, mhz = cpu_model_and_mhz()
    share = None if total <= 0 else round(min(max(busy - lab_ticks, 0) / total, 1.0), 4)
    lab = None if total <= 0 else round(min(max(lab_ticks, 0) / total, 1.0), 4)
    load = os.getloadavg()
    return NoiseRecord(
        round(seconds, 3), share, lab, None if total <= 0 else round(steal / total, 4),
        (round(load[0], 2), round(load[1], 2), round(load[2], 2)), os.cpu_count() or 0, model, mhz,
        threshold,
    )  # fmt: skip


def any_noisy(records: list[dict[str, Any]]) -> bool:
    return any(bool(r.get("noisy")) for r in records)
