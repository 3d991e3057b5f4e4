"""The fault lab: the search service under load while its dependencies fail, judged by counting.

`FaultLab` runs everything it breaks privately, so a fault never reaches the shared servers other
people use: a Redis (`RedisServer`, AOF on as in production) and a PostgreSQL (`PostgresServer`,
initdb in a temporary folder) of its own, a small seeded library (hashing embedder), and `perflab
serve` with several uvicorn workers pointed at them. Each scenario runs `Traffic` (signed-in users
searching Zipf queries, a trickle of photo uploads), injects one fault, lets the service recover, and
returns every request it sent with the fault's events on the same clock:

- `redis_stop`: Redis stopped, then started again. Searches must keep answering from PostgreSQL
  (zero 5xx), stay fast, and the search-cache hit rate must come back soon after the restart.
- `pg_restart`: PostgreSQL restarted (fast shutdown). A few requests may fail; the pools must
  reconnect by themselves.
- `slow_redis`: `CLIENT PAUSE` (Redis accepts connections but answers nothing): every cache call is
  bounded by the socket timeout, and the circuit breaker stops paying even that.
- `worker_kill`: one uvicorn worker SIGKILLed: the others keep serving, uvicorn starts a new one.
- `api_restart`: the whole service stopped and started again.

`durability()` then checks that every upload acknowledged with a 201 in any scenario is in
PostgreSQL and served by the API (`writes_lost` must be 0).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from perflab.config import Settings
from perflab.db import connect, seeded_email
from perflab.embed import HashingEmbedder
from perflab.lab.badinput import BadInputReport, run_bad_inputs
from perflab.lab.corpus import ensure_corpus, photo_paths
from perflab.lab.harness import ServiceProcess, seed_schema, sign_in
from perflab.lab.traffic import (
    SEARCH,
    UPLOAD,
    RequestRecord,
    Traffic,
    TrafficConfig,
    hit_rate,
    percentile_ms,
    recovery_time,
    window,
)
from perflab.net import free_port
from perflab.servers import PostgresServer, RedisServer

LAB_SCHEMA = "faultlab"
LAB_PREFIX = "faultlab"
SEARCH_TARGET_MS = 2000.0  # the seed's search latency target: p95 under a fault stays below it
RECOVERY_TARGET_S = 10.0  # the hit rate is back within this long after Redis returns
MAX_FAIL_RATIO = 0.01  # a PostgreSQL restart may fail at most this share of requests


@dataclass(frozen=True)
class FaultLabConfig:
    media: int = 2000
    users: int = 8
    seed: int = 42
    workers: int = 2
    traffic: TrafficConfig = field(default_factory=TrafficConfig)
    warmup_s: float = 5.0  # load before the first scenario, so the search cache holds the popular queries
    recovered_share: float = 0.8  # the hit rate is "back" at this share of its level before the fault


@dataclass
class ScenarioResult:
    """One fault under load: every request, the fault's events (lab clock) and the figures."""

    name: str
    start: float
    end: float
    records: list[RequestRecord]
    events: dict[str, float]
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def acknowledged(self) -> list[str]:
        return [r.media_id for r in self.records if r.media_id]


@dataclass
class Durability:
    acknowledged: int  # uploads answered 201, across every scenario
    in_postgres: int
    served_by_api: int
    unacknowledged: int  # uploads that got a 5xx or no answer (their fate is unknown to the client)

    @property
    def writes_lost(self) -> int:
        return self.acknowledged - self.in_postgres


def _counts(records: list[RequestRecord]) -> dict[str, Any]:
    statuses = Counter(r.status for r in records)
    failed = sum(1 for r in records if r.failed)
    return {
        "requests": len(records),
        "searches": sum(1 for r in records if r.kind == SEARCH),
        "uploads": sum(1 for r in records if r.kind == UPLOAD),
        "ok": sum(n for s, n in statuses.items() if 200 <= s < 300),
        "client_errors": sum(n for s, n in statuses.items() if 400 <= s < 500),
        "server_errors": sum(n for s, n in statuses.items() if s >= 500),
        "no_answer": statuses.get(0, 0),
        "failed": failed,
        "fail_ratio": round(failed / len(records), 5) if records else None,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        # over the whole scenario; the scenarios with a fault window replace these with its own
        "p95_ms": percentile_ms(records, 95),
        "max_ms": max((r.latency_ms for r in records), default=0.0),
    }


