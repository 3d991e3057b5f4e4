"""Locust scenarios against the perflab search service.

Users (FastHttpUser):
- Searcher: signs in as a seeded user, searches with Zipf-distributed queries (a few with filters),
  opens a result now and then.
- Uploader: signs in and uploads photos from data/photos with captions.
- SessionChurn: signs in, searches a little, signs out, again.
- OpenModelSearcher: an open-model searcher (fixed arrival rate per user); its latency is measured from
  the *intended* send time, so a stall is charged to every request it delayed (no coordinated omission).
  Selected with PERFLAB_LOAD_OPEN_RATE > 0 (requests per second per user); the others are then off.

Every scenario with a weight runs at least one user: Uploader and SessionChurn have `fixed_count = 1`
(Locust spawns those first), searchers take the rest, so a run needs at least 3 users
(`perflab.lab.loadtest.run_locust` refuses fewer). Requests are counted per scenario (the user class)
and reported in the summary's `scenarios`, beside the users each ran.

Latency percentiles come from HDR histograms (3 significant figures) recorded on every worker and
merged on the master; Locust's own percentiles are rounded to 2 significant figures. At the end the
`quitting` hook writes PERFLAB_LOAD_SUMMARY (JSON) and sets the exit code when p95 is over
PERFLAB_LOAD_P95_MS (default: notebooks/slo.toml's bound on load.p95_ms) or more than
PERFLAB_LOAD_MAX_FAIL_RATIO of requests failed. The master (or the local runner) appends "start" and
"stop" to PERFLAB_LOAD_MARKS when the test starts and stops, so a measured phase
(perflab.lab.loadtest) covers the requests counted, not Locust's start-up.

Configuration is by environment (so a master and its workers agree): PERFLAB_LOAD_USERS (seeded users
to sign in as), PERFLAB_LOAD_SEED, PERFLAB_LOAD_PHOTOS (folder), the SLO variables above.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

import gevent
from locust import FastHttpUser, between, constant, events, task
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from perflab.db.seed import seeded_email
from perflab.db.vocabulary import ZipfQuerySampler
from perflab.lab.latency import LatencyHistogram
from perflab.lab.loadtest import MARKS_ENV, default_p95_slo_ms

SEEDED_USERS = int(os.environ.get("PERFLAB_LOAD_USERS", "20"))
SEED = int(os.environ.get("PERFLAB_LOAD_SEED", "42"))
P95_SLO_MS = float(os.environ.get("PERFLAB_LOAD_P95_MS") or default_p95_slo_ms())
MAX_FAIL_RATIO = float(os.environ.get("PERFLAB_LOAD_MAX_FAIL_RATIO", "0.01"))
OPEN_RATE = float(os.environ.get("PERFLAB_LOAD_OPEN_RATE", "0"))
SUMMARY = os.environ.get("PERFLAB_LOAD_SUMMARY", "")
MARKS = os.environ.get(MARKS_ENV, "")
PHOTOS = Path(
    os.environ.get("PERFLAB_LOAD_PHOTOS", str(Path(__file__).resolve().parents[1] / "data" / "photos"))
)

# Per-process HDR histograms by request name; workers ship theirs to the master every report interval.
_HDR: dict[str, LatencyHistogram] = {}
_MERGED: dict[str, LatencyHistogram] = {}
# Per-process request counts by scenario (user class), shipped and summed on the master like the HDRs.
_COUNTS: dict[str, int] = {}
_MERGED_COUNTS: dict[str, int] = {}
_sampler = ZipfQuerySampler(SEED + os.getpid())


def _hist(table: dict[str, LatencyHistogram], name: str) -> LatencyHistogram:
    if name not in table:
        table[name] = LatencyHistogram()
    return table[name]


@events.request.add_listener
def _record(
    request_type: str, name: str, response_time: float, exception: Any, context: Any = None, **_: Any
) -> None:
    if exception is None and request_type != "OPEN":
        _hist(_HDR, name).record_ms(response_time)
    scenario = (context or {}).get("scenario") if isinstance(context, dict) else None
    if scenario:
        _COUNTS[scenario] = _COUNTS.get(scenario, 0) + 1


@events.report_to_master.add_listener
def _ship(client_id: str, data: dict[str, Any]) -> None:
    data["perflab_hdr"] = {name: h.encode() for name, h in _HDR.items()}
    data["perflab_counts"] = dict(_COUNTS)
    _HDR.clear()
    _COUNTS.clear()


@events.worker_report.add_listener
def _merge(client_id: str, data: dict[str, Any]) -> None:
    for name, encoded in data.get("perflab_hdr", {}).items():
        _hist(_MERGED, name).merge(encoded)
    for scenario, n in data.get("perflab_counts", {}).items():
        _MERGED_COUNTS[scenario] = _MERGED_COUNTS.get(scenario, 0) + n


def _scenarios(environment: Environment) -> dict[str, dict[str, int]]:
    """Users and requests per scenario with a weight (or a fixed count) in this run."""
    counts = _MERGED_COUNTS if isinstance(environment.runner, MasterRunner) else _COUNTS
    classes = [c for c in environment.user_classes if c.weight > 0 or c.fixed_count > 0]
    peak = getattr(environment.runner, "perflab_peak_users", {})
    return {c.__name__: {"users": peak.get(c.__name__, 0), "requests": counts.get(c.__name__, 0)}
            for c in classes}  # fmt: skip


@events.spawning_complete.add_listener
def _peak_users(user_count: int, **_: Any) -> None:
    """The most users each scenario ran at once (the runner forgets them when it stops)."""
    runner = _ENV.runner if _ENV else None
    if runner is None or isinstance(runner, WorkerRunner):
        return
    peak = getattr(runner, "perflab_peak_users", {})
    for name, n in runner.target_user_classes_count.items():
        peak[name] = max(peak.get(name, 0), n)
    runner.perflab_peak_users = peak  # type: ignore[attr-defined]


_ENV: Environment | None = None


@events.init.add_listener
def _keep_env(environment: Environment, **_: Any) -> None:
    global _ENV
    _ENV = environment


def _final_histograms(environment: Environment) -> dict[str, LatencyHistogram]:
    if isinstance(environment.runner, MasterRunner):
        return _MERGED
    return _HDR  # local runner: everything was recorded here


def _mark(environment: Environment, what: str) -> None:
    """Append `what` to the marks file (master or local runner only: one test, one start and stop)."""
    if MARKS and not isinstance(environment.runner, WorkerRunner):
        with open(MARKS, "a") as f:
            f.write(what + "\n")


@events.test_start.add_listener
def _mark_start(environment: Environment, **_: Any) -> None:
    _mark(environment, "start")


@events.test_stop.add_listener
def _mark_stop(environment: Environment, **_: Any) -> None:
    _mark(environment, "stop")


@events.quitting.add_listener
def _gate(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return
    hists = _final_histograms(environment)
    total = LatencyHistogram.merged(hists.values())
    stats = environment.stats.total
    fail_ratio = stats.fail_ratio
    summary = {
        "requests": stats.num_requests,
        "failures": stats.num_failures,
        "fail_ratio": fail_ratio,
        "rps": stats.total_rps,
        "hdr": {name: h.summary() for name, h in sorted(hists.items())},
        "hdr_total": total.summary(),
        "hdr_encoded": {name: h.encode() for name, h in hists.items()},
        "locust_p95_ms": stats.get_response_time_percentile(0.95),
        "slo": {"p95_ms": P95_SLO_MS, "max_fail_ratio": MAX_FAIL_RATIO},
        "scenarios": _scenarios(environment),
    }
    search = hists.get("/search") or hists.get("/search [open]")
    p95 = search.percentile_ms(95) if search and search.count else total.percentile_ms(95)
    breaches = []
    if p95 == p95 and p95 > P95_SLO_MS:
        breaches.append(f"search p95 {p95:.1f} ms > {P95_SLO_MS:g} ms")
    if fail_ratio > MAX_FAIL_RATIO:
        breaches.append(f"failure ratio {fail_ratio:.2%} > {MAX_FAIL_RATIO:.2%}")
    summary["breaches"] = breaches
    if SUMMARY:
        Path(SUMMARY).write_text(json.dumps(summary, indent=1))
    if breaches:
        environment.process_exit_code = 1


class _SignedIn(FastHttpUser):
    abstract = True

    def context(self) -> dict[str, Any]:
        return {"scenario": type(self).__name__}  # counted per scenario by `_record`

    def sign_in(self) -> None:
        user = random.randint(1, SEEDED_USERS)  # seeded users are user1..userN
        with self.client.post(
            "/sessions", json={"email": seeded_email(user)}, name="/sessions", catch_response=True
        ) as r:
            if r.status_code != 201:
                r.failure(f"sign-in failed: {r.status_code} {r.text[:200]}")

    def search_once(self, name: str = "/search") -> Any:
        params: dict[str, Any] = {"q": next(_queries), "k": 20}
        roll = random.random()
        if roll < 0.1:
            params["type"] = "image"
        elif roll < 0.15:
            params["from"] = "2024-01-01T00:00:00Z"
        return self.client.get("/search", params=params, name=name)


_queries = iter(_sampler)


class Searcher(_SignedIn):
    weight = 0 if OPEN_RATE > 0 else 8
    wait_time = between(0.05, 0.3)

    def on_start(self) -> None:
        self.sign_in()

    @task(10)
    def search(self) -> None:
        r = self.search_once()
        if r.status_code == 200 and random.random() < 0.2:
            results = r.json().get("results") or []
            if results:
                self.client.get(f"/media/{results[0]['id']}", name="/media/{id}")


class Uploader(_SignedIn):
    weight = 0 if OPEN_RATE > 0 else 1
    fixed_count = 0 if OPEN_RATE > 0 else 1  # at least one uploader, however few users
    wait_time = between(1, 3)

    def on_start(self) -> None:
        self.sign_in()
        self.photos = sorted(p for p in PHOTOS.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))

    @task
    def upload(self) -> None:
        if not self.photos:
            return
        photo = random.choice(self.photos)
        caption = " ".join(_sampler.sample(1)[0].split()[:4]) + " photo"
        with self.client.post(
            "/media",
            files={"file": (photo.name, photo.read_bytes(), "image/jpeg")},
            data={"caption": caption, "tags": "load,upload"},
            name="/media",
            catch_response=True,
        ) as r:
            if r.status_code != 201:
                r.failure(f"upload failed: {r.status_code} {r.text[:200]}")


class SessionChurn(_SignedIn):
    weight = 0 if OPEN_RATE > 0 else 1
    fixed_count = 0 if OPEN_RATE > 0 else 1  # at least one churning session
    wait_time = between(0.5, 1.5)

    @task
    def churn(self) -> None:
        self.sign_in()
        for _ in range(random.randint(1, 3)):
            self.search_once()
        self.client.delete("/sessions", name="/sessions [delete]")
        self.client.cookiejar.clear()


class OpenModelSearcher(_SignedIn):
    """Fixed arrival rate per user; latency from the intended send time (corrected for omission)."""

    weight = 1 if OPEN_RATE > 0 else 0
    wait_time = constant(0)

    def on_start(self) -> None:
        self.sign_in()
        self.interval = 1.0 / OPEN_RATE if OPEN_RATE > 0 else 1.0
        self.due = time.perf_counter() + random.random() * self.interval

    @task
    def search(self) -> None:
        delay = self.due - time.perf_counter()
        if delay > 0:
            gevent.sleep(delay)
        intended = self.due
        self.due += self.interval
        r = self.search_once(name="/search [service time]")
        latency_ms = (time.perf_counter() - intended) * 1000.0
        if r.status_code == 200:
            _hist(_HDR, "/search [open]").record_ms(latency_ms)
