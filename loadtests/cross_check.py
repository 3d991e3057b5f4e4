"""perflab's bench client against loadtests/raw_client.py on one service, interleaved pair by pair.

    python loadtests/cross_check.py --rows 100000 --pairs 5 --warm 2000 --open-requests 2000 --open-rate 40

Starts the bench's service on its seeded library (perflab.bench.search.SearchBench), then runs `pairs`
rounds of: perflab warm (closed, concurrency 8), raw warm (closed, 8), perflab open cold, raw open cold,
the order of each pair shuffled per round. Prints one JSON line per trial and a last line with both
clients' medians, so a latency figure is quoted only where two clients that share no code agree.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from perflab.bench.search import SearchBench, SearchBenchConfig
from perflab.config import Settings

RAW = Path(__file__).resolve().parent / "raw_client.py"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--pairs", type=int, default=5)
    p.add_argument("--warm", type=int, default=2000, help="warm requests per trial")
    p.add_argument("--open-requests", type=int, default=2000)
    p.add_argument("--open-rate", type=float, default=40.0)
    a = p.parse_args()
    cfg = SearchBenchConfig(rows=a.rows)
    rng = random.Random(0)
    out: dict[str, list[dict[str, Any]]] = {}
    with SearchBench(Settings.from_env(), cfg, log=lambda m: print(m, file=sys.stderr)) as bench:

        def raw(*args: str) -> dict[str, Any]:
            cmd = [sys.executable, str(RAW), *args, "--url", bench.url, "--users", str(cfg.users)]
            return dict(json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout))

        def perflab_warm() -> dict[str, Any]:
            h = bench.warm(8, a.warm, settled=True).histogram
            return {"p50_ms": h.percentile_ms(50), "p95_ms": h.percentile_ms(95), "samples": h.count}

        def perflab_open() -> dict[str, Any]:
            h = bench.cold(32, a.open_requests, settled=True, rate_per_s=a.open_rate).histogram
            return {f"p{q}_ms": h.percentile_ms(q) for q in (50, 95, 99)} | {"samples": h.count}

        arms: dict[str, dict[str, Callable[[], dict[str, Any]]]] = {
            "warm": {"perflab": perflab_warm,
                     "raw": lambda: raw("closed", "--concurrency", "8", "--requests", str(a.warm))},
            "open": {"perflab": perflab_open,
                     "raw": lambda: raw("open", "--rate", str(a.open_rate), "--requests", str(a.open_requests))},
        }  # fmt: skip
        for i in range(a.pairs):
            for kind, pair in arms.items():
                order = list(pair)
                rng.shuffle(order)
                for client in order:
                    res = pair[client]()
                    out.setdefault(f"{kind}.{client}", []).append(res)
                    print(json.dumps({"trial": i, "kind": kind, "client": client, **res}), flush=True)
    medians = {
        name: {k: statistics.median(t[k] for t in trials) for k in trials[0] if k.startswith("p")}
        for name, trials in out.items()
    }
    print(json.dumps({"medians": medians}))


if __name__ == "__main__":
    main()
