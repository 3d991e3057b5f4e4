"""The one measurement contract every benchmark follows (and the notebooks call).

A benchmark module `perflab/bench/NAME.py` has:

    @dataclass(frozen=True)
    class Config:                       # every knob, with defaults; CLI flags come from the fields
        rows: int = field(default=10_000, metadata={"help": "rows seeded"})
        cold_requests: int = field(default=600, metadata={"flag": "--cold"})

    def run(settings: Settings, cfg: Config) -> Result: ...

    def main(settings: Settings, argv: list[str]) -> int:
        return cli(settings, argv, Config, run, __doc__)

`Result` serializes to ONE JSON envelope (`perflab bench NAME --json` prints it on one line):

    {<the benchmark's existing flat keys, kept stable>,
     "benchmark": NAME, "contract": 1, "config": {...},
     "figures": {fig: {"median", "ci95": [lo, hi], "trials": [...], "samples": [...], "status"}},
     "trials": {fig: [...]}, "ci95": {fig: [lo, hi]},          # the same, flat, per headline figure
     "cpu_ms_per_request": {phase: {"server", "client", "redis", "postgres"}},   # ms, None = unknown
     "noise": {phase: {outsider_share, lab_share, steal_share, loadavg, cpu_model, cpu_mhz, noisy, ...}},
     "noisy": bool, "provenance": {...}}

Rules of measurement (perflab.lab.stats holds the numbers):
- Every headline figure is measured in >= MIN_TRIALS (5) trials; its value is the median of the trials,
  its uncertainty a 95 % percentile-bootstrap CI of that median (`estimate`).
- Two things compared run interleaved, A B A B (`interleave`), never all of A then all of B.
- Percentiles come only from `perflab.lab.latency.LatencyHistogram` (`percentile_estimate` takes one
  histogram per trial). A p95 needs >= 1,000 samples per trial, a p99 >= 10,000; below that the figure
  is kept but its status is "insufficient" and no gate is judged on it.
- Each measured phase runs inside `Phase(name, sources)` (perflab.lab.phase): CPU ms per request per
  process from /proc, and the noise record (CPU taken by processes outside the lab, load, steal).
- Pass/fail is never decided here: gates live only in notebooks/slo.toml (perflab.lab.slo).

What lives where:
- perflab/lab/  : the measuring instruments and judgement, knowing nothing of what is measured -
  histograms and load drivers (latency), statistics (stats), CPU and noise (cpu, noise, phase),
  calibration, SLO gates, compare, history, reports. lab never imports bench
  (tests/test_architecture.py checks it); `perflab report` reaches the benchmarks only through the
  notebooks it runs.
- perflab/bench/: the experiments - each drives one part of the system (search service, vector index,
  caches, images, CDN, embedder) through the lab's instruments and returns a `Result`. Notebooks and
  `perflab bench` call the same `run`. `bench/selftest.py` is the experiment on the instruments
  themselves: it runs the search bench A/A and A/B to measure `perflab compare`'s error rates.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from perflab.config import Settings
from perflab.lab.figures import json_ready
from perflab.lab.latency import LatencyHistogram
from perflab.lab.phase import Phase, PhaseRecord, merge_cpu
from perflab.lab.stats import MIN_TRIALS, Estimate, estimate, min_samples

__all__ = [
    "MIN_TRIALS",
    "Estimate",
    "Phase",
    "PhaseRecord",
    "Result",
    "cli",
    "estimate",
    "interleave",
    "min_samples",
    "percentile_estimate",
    "repeat",
]

CONTRACT_VERSION = 1
T = TypeVar("T")
C = TypeVar("C")


def repeat(trial: Callable[[int], T], n: int = MIN_TRIALS) -> list[T]:
    """Run `trial(i)` for i in 0..n-1 (n >= MIN_TRIALS)."""
    if n < MIN_TRIALS:
        raise ValueError(f"at least {MIN_TRIALS} trials, not {n}")
    return [trial(i) for i in range(n)]


def interleave(arms: Mapping[str, Callable[[int], T]], n: int = MIN_TRIALS) -> dict[str, list[T]]:
    """Trial i of every arm, then trial i + 1 of every arm: A B A B ..., so drift hits both alike."""
    if n < MIN_TRIALS:
        raise ValueError(f"at least {MIN_TRIALS} trials, not {n}")
    out: dict[str, list[T]] = {name: [] for name in arms}
    for i in range(n):
        for name, trial in arms.items():
            out[name].append(trial(i))
    return out


def percentile_estimate(
    histograms: Sequence[LatencyHistogram], percentile: float, *, noisy: bool = False
) -> Estimate:
    """The `percentile` of each trial's histogram, as one Estimate with sample floors applied."""
    return estimate(
        [h.percentile_ms(percentile) for h in histograms],
        samples=[h.count for h in histograms],
        percentile=percentile,
        noisy=noisy,
    )


