"""`perflab selftest`: how often `perflab compare` cries wolf, and how often it catches a real slowdown.

On one seeded library, services run side by side: A and A' (the same code) and B_x (the same code with
the lab-only knob PERFLAB_LAB_EXTRA_DELAY_MS set to x % of A's median request latency, measured first).
Each comparison takes 5 fresh trials per arm, run as randomized multiple interleaved trials: every
trial's requests go in `--blocks` blocks, run in rounds over every trial of every arm in a shuffled
order (see `_comparison`), and the trials are judged by the same test `perflab compare` applies to a figure measured in trials (Mann-Whitney + bootstrap CI
beyond the tolerance):
- A/A false-alarm rate: comparisons of A with A' that are flagged (either direction); target <= 1 / 20;
- A/B detection rate: comparisons of A with B_x flagged as a regression; target >= 19 / 20 at 20 %;
- the smallest slowdown detected reliably: the smallest x detected in >= 19 / 20.

The figure judged is warm search latency p50 at concurrency 1 (a p95 would need 1,000 requests per
trial; at concurrency 1 the knob's delay adds to the latency one for one, so x % is x %). This is the
lab's own experiment runner, so it calls into perflab.bench (lazily), as `perflab report` runs notebooks.

Placement is a controlled variable. Unpinned on 2 cores, a c=1 trial's p50 sits in one of two modes
~30 % apart for the whole trial (where the scheduler puts client, worker and Redis), larger than the
slowdown to be seen. `--placement shared` (the default) pins client and services to one CPU, the same
for every arm and trial (the shared embedded Redis and PostgreSQL are not moved, and take the other);
`split` pins the services to one CPU and the client to another (Redis still floats); `none` leaves it
all to the scheduler. Measured trial spreads are in docs/lab.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from perflab.config import Settings
from perflab.errors import PerflabError
from perflab.lab.compare import compare_samples
from perflab.lab.noise import NOISY_SHARE
from perflab.lab.stats import MIN_TRIALS

FIGURE = "search.warm_p50_ms"
DELAY_ENV = "PERFLAB_LAB_EXTRA_DELAY_MS"  # perflab.service.search.LAB_EXTRA_DELAY_ENV
Placement = Literal["split", "shared", "none"]
PLACEMENTS: tuple[Placement, ...] = ("split", "shared", "none")


def cpu_sets(placement: Placement, available: set[int]) -> tuple[set[int], set[int]] | None:
    """(services' CPUs, client's CPUs) for a placement, or None to leave both to the scheduler.
    Services take the highest CPU, the client the lowest (with one CPU, `split` is `shared`)."""
    if placement == "none" or not available:
        return None
    server = {max(available)}
    return server, ({min(available)} if placement == "split" else server)


@dataclass
class Rates:
    comparisons: int
    false_alarms: int  # A/A comparisons flagged
    detected: dict[str, int] = field(default_factory=dict)  # slowdown % -> A/B comparisons flagged
    baseline_ms: float = 0.0
    placement: str = "none"  # how client and services were pinned (see cpu_sets)
    blocks: int = 1  # each trial's requests in this many blocks, in shuffled rounds over trials and arms
    outsiders: list[float | None] = field(default_factory=list)  # per comparison, over all its blocks
    quiet: dict[str, Any] = field(default_factory=dict)  # the rates over the quiet comparisons only
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


def rates(
    trials: dict[str, list[list[float]]],
    *,
    tolerance: float = 0.05,
    outsiders: list[float | None] | None = None,
) -> Rates:
    """From per-arm, per-comparison trial lists ("A", "A2", "B<pct>"), the selftest's rates. With
    `outsiders` (per comparison), `quiet` gives the same rates over the comparisons whose outsiders
    stayed at or under the lab's noise threshold (decided by the noise record, before any verdict)."""
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
    if outsiders is not None:
        out.outsiders = list(outsiders)
        keep = [i for i, share in enumerate(outsiders) if share is not None and share <= NOISY_SHARE]
        if keep:
            q = rates({arm: [runs[i] for i in keep] for arm, runs in trials.items()}, tolerance=tolerance)
            out.quiet = {"comparisons": q.comparisons, "false_alarms": q.false_alarms, "detected": q.detected}
    return out