class FaultLab:
    """`with FaultLab(settings, cfg) as lab: lab.redis_stop(); ...; lab.durability()`."""

    def __init__(
        self,
        settings: Settings,
        config: FaultLabConfig | None = None,
        *,
        workdir: Path | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        self.config = config or FaultLabConfig()
        self._base = settings
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="perflab-faults-"))
        self.log = log
        self.redis = RedisServer(self.workdir / "redis", free_port())
        self.postgres = PostgresServer(self.workdir / "postgres", free_port())
        self.settings = settings  # replaced in start() by the lab's own
        self.service: ServiceProcess | None = None
        self.photos: list[Path] = []
        self.results: list[ScenarioResult] = []
        self._t0 = time.monotonic()
        self._keys = (secrets.token_hex(32), secrets.token_hex(32))

    # -- set-up ---------------------------------------------------------------------------------
    def clock(self) -> float:
        """Seconds since the lab started: the one clock of records and events."""
        return time.monotonic() - self._t0

    def start(self) -> FaultLab:
        cfg = self.config
        t = time.perf_counter()
        self.redis.start()
        self.postgres.start()
        self.settings = self._base.replace(
            redis_url=self.redis.url,
            database_url=self.postgres.url,
            db_schema=LAB_SCHEMA,
            key_prefix=LAB_PREFIX,
            home=self.workdir / "home",
            media_root=self.workdir / "media",
            embedder="hashing",
            # staging-style URLs: serve refuses to start without keys shared by all its workers
            session_secret=self._keys[0],
            cdn_signing_key=self._keys[1],
        )
        seed_schema(
            self.settings, media=cfg.media, users=cfg.users, seed=cfg.seed,
            embedder=HashingEmbedder(self.settings.embedding_dim),
        )  # fmt: skip
        ensure_corpus()
        self.photos = [p for p in photo_paths() if "_" not in p.stem]  # the small originals
        self.service = ServiceProcess(
            self.settings, workers=cfg.workers, log=self.workdir / "serve.log"
        ).start()
        self.log(
            f"fault lab up in {time.perf_counter() - t:.1f}s: {cfg.media} media, {cfg.users} users, "
            f"{cfg.workers} workers at {self.service.url} (redis :{self.redis.port}, postgres :{self.postgres.port})"
        )
        if cfg.warmup_s > 0:
            with Traffic(self.url, self._traffic(0), self.photos, clock=self.clock) as warm:
                time.sleep(cfg.warmup_s)
            self.log(f"warm-up: {len(warm.records)} requests, hit rate {hit_rate(warm.records) or 0:.2f}")
        return self

    def _traffic(self, n: int) -> TrafficConfig:
        base = self.config.traffic
        return TrafficConfig(**{**base.__dict__, "seed": base.seed + 1000 * n})

    @property
    def url(self) -> str:
        assert self.service is not None, "the lab is not started"
        return self.service.url

    def close(self) -> None:
        if self.service is not None:
            self.service.stop()
        for server in (self.redis, self.postgres):
            with contextlib.suppress(Exception):
                server.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> FaultLab:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- running a scenario ---------------------------------------------------------------------
    def run(
        self, name: str, before_s: float, inject: Callable[[Callable[[str], None]], None], after_s: float
    ) -> ScenarioResult:
        """Traffic for `before_s`, then `inject(mark)` (which marks its events), then `after_s` more."""
        events: dict[str, float] = {}

        def mark(event: str) -> None:
            events[event] = self.clock()

        traffic = Traffic(self.url, self._traffic(len(self.results) + 1), self.photos, clock=self.clock)
        start = self.clock()
        with traffic:
            time.sleep(before_s)
            inject(mark)
            time.sleep(after_s)
        result = ScenarioResult(name, start, self.clock(), traffic.records, events)
        result.figures = _counts(result.records)
        self.results.append(result)
        return result

    # -- scenarios ------------------------------------------------------------------------------
    def redis_stop(self, *, before_s: float = 4, down_s: float = 4, after_s: float = 10) -> ScenarioResult:
        def inject(mark: Callable[[str], None]) -> None:
            mark("redis stopping")
            self.redis.stop()
            mark("redis stopped")
            time.sleep(down_s)
            mark("redis starting")
            self.redis.start()
            mark("redis started")

        r = self.run("redis_stop", before_s, inject, after_s)
        stopping, stopped = r.events["redis stopping"], r.events["redis stopped"]
        started = r.events["redis started"]
        baseline = hit_rate(window(r.records, r.start, stopping)) or 0.0
        during = window(r.records, stopping, r.end)
        r.figures |= {
            "baseline_hit_rate": round(baseline, 4),
            "stop_s": round(stopped - stopping, 3),
            "down_hit_rate": hit_rate(window(r.records, stopped, r.events["redis starting"])),
            "after_hit_rate": hit_rate(window(r.records, started + after_s / 2, r.end)),
            "p95_ms": percentile_ms(during, 95),
            "search_p95_ms": percentile_ms([x for x in during if x.kind == SEARCH], 95),
            "max_ms": max((x.latency_ms for x in during), default=0.0),
            "recovery_s": recovery_time(r.records, started, self.config.recovered_share * baseline),
            "recovery_target": round(self.config.recovered_share * baseline, 4),
        }
        f = r.figures
        f["survived"] = (
            f["failed"] == 0
            and f["p95_ms"] < SEARCH_TARGET_MS
            and f["recovery_s"] is not None
            and f["recovery_s"] <= RECOVERY_TARGET_S
        )
        return r

    def pg_restart(self, *, before_s: float = 4, after_s: float = 8) -> ScenarioResult:
        def inject(mark: Callable[[str], None]) -> None:
            mark("postgres stopping")
            self.postgres.stop("fast")
            mark("postgres stopped")
            self.postgres.start()
            mark("postgres started")

        r = self.run("pg_restart", before_s, inject, after_s)
        started = r.events["postgres started"]
        failures = [x for x in r.records if x.failed]
        after = window(r.records, started, r.end)
        tail = window(r.records, r.end - 2, r.end)
        r.figures |= {
            "down_s": round(started - r.events["postgres stopping"], 3),
            "last_failure_after_start_s": (
                round(max(x.end for x in failures) - started, 3) if failures else None
            ),
            "recovered": bool(tail) and not any(x.failed for x in tail),
            "p95_ms": percentile_ms(after, 95),
            "max_ms": max((x.latency_ms for x in r.records), default=0.0),
        }
        r.figures["survived"] = r.figures["fail_ratio"] <= MAX_FAIL_RATIO and r.figures["recovered"]
        return r

    def slow_redis(self, *, before_s: float = 3, pause_s: float = 3, after_s: float = 4) -> ScenarioResult:
        def inject(mark: Callable[[str], None]) -> None:
            admin = redis.Redis.from_url(self.redis.url)
            try:
                mark("redis paused")
                admin.execute_command("CLIENT", "PAUSE", int(pause_s * 1000), "ALL")
                time.sleep(pause_s)
                mark("redis resumed")
            finally:
                admin.close()

        r = self.run("slow_redis", before_s, inject, after_s)
        paused, resumed = r.events["redis paused"], r.events["redis resumed"]
        during = window(r.records, paused, resumed)
        searches = [x for x in during if x.kind == SEARCH]
        r.figures |= {
            "socket_timeout_ms": self.settings.redis_socket_timeout * 1000,
            "p50_ms": percentile_ms(searches, 50),
            "p95_ms": percentile_ms(searches, 95),
            "max_ms": max((x.latency_ms for x in searches), default=0.0),
            "baseline_p95_ms": percentile_ms(window(r.records, r.start, paused, SEARCH), 95),
            "after_hit_rate": hit_rate(window(r.records, resumed + 1, r.end)),
        }
        # Bounded: no request waits on Redis longer than a few socket timeouts before the breaker opens.
        r.figures["timeouts_paid_max"] = round(r.figures["max_ms"] / r.figures["socket_timeout_ms"], 2)
        r.figures["survived"] = r.figures["failed"] == 0 and r.figures["max_ms"] < SEARCH_TARGET_MS
        return r

    def worker_kill(
        self, *, before_s: float = 3, after_s: float = 3, replace_timeout_s: float = 20
    ) -> ScenarioResult:
        """SIGKILL one worker; traffic goes on until uvicorn has spawned its replacement, then `after_s` more."""
        assert self.service is not None
        svc = self.service
        seen: dict[str, Any] = {}

        def inject(mark: Callable[[str], None]) -> None:
            before = svc.worker_pids()
            victim = before[0]
            mark("worker killed")
            os.kill(victim, signal.SIGKILL)
            deadline = time.monotonic() + replace_timeout_s
            while time.monotonic() < deadline:
                now = svc.worker_pids()
                if victim not in now and len(now) >= len(before):
                    mark("worker respawned")
                    break
                time.sleep(0.05)
            seen.update(victim=victim, before=before, after=svc.worker_pids())

        r = self.run("worker_kill", before_s, inject, after_s)
        killed = r.events["worker killed"]
        after = window(r.records, killed, r.end)
        r.figures |= {
            "workers": len(seen["before"]),
            "replaced": "worker respawned" in r.events,
            "respawned_after_s": (
                round(r.events["worker respawned"] - killed, 3) if "worker respawned" in r.events else None
            ),
            "failed_after_kill": sum(1 for x in after if x.failed),
            "served_after_kill": sum(1 for x in after if 200 <= x.status < 300),
            "errors": sorted({x.error for x in after if x.failed})[:5],
        }
        f = r.figures
        # Only the requests in flight on the killed worker may fail: at most one per traffic thread.
        in_flight = self.config.traffic.search_threads + 1
        f["survived"] = (
            f["replaced"]
            and f["served_after_kill"] > 0
            and f["failed_after_kill"] <= in_flight
            and f["server_errors"] == 0
        )
        return r

    def api_restart(self, *, before_s: float = 3, after_s: float = 6) -> ScenarioResult:
        assert self.service is not None
        port = self.service.port

        def inject(mark: Callable[[str], None]) -> None:
            assert self.service is not None
            mark("api stopping")
            self.service.stop()
            mark("api stopped")
            self.service = ServiceProcess(
                self.settings, workers=self.config.workers, port=port, log=self.workdir / "serve.log"
            ).start()
            mark("api started")

        r = self.run("api_restart", before_s, inject, after_s)
        r.figures |= {
            "down_s": round(r.events["api started"] - r.events["api stopping"], 3),
            "failed_after_start": sum(
                1 for x in window(r.records, r.events["api started"], r.end) if x.failed
            ),
        }
        r.figures["survived"] = r.figures["failed_after_start"] == 0
        return r

    # -- judgement ------------------------------------------------------------------------------
    def durability(self) -> Durability:
        """Every acknowledged upload of every scenario, looked up in PostgreSQL and through the API."""
        acked = [m for res in self.results for m in res.acknowledged]
        unacked = sum(1 for res in self.results for x in res.records if x.kind == UPLOAD and x.failed)
        with connect(self.settings, self.postgres.url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM media_files WHERE id = ANY(%s::uuid[])", (acked,)
            ).fetchone()
        in_pg = int(row[0]) if row else 0
        served = 0
        with closing(sign_in(self.url, self.config.users)) as client:
            for media_id in acked:
                served += client.get(f"/media/{media_id}").status_code == 200
        return Durability(len(acked), in_pg, served, unacked)

    def bad_inputs(self) -> BadInputReport:
        """The bad-input suite against the lab's service, with its crash and write checks."""
        assert self.service is not None
        before = self.service.worker_pids()
        user = self.config.users - 1  # not the scenarios' uploader
        rows_before = self._media_rows(user)
        with (
            closing(sign_in(self.url, user)) as client,
            closing(sign_in(self.url, self.config.users)) as other,
        ):
            report = run_bad_inputs(
                client,
                ensure_corpus() / "bad",
                other=other,
                photo=self.photos[0].read_bytes(),
                probe=self._stored,
            )
        report.rows_written = self._media_rows(user) - rows_before
        report.workers_before = before
        report.workers_after = self.service.worker_pids()
        return report

    def _stored(self) -> int:
        """Media rows of every user plus stored files: what a refused upload must not change."""
        with connect(self.settings, self.postgres.url) as conn:
            row = conn.execute("SELECT count(*) FROM media_files").fetchone()
        files = sum(1 for p in self.settings.media_dir.rglob("*") if p.is_file())
        return (int(row[0]) if row else 0) + files

    def _media_rows(self, user: int) -> int:
        with connect(self.settings, self.postgres.url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM media_files m JOIN users u ON u.id = m.user_id WHERE u.email = %s",
                (seeded_email(user),),
            ).fetchone()
        return int(row[0]) if row else 0