@dataclass
class Result:
    """What a benchmark run produced; `envelope()` is its JSON contract."""

    benchmark: str
    config: dict[str, Any]
    legacy: dict[str, Any] = field(default_factory=dict)  # the benchmark's existing flat keys
    estimates: dict[str, Estimate] = field(default_factory=dict)
    phases: dict[str, list[PhaseRecord]] = field(default_factory=dict)  # phase -> one record per trial
    provenance: dict[str, Any] = field(default_factory=dict)

    def add_phase(self, record: PhaseRecord) -> None:
        self.phases.setdefault(record.name, []).append(record)

    def phase_noisy(self, name: str) -> bool:
        return any(r.noise.noisy for r in self.phases.get(name, ()))

    @property
    def noisy(self) -> bool:
        return any(self.phase_noisy(name) for name in self.phases)

    def cpu_ms_per_request(self) -> dict[str, dict[str, float | None]]:
        return {name: merge_cpu(records) for name, records in self.phases.items()}

    def noise(self) -> dict[str, Any]:
        """Per phase: the worst trial's outsider share decides `noisy`; every trial is listed."""
        out: dict[str, Any] = {}
        for name, records in self.phases.items():
            shares = [r.noise.outsider_share for r in records if r.noise.outsider_share is not None]
            last = records[-1].noise.as_dict()
            out[name] = {
                **{k: last[k] for k in ("cpus", "cpu_model", "cpu_mhz", "threshold")},
                "outsider_share_max": max(shares) if shares else None,
                "outsider_share": [r.noise.outsider_share for r in records],
                "lab_share": [r.noise.lab_share for r in records],
                "steal_share": [r.noise.steal_share for r in records],
                "loadavg": [list(r.noise.loadavg) for r in records],
                "seconds": [r.noise.seconds for r in records],
                "noisy": any(r.noise.noisy for r in records),
            }
        return out

    def envelope(self) -> dict[str, Any]:
        envelope: dict[str, Any] = json_ready({
            **self.legacy,
            "benchmark": self.benchmark,
            "contract": CONTRACT_VERSION,
            "config": self.config,
            "figures": {k: e.as_dict() for k, e in self.estimates.items()},
            "trials": {k: list(e.trials) for k, e in self.estimates.items()},
            "ci95": {k: list(e.ci95) for k, e in self.estimates.items()},
            "cpu_ms_per_request": self.cpu_ms_per_request(),
            "noise": self.noise(),
            "noisy": self.noisy,
            "provenance": self.provenance,
        })  # fmt: skip
        return envelope

    def to_json(self) -> str:
        return json.dumps(self.envelope(), separators=(",", ":"), default=str)


def _parser(config_type: type[Any], description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    hints = typing.get_type_hints(config_type)
    for f in dataclasses.fields(config_type):
        flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
        names = [flag] + ([alias] if (alias := "--" + f.name.replace("_", "-")) != flag else [])
        kind = hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else None
        if kind is bool:
            parser.add_argument(*names, dest=f.name, action=argparse.BooleanOptionalAction, default=default,
                                help=f.metadata.get("help"))  # fmt: skip
        elif kind in (int, float, str):
            parser.add_argument(*names, dest=f.name, type=kind, default=default, help=f.metadata.get("help"))
        # other field types (tuples, nested) are set in code, not on the command line
    parser.add_argument("--json", action="store_true", help="print one JSON object (the contract envelope)")
    return parser


def cli(
    settings: Settings,
    argv: list[str],
    config_type: type[C],
    run: Callable[[Settings, C], Result],
    doc: str | None,
    *,
    name: str | None = None,
    render: Callable[[Result], None] | None = None,
) -> int:
    """`main` for a benchmark: flags from the Config fields, `--json` prints the envelope on one line."""
    description = (doc or "").split("\n\n")[0]
    parser = _parser(config_type, description)
    parser.prog = f"perflab bench {name or run.__module__.rsplit('.', 1)[-1]}"
    args = vars(parser.parse_args(argv))
    as_json = args.pop("json")
    cfg = config_type(**{k: v for k, v in args.items() if v is not None})
    result = run(settings, cfg)
    if as_json:
        print(result.to_json())
    elif render is not None:
        render(result)
    else:
        print_result(result)
    return 0


def print_result(result: Result) -> None:
    """A plain-text view: headline figures with CI and trials, CPU per request and noise per phase."""
    for key, e in result.estimates.items():
        lo, hi = e.ci95
        print(
            f"{key:>24}: {e.median:10.3f}  95% CI [{lo:.3f}, {hi:.3f}]  {e.status:12} trials {list(e.trials)}"
        )
    for phase, cpu in result.cpu_ms_per_request().items():
        parts = "  ".join(f"{k} {'?' if v is None else f'{v:.3f}'}" for k, v in cpu.items())
        print(f"{'cpu ms/req ' + phase:>24}: {parts}")
    for phase, n in result.noise().items():
        print(f"{'noise ' + phase:>24}: outsiders max {n['outsider_share_max']}, noisy {n['noisy']}, "
              f"load {n['loadavg'][-1] if n['loadavg'] else None}")  # fmt: skip
    for k, v in result.legacy.items():
        print(f"{k:>24}: {v}")
