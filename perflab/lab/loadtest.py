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
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perflab.config import project_root
from perflab.errors import PerflabError
from perflab.lab.phase import Phase
from perflab.lab.slo import threshold
from perflab.lab.stats import Estimate, estimate
from perflab.net import free_port

P95_FIGURE = "load.p95_ms"  # the slo.toml figure the quitting hook gates search p95 on
MARKS_ENV = "PERFLAB_LOAD_MARKS"  # the locustfile appends "start" / "stop" when the test starts / stops


@dataclass
class LoadtestResult:
    exit_code: int
    folder: Path
    summary: dict[str, Any]


def _locustfiles(steps: str | None) -> str:
    folder = project_root() / "loadtests"
    files = [folder / "locustfile.py"] + ([folder / "step_shape.py"] if steps else [])
    return ",".join(str(f) for f in files)


def default_p95_slo_ms() -> float:
    """The load test's p95 gate: slo.toml's bound on load.p95_ms (never a second copy of the number)."""
    return threshold(P95_FIGURE)


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
    p95_slo_ms: float | None = None,
    seeded_users: int = 20,
    seed: int = 42,
    timeout: float | None = None,
    phase: Phase | None = None,
) -> LoadtestResult:
    """Run Locust into `out`. `p95_slo_ms` defaults to slo.toml's load.p95_ms. With `phase`, the phase
    is started when Locust starts the test and stopped when it stops it (the locustfile marks both),
    so its CPU and noise cover the requests Locust counts, not Locust's own start-up and shut-down."""
    check_users(users, steps, open_rate)
    out.mkdir(parents=True, exist_ok=True)
    summary_path = out / "locust_summary.json"
    marks = out / "locust_marks"
    marks.unlink(missing_ok=True)
    env = {
        **os.environ,
        "PERFLAB_LOAD_SUMMARY": str(summary_path),
        MARKS_ENV: str(marks),
        "PERFLAB_LOAD_P95_MS": str(p95_slo_ms if p95_slo_ms is not None else default_p95_slo_ms()),
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
            code = _wait(main, timeout, marks, phase)
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


def _wait(main: subprocess.Popen[bytes], timeout: float | None, marks: Path, phase: Phase | None) -> int:
    """Wait for Locust's master; with `phase`, start and stop it at the locustfile's marks (polled)."""
    if phase is None:
        return main.wait(timeout=timeout)
    deadline = None if timeout is None else time.monotonic() + timeout
    state = ""  # "" -> "start" -> "stop"
    try:
        while True:
            try:
                return main.wait(timeout=0.02)
            except subprocess.TimeoutExpired:
                if deadline is not None and time.monotonic() > deadline:
                    raise
            seen = marks.read_text().split() if marks.exists() else []
            if not state and "start" in seen:
                phase.start()
                state = "start"
            if state == "start" and "stop" in seen:
                phase.stop()
                state = "stop"
    finally:
        if state == "start":  # the master quit without a stop mark: end the phase where the run ended
            phase.stop()


def read_run(folder: Path) -> tuple[dict[str, Any], Any]:
    """A finished run's HDR summary and Locust's stats history (a pandas DataFrame)."""
    import pandas as pd

    summary_path = folder / "locust_summary.json"
    history_path = folder / "locust_stats_history.csv"
    if not summary_path.exists() or not history_path.exists():
        raise PerflabError(f"{folder} has no Locust run (locust_summary.json, locust_stats_history.csv)")
    return json.loads(summary_path.read_text()), pd.read_csv(history_path)


@dataclass(frozen=True)
class LoadTrials:
    """Repeated Locust runs of one load profile, as figures: the estimates are medians of the runs
    with 95 % CIs (search latency from each run's merged HDR histogram, with its sample count, so a
    p99 of a run with fewer than 10,000 searches is marked insufficient); the totals pool the runs."""

    p95_ms: Estimate
    p99_ms: Estimate
    rps: Estimate
    requests: int
    failures: int
    breaches: list[Any]

    @property
    def fail_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 1.0


def load_trials(summaries: Sequence[dict[str, Any]]) -> LoadTrials:
    """The figures of several runs' `locust_summary.json` (one per trial)."""
    if not summaries:
        raise PerflabError("no Locust runs to summarize")
    search = [s["hdr"].get("/search", s["hdr_total"]) for s in summaries]
    counts = [int(h["count"]) for h in search]
    return LoadTrials(
        estimate([float(h["p95_ms"]) for h in search], samples=counts, percentile=95),
        estimate([float(h["p99_ms"]) for h in search], samples=counts, percentile=99),
        estimate([float(s["rps"]) for s in summaries]),
        sum(int(s["requests"]) for s in summaries),
        sum(int(s["failures"]) for s in summaries),
        [b for s in summaries for b in s.get("breaches", [])],
    )
