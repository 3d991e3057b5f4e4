"""perflab's bench client against loadtests/raw_client.py on one service, interleaved pair by pair.

    python loadtests/cross_check.py --rows 100000 --pairs 5 --warm 2000 --open-requests 2000 --open-rate 40

Starts the bench's service on its seeded library (perflab.bench.search.SearchBench), then runs `pairs`
rounds of: perflab warm (closed, concurrency 8), raw warm (closed, 8), perflab open cold, raw open cold,
the order of each pair shuffled per round. Prints one JSON line per trial (with its noise record and
CPU ms per request: the raw client is this process's child, so its CPU is the `client` figure) and a
last line with each arm's median, 95 % CI and status (perflab.lab.stats: noisy when any trial ran
while outsiders took more than the noise threshold), so a latency figure is quoted only where two
clients that share no code agree, and only with how busy the machine was.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from perflab.bench.search import SearchBench, SearchBenchConfig
from perflab.config import Settings
from perflab.lab.latency import LoadResult
from perflab.lab.phase import PhaseRecord, merge_cpu
from perflab.lab.stats import estimate

RAW = Path(__file__).resolve().parent / "raw_client.py"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--pairs", type=int, default=5)
    p.add_argument("--warm", type=int, default=2000, help="warm requests per trial")
    p.add_argument("--open-requests", type=int, default=2000)
    p.add_argument("--open-rate", type=float, default=40.0)
    p.add_argument("--users", type=int, default=SearchBenchConfig.users)
    p.add_argument("--workers", type=int, default=SearchBenchConfig.serve_workers, help="service workers")
    a = p.parse_args()
    cfg = SearchBenchConfig(rows=a.rows, users=a.users, serve_workers=a.workers)
    rng = random.Random(0)
    out: dict[str, list[dict[str, Any]]] = {}
    phases: dict[str, list[PhaseRecord]] = {}
    with SearchBench(Settings.from_env(), cfg, log=lambda m: print(m, file=sys.stderr)) as bench:

        def raw(*args: str) -> tuple[dict[str, Any], PhaseRecord]:
            cmd = [sys.executable, str(RAW), *args, "--url", bench.url, "--users", str(cfg.users)]
            with bench.phase("raw") as phase:  # client CPU: this process's tree (the raw client is a child)
                res = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
            return dict(res), phase.finish(int(res["samples"]))

        def perflab(res: LoadResult) -> tuple[dict[str, Any], PhaseRecord]:
            assert bench.last_phase is not None  # the bench's own phase around its load: one read of it
            h = res.histogram
            figures = {f"p{q}_ms": h.percentile_ms(q) for q in (50, 95, 99)}
            return figures | {"samples": h.count}, bench.last_phase

        arms: dict[str, dict[str, Callable[[], tuple[dict[str, Any], PhaseRecord]]]] = {
            "warm": {"perflab": lambda: perflab(bench.warm(8, a.warm, settled=True)),
                     "raw": lambda: raw("closed", "--concurrency", "8", "--requests", str(a.warm))},
            "open": {"perflab": lambda: perflab(bench.cold(32, a.open_requests, settled=True, rate_per_s=a.open_rate)),
                     "raw": lambda: raw("open", "--rate", str(a.open_rate), "--requests", str(a.open_requests))},
        }  # fmt: skip
        for i in range(a.pairs):
            for kind, pair in arms.items():
                order = list(pair)
                rng.shuffle(order)
                for client in order:
                    res, record = pair[client]()
                    res |= {
                        "cpu_ms_per_request": record.cpu_ms_per_request,
                        "outsider_share": record.noise.outsider_share,
                        "noisy": record.noise.noisy,
                        "loadavg": list(record.noise.loadavg),
                    }
                    out.setdefault(f"{kind}.{client}", []).append(res)
                    phases.setdefault(f"{kind}.{client}", []).append(record)
                    print(json.dumps({"trial": i, "kind": kind, "client": client, **res}), flush=True)
    print(json.dumps({"summary": {name: _summary(trials, phases[name]) for name, trials in out.items()}}))


def _summary(trials: list[dict[str, Any]], records: list[PhaseRecord]) -> dict[str, Any]:
    """Each percentile's median, CI and status over the trials; CPU per request over them as the
    bench merges it (request-weighted, perflab.lab.phase.merge_cpu); noise."""
    noisy = any(t["noisy"] for t in trials)
    samples = [int(t["samples"]) for t in trials]
    figures: dict[str, Any] = {
        key: estimate(
            [t[key] for t in trials], samples=samples, percentile=float(key[1:-3]), noisy=noisy
        ).as_dict()
        for key in trials[0]
        if key.startswith("p") and key.endswith("_ms")
    }
    shares = [t["outsider_share"] for t in trials if t["outsider_share"] is not None]
    return figures | {
        "cpu_ms_per_request": merge_cpu(records),
        "outsider_share_max": max(shares) if shares else None,
        "noisy_trials": sum(bool(t["noisy"]) for t in trials),
    }


if __name__ == "__main__":
    main()
