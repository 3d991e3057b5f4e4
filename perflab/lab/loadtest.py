"""`perflab loadtest`: run the Locust scenarios headless, locally or distributed, into a report folder.

Default host: a local `perflab serve` started for the run (and stopped after). `--workers N` runs one
master and N worker processes on this machine, exactly as they would run across machines (workers
connect to the master's port); histograms are merged on the master.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from perflab.config import Settings, project_root
from perflab.errors import PerflabError
from perflab.net import free_port


@dataclass
class LoadtestResult:
    exit_code: int
    folder: Path
    summary: dict[str, Any]


def _locustfiles(steps: str | None) -> str:
    folder = project_root() / "loadtests"
    files = [folder / "locustfile.py"] + ([folder / "step_shape.py"] if steps else [])
    return ",".join(str(f) for f in files)


def run_locust(
    host: str,
    out: Path,
    *,
    users: int = 8,
    duration: str = "30s",
    spawn_rate: float | None = None,
    workers: int = 0,
    steps: str | None = None,
    step_seconds: float = 20.0,
    open_rate: float = 0.0,
    p95_slo_ms: float = 2000.0,
    seeded_users: int = 20,
    seed: int = 42,
    timeout: float | None = None,
) -> LoadtestResult:
    out.mkdir(parents=True, exist_ok=True)
    summary_path = out / "locust_summary.json"
    env = {
        **os.environ,
        "PERFLAB_LOAD_SUMMARY": str(summary_path),
        "PERFLAB_LOAD_P95_MS": str(p95_slo_ms),
        "PERFLAB_LOAD_OPEN_RATE": str(open_rate),
        "PERFLAB_LOAD_USERS": str(seeded_users),
        "PERFLAB_LOAD_SEED": str(seed),
        "PERFLAB_LOAD_STEPS": steps or "",
        "PERFLAB_LOAD_STEP_SECONDS": str(step_seconds),
    }
    locust = [sys.executable, "-m", "locust", "-f", _locustfiles(steps)]
    common = ["--headless", "--host", host, "--csv", str(out / "locust"), "--csv-full-history",
              "--html", str(out / "locust.html"), "--json-file", str(out / "locust"), "--loglevel", "WARNING",
              "--stop-timeout", "5", "--only-summary"]  # fmt: skip
    if not steps:
        common += ["-u", str(users), "-r", str(spawn_rate or users), "-t", duration]
    else:
        # the shape decides users; -t bounds the run in case the shape never ends
        total = int(step_seconds * len(steps.split(","))) + 10
        common += ["-t", f"{total}s"]
    procs: list[subprocess.Popen[bytes]] = []
    log = open(out / "locust.log", "ab")  # noqa: SIM115
    try:
        if workers > 0:
            port = free_port()
            master = [*locust, *common, "--master", "--master-bind-host", "127.0.0.1",
                      "--master-bind-port", str(port), "--expect-workers", str(workers),
                      "--expect-workers-max-wait", "60"]  # fmt: skip
            main = subprocess.Popen(master, env=env, stdout=log, stderr=subprocess.STDOUT)
            for _ in range(workers):
                worker = [*locust, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port),
                          "--loglevel", "WARNING"]  # fmt: skip
                procs.append(subprocess.Popen(worker, env=env, stdout=log, stderr=subprocess.STDOUT))
        else:
            main = subprocess.Popen([*locust, *common], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            code = main.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            main.kill()
            raise PerflabError(f"locust did not finish within {timeout}s (see {out / 'locust.log'})") from exc
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
    finally:
        for p in [*procs]:
            if p.poll() is None:
                p.kill()
        log.close()
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return LoadtestResult(code, out, summary)


def loadtest(settings: Settings, argv: list[str]) -> int:
    from perflab.lab.harness import ServiceProcess

    parser = argparse.ArgumentParser(
        prog="perflab loadtest", description="Locust, headless, into a report folder"
    )
    parser.add_argument("--host", help="service URL (default: start a local `perflab serve` for the run)")
    parser.add_argument("--users", type=int, default=8, help="concurrent Locust users")
    parser.add_argument("--spawn-rate", type=float, help="users started per second (default: all at once)")
    parser.add_argument("--duration", default="30s", help="run time, e.g. 30s, 5m")
    parser.add_argument("--workers", type=int, default=0, help="distributed: 1 master + N worker processes")
    parser.add_argument("--steps", help="step through concurrency levels, e.g. 1,8,32 (LoadTestShape)")
    parser.add_argument("--step-seconds", type=float, default=20.0)
    parser.add_argument("--open-rate", type=float, default=0.0, help="open model: requests/s per user")
    parser.add_argument("--p95-slo-ms", type=float, default=2000.0)
    parser.add_argument("--seeded-users", type=int, default=20, help="sign in as user1..userN@example.com")
    parser.add_argument("--serve-workers", type=int, default=2, help="uvicorn workers of the local service")
    parser.add_argument("--out", type=Path, help="output folder (default reports/loadtest-<time>)")
    args = parser.parse_args(argv)
    out = args.out or project_root() / "reports" / (
        "loadtest-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    )
    kwargs = dict(
        users=args.users, duration=args.duration, spawn_rate=args.spawn_rate, workers=args.workers,
        steps=args.steps, step_seconds=args.step_seconds, open_rate=args.open_rate,
        p95_slo_ms=args.p95_slo_ms, seeded_users=args.seeded_users,
    )  # fmt: skip
    if args.host:
        result = run_locust(args.host, out, **kwargs)
    else:
        out.mkdir(parents=True, exist_ok=True)
        with ServiceProcess(settings, workers=args.serve_workers, log=out / "serve.log") as svc:
            result = run_locust(svc.url, out, **kwargs)
    total = result.summary.get("hdr_total", {})
    print(
        f"requests {result.summary.get('requests')}, failures {result.summary.get('failures')}, "
        f"rps {result.summary.get('rps', 0):.1f}, p50 {total.get('p50_ms')} ms, p95 {total.get('p95_ms')} ms "
        f"(HDR); breaches: {result.summary.get('breaches') or 'none'}"
    )
    print(f"loadtest: {out}/ (locust.html, locust_stats*.csv, locust_summary.json)")
    return result.exit_code


def read_run(folder: Path) -> tuple[dict[str, Any], Any]:
    """A finished run's HDR summary and Locust's stats history (a pandas DataFrame)."""
    import pandas as pd

    summary_path = folder / "locust_summary.json"
    history_path = folder / "locust_stats_history.csv"
    if not summary_path.exists() or not history_path.exists():
        raise PerflabError(f"{folder} has no Locust run (locust_summary.json, locust_stats_history.csv)")
    return json.loads(summary_path.read_text()), pd.read_csv(history_path)
