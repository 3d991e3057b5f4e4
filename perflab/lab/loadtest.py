"""`perflab loadtest`: run the Locust scenarios headless, locally or distributed, into a report folder.

Default host: a local `perflab serve` started for the run (and stopped after). `--workers N` runs one
master and N worker processes on this machine, exactly as they would run across machines (workers
connect to the master's port); histograms are merged on the master.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perflab.config import project_root
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


# The closed-model scenarios: Uploader and SessionChurn run one user each (`fixed_count`), searchers the rest.
CLOSED_SCENARIOS = ("Searcher", "Uploader", "SessionChurn")


def check_users(users: int, steps: str | None, open_rate: float) -> None:
    """Every scenario with a weight runs at least one user, so every level needs one user per scenario."""
    if open_rate > 0:
        return
    levels = [int(x) for x in steps.split(",") if x.strip()] if steps else [users]
    need = len(CLOSED_SCENARIOS)
    if min(levels) < need:
        raise PerflabError(
            f"a load test needs at least {need} users at every level, one per scenario "
            f"({', '.join(CLOSED_SCENARIOS)}); got {min(levels)}"
        )


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
    check_users(users, steps, open_rate)
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


def read_run(folder: Path) -> tuple[dict[str, Any], Any]:
    """A finished run's HDR summary and Locust's stats history (a pandas DataFrame)."""
    import pandas as pd

    summary_path = folder / "locust_summary.json"
    history_path = folder / "locust_stats_history.csv"
    if not summary_path.exists() or not history_path.exists():
        raise PerflabError(f"{folder} has no Locust run (locust_summary.json, locust_stats_history.csv)")
    return json.loads(summary_path.read_text()), pd.read_csv(history_path)
