"""`perflab selftest`: how often `perflab compare` cries wolf, and how often it catches a real slowdown.

On one seeded library, services run side by side: A and A' (the same code) and B_x (the same code with
the lab-only knob PERFLAB_LAB_EXTRA_DELAY_MS set to x % of A's median request latency, measured first).
Trials are interleaved A A' B_20 B_10 ..., and each comparison takes 5 fresh trials per arm, judged by
the same test `perflab compare` applies to a figure measured in trials (Mann-Whitney + bootstrap CI
beyond the tolerance):
- A/A false-alarm rate: comparisons of A with A' that are flagged (either direction); target <= 1 / 20;
- A/B detection rate: comparisons of A with B_x flagged as a regression; target >= 19 / 20 at 20 %;
- the smallest slowdown detected reliably: the smallest x detected in >= 19 / 20.

The figure judged is warm search latency p50 at concurrency 1 (a p95 would need 1,000 requests per
trial; at concurrency 1 the knob's delay adds to the latency one for one, so x % is x %). This is the
lab's own experiment runner, so it calls into perflab.bench (lazily), as `perflab report` runs notebooks.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

from perflab.config import Settings
from perflab.errors import PerflabError
from perflab.lab.compare import compare_samples
from perflab.lab.stats import MIN_TRIALS

FIGURE = "search.warm_p50_ms"
DELAY_ENV = "PERFLAB_LAB_EXTRA_DELAY_MS"  # perflab.service.search.LAB_EXTRA_DELAY_ENV


@dataclass
class Rates:
    comparisons: int
    false_alarms: int  # A/A comparisons flagged
    detected: dict[str, int] = field(default_factory=dict)  # slowdown % -> A/B comparisons flagged
    baseline_ms: float = 0.0
    measured_change: dict[str, float] = field(default_factory=dict)  # slowdown % -> median change seen
    trials: dict[str, list[list[float]]] = field(default_factory=dict)  # arm -> per-comparison trial p50s

    @property
    def smallest_reliable(self) -> int | None:
        """The smallest slowdown (%) flagged in at least 19 of 20 comparisons (95 %)."""
        ok = [int(k) for k, n in self.detected.items() if n >= 0.95 * self.comparisons]
        return min(ok) if ok else None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "smallest_reliable_pct": self.smallest_reliable}


def flagged(a: list[float], b: list[float], *, tolerance: float = 0.05) -> str:
    """The verdict `perflab compare` gives figure FIGURE going from trials a to trials b."""
    return compare_samples(FIGURE + ".trials", a, b, tolerance=tolerance).verdict


def rates(trials: dict[str, list[list[float]]], *, tolerance: float = 0.05) -> Rates:
    """From per-arm, per-comparison trial lists ("A", "A2", "B<pct>"), the selftest's rates."""
    import numpy as np

    a, a2 = trials["A"], trials["A2"]
    out = Rates(
        len(a), sum(flagged(x, y, tolerance=tolerance) != "no change" for x, y in zip(a, a2, strict=True))
    )
    for arm, runs in trials.items():
        if arm.startswith("B"):
            pct = arm[1:]
            out.detected[pct] = sum(
                flagged(x, y, tolerance=tolerance) == "regression" for x, y in zip(a, runs, strict=True)
            )
            out.measured_change[pct] = round(
                float(np.median([np.median(y) / np.median(x) - 1 for x, y in zip(a, runs, strict=True)])), 4
            )
    return out


def measure(
    settings: Settings,
    *,
    rows: int,
    comparisons: int,
    requests: int,
    slowdowns: tuple[int, ...],
    log: Any = print,
) -> Rates:
    from perflab.bench.search import Config, SearchBench

    cfg = Config(rows=rows, users=min(200, max(2, rows // 40)), serve_workers=1)
    with SearchBench(settings, cfg, log=log) as bench:
        bench.wait_answering(bench.url)
        base = bench.warm(1, max(requests, 400))
        baseline = base.histogram.percentile_ms(50)
        if base.errors or not baseline > 0:
            raise PerflabError(
                f"selftest: the baseline run failed ({base.errors} of {base.requests} requests)"
            )
        urls = {"A": bench.url, "A2": bench.extra_service({})}
        for pct in slowdowns:
            urls[f"B{pct}"] = bench.extra_service({DELAY_ENV: f"{baseline * pct / 100:.3f}"})
        for url in urls.values():
            bench.wait_answering(url)
        log(f"baseline warm p50 {baseline:.2f} ms; arms {', '.join(urls)}")
        trials: dict[str, list[list[float]]] = {arm: [] for arm in urls}
        for i in range(comparisons):
            for arm in urls:
                trials[arm].append([])
            for _ in range(MIN_TRIALS):
                for arm, url in urls.items():  # interleaved: A A2 B20 B10 ...
                    trials[arm][-1].append(bench.warm(1, requests, url=url).histogram.percentile_ms(50))
            partial = rates(trials)
            log(
                "trials " + json.dumps({arm: [round(x, 4) for x in runs[-1]] for arm, runs in trials.items()})
            )
            log(
                f"comparison {i + 1}/{comparisons}: A/A flagged {partial.false_alarms}, A/B {partial.detected}"
            )
    out = rates(trials)
    out.baseline_ms = round(baseline, 3)
    out.trials = {arm: [[round(x, 4) for x in t] for t in runs] for arm, runs in trials.items()}
    return out


def selftest(settings: Settings, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="perflab selftest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000, help="media in the seeded library")
    parser.add_argument("--comparisons", type=int, default=20)
    parser.add_argument(
        "--requests",
        type=int,
        default=2000,
        help="requests per trial (a trial of ~1 s rides out a neighbour's burst that a 0.2 s one would not)",
    )
    parser.add_argument("--slowdowns", default="20,10,5", help="slowdowns to inject, %% of the baseline p50")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    slowdowns = tuple(int(x) for x in args.slowdowns.split(",") if x.strip())
    r = measure(settings, rows=args.rows, comparisons=args.comparisons, requests=args.requests,
                slowdowns=slowdowns, log=lambda m: print(m, file=sys.stderr))  # fmt: skip
    if args.json:
        print(json.dumps(r.as_dict()))
    else:
        print(f"A/A false alarms: {r.false_alarms}/{r.comparisons} (target <= {r.comparisons // 20})")
        for pct, n in r.detected.items():
            print(
                f"A/B {pct}% slowdown: detected {n}/{r.comparisons} (measured change {r.measured_change[pct]:+.1%})"
            )
        print(f"smallest slowdown detected in >= 95%: {r.smallest_reliable}%")
    ok = r.false_alarms <= r.comparisons // 20 and r.detected.get("20", r.comparisons) >= 0.95 * r.comparisons
    return 0 if ok else 1