# scenario -> {figure name under `reliability.`: key of the scenario's figures}
_FIGURES: dict[str, dict[str, str]] = {
    "redis_stop": {
        "redis_stop_5xx": "server_errors",
        "redis_stop_failed": "failed",
        "redis_stop_p95_ms": "p95_ms",
        "redis_recovery_s": "recovery_s",
    },
    "pg_restart": {
        "pg_restart_failed": "failed",
        "pg_restart_fail_ratio": "fail_ratio",
        "pg_restart_recovered": "recovered",
    },
    "slow_redis": {
        "slow_redis_failed": "failed",
        "slow_redis_p95_ms": "p95_ms",
        "slow_redis_max_ms": "max_ms",
    },
    "worker_kill": {
        "worker_kill_failed": "failed_after_kill",
        "worker_kill_served": "served_after_kill",
        "worker_respawned_s": "respawned_after_s",
    },
    "api_restart": {"api_restart_down_s": "down_s", "api_restart_failed_after": "failed_after_start"},
}


def summarize(
    results: list[ScenarioResult], durability: Durability | None, bad: BadInputReport | None
) -> dict[str, Any]:
    """The `reliability.*` figures of a run (what the notebook records and slo.toml gates)."""
    out: dict[str, Any] = {}
    for r in results:
        for figure, key in _FIGURES.get(r.name, {}).items():
            value = r.figures[key]
            out[f"reliability.{figure}"] = int(value) if isinstance(value, bool) else value
    out["reliability.faults_injected"] = len(results)
    out["reliability.faults_survived"] = sum(1 for r in results if r.figures.get("survived"))
    out["reliability.requests"] = sum(r.figures["requests"] for r in results)
    out["reliability.requests_failed"] = sum(r.figures["failed"] for r in results)
    if durability is not None:
        out["reliability.writes_acknowledged"] = durability.acknowledged
        out["reliability.writes_lost"] = durability.writes_lost
        out["reliability.writes_not_served"] = durability.acknowledged - durability.served_by_api
    if bad is not None:
        out |= {
            "reliability.bad_inputs_tried": bad.tried,
            "reliability.bad_inputs_5xx": bad.server_errors,
            "reliability.bad_inputs_wrong": len(bad.failed),
            "reliability.bad_inputs_refused_writes": bad.refused_writes,
            "reliability.bad_inputs_workers_lost": len(set(bad.workers_before) - set(bad.workers_after)),
        }
    return out