def measure(
    settings: Settings,
    *,
    rows: int,
    comparisons: int,
    requests: int,
    slowdowns: tuple[int, ...],
    placement: Placement = "shared",
    blocks: int = 10,
    log: Any = print,
) -> Rates:
    from perflab.bench.search import Config

    cfg = Config(rows=rows, users=min(200, max(2, rows // 40)), serve_workers=1)
    before = os.sched_getaffinity(0)
    cpus = cpu_sets(placement, before)
    if cpus:  # the services are this process's children: they inherit the mask it has when they start
        os.sched_setaffinity(0, cpus[0])
    try:
        out = _measure(settings, cfg, comparisons, requests, slowdowns, cpus, blocks, log)
    finally:
        os.sched_setaffinity(0, before)
    out.placement = placement if cpus else "none"
    out.blocks = blocks
    return out


def _measure(
    settings: Settings,
    cfg: Any,
    comparisons: int,
    requests: int,
    slowdowns: tuple[int, ...],
    cpus: tuple[set[int], set[int]] | None,
    blocks: int,
    log: Any,
) -> Rates:
    from perflab.bench.search import SearchBench

    def as_(role: int) -> None:  # 0: start services (they inherit the mask), 1: drive load
        if cpus:
            os.sched_setaffinity(0, cpus[role])

    with SearchBench(settings, cfg, log=log) as bench:
        urls = {"A": bench.url, "A2": bench.extra_service({})}
        as_(1)
        bench.wait_answering(bench.url)
        base = bench.warm(1, max(requests, 400))
        baseline = base.histogram.percentile_ms(50)
        if base.errors or not baseline > 0:
            raise PerflabError(
                f"selftest: the baseline run failed ({base.errors} of {base.requests} requests)"
            )
        as_(0)
        for pct in slowdowns:
            urls[f"B{pct}"] = bench.extra_service({DELAY_ENV: f"{baseline * pct / 100:.3f}"})
        as_(1)
        for url in urls.values():
            bench.wait_answering(url)
        log(f"baseline warm p50 {baseline:.2f} ms; arms {', '.join(urls)}; CPUs (services, client) {cpus}")
        trials: dict[str, list[list[float]]] = {arm: [] for arm in urls}
        outsiders: list[float | None] = []  # per comparison: outsiders' share over all its blocks
        rng = random.Random(cfg.seed)
        for i in range(comparisons):
            for arm in urls:
                trials[arm].append([])
            seen: list[tuple[float, float]] = []  # (outsider share, seconds) per block
            for arm, p50s in _comparison(bench, urls, requests, blocks, seen, rng).items():
                trials[arm][-1].extend(p50s)
            # time-weighted over the blocks: one block of ~0.1 s is a few clock ticks, too coarse alone
            secs = sum(t for _, t in seen)
            outsiders.append(round(sum(x * t for x, t in seen) / secs, 4) if secs > 0 else None)
            partial = rates(trials)
            log(
                "trials " + json.dumps({arm: [round(x, 4) for x in runs[-1]] for arm, runs in trials.items()})
            )
            log(
                f"comparison {i + 1}/{comparisons}: A/A flagged {partial.false_alarms}, A/B {partial.detected}; "
                f"outsiders' CPU {outsiders[-1]}"
            )
    out = rates(trials, outsiders=outsiders)
    out.baseline_ms = round(baseline, 3)
    out.trials = {arm: [[round(x, 4) for x in t] for t in runs] for arm, runs in trials.items()}
    return out


def _comparison(
    bench: Any,
    urls: dict[str, str],
    requests: int,
    blocks: int,
    outsiders: list[tuple[float, float]],
    rng: random.Random,
) -> dict[str, list[float]]:
    """MIN_TRIALS trials of every arm, as randomized multiple interleaved trials (Abedi & Brecht,
    ICPE 2017): each trial's `requests` go in `blocks` blocks; a round runs one block of every trial of
    every arm, in an order shuffled afresh each round, and `blocks` rounds follow one another.
    Every trial of every arm then spans the comparison's whole time, so a machine state lasting
    seconds to minutes (measured here: trial p50s 20-40 % apart, a neighbour VM's load that steal time
    does not show) falls on all of them alike instead of on whichever trial ran through it. A trial's
    p50 is read from its blocks' merged histogram. Each block's outsiders' CPU share and length are
    appended to `outsiders`."""
    from perflab.lab.latency import LatencyHistogram

    per_block = max(1, requests // blocks)
    hists = {arm: [LatencyHistogram() for _ in range(MIN_TRIALS)] for arm in urls}
    for _ in range(blocks):
        order = [(t, arm) for t in range(MIN_TRIALS) for arm in urls]
        rng.shuffle(order)  # a fresh order each round: no arm always runs after another
        for t, arm in order:
            hists[arm][t].merge(bench.warm(1, per_block, url=urls[arm]).histogram)
            share = bench.last_phase.noise.outsider_share if bench.last_phase else None
            if share is not None:
                outsiders.append((share, bench.last_phase.noise.seconds))
    return {arm: [h.percentile_ms(50) for h in hs] for arm, hs in hists.items()}


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
    parser.add_argument(
        "--placement", choices=PLACEMENTS, default="shared",
        help="shared: client and services on one CPU; split: services on one, client on another; none: unpinned",
    )  # fmt: skip
    parser.add_argument(
        "--blocks", type=int, default=10,
        help="send each trial's requests in this many blocks, in shuffled rounds over trials and arms",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    slowdowns = tuple(int(x) for x in args.slowdowns.split(",") if x.strip())
    r = measure(settings, rows=args.rows, comparisons=args.comparisons, requests=args.requests,
                slowdowns=slowdowns, placement=args.placement, blocks=args.blocks,
                log=lambda m: print(m, file=sys.stderr))  # fmt: skip
    if args.json:
        print(json.dumps(r.as_dict()))
    else:
        print(f"A/A false alarms: {r.false_alarms}/{r.comparisons} (target <= {r.comparisons // 20})")
        for pct, n in r.detected.items():
            print(
                f"A/B {pct}% slowdown: detected {n}/{r.comparisons} (measured change {r.measured_change[pct]:+.1%})"
            )
        print(f"smallest slowdown detected in >= 95%: {r.smallest_reliable}%")
        if r.quiet and r.quiet["comparisons"] < r.comparisons:
            print(
                f"over the {r.quiet['comparisons']} quiet comparisons: A/A {r.quiet['false_alarms']}, A/B {r.quiet['detected']}"
            )
    ok = r.false_alarms <= r.comparisons // 20 and r.detected.get("20", r.comparisons) >= 0.95 * r.comparisons
    return 0 if ok else 1
