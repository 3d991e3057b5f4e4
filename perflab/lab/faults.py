"""The fault lab's environment: the search service under load on servers of its own, judged by counting.

`FaultLab` runs everything it breaks privately, so a fault never reaches the shared servers other
people use: a Redis (`RedisServer`, AOF on as in production) and a PostgreSQL (`PostgresServer`,
initdb in a temporary folder) of its own, a small seeded library (hashing embedder), and `perflab
serve` with several uvicorn workers pointed at them. `use_cluster()` moves the service onto a private
Redis Cluster (3 masters + 3 replicas) instead. `run` plays `Traffic` (signed-in users searching Zipf
queries, a trickle of photo uploads), injects one fault, lets the service recover, and returns every
request it sent with the fault's events on the same clock.

The faults themselves are the table in `perflab.lab.scenarios`. `durability()` then checks that every
upload acknowledged with a 201 in any scenario is in PostgreSQL and served by the API (`writes_lost`
must be 0).
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perflab.config import Settings
from perflab.db import connect, seeded_email
from perflab.db.media import count_media, count_user_media
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
)
from perflab.net import free_port
from perflab.servers import PostgresServer, RedisServer
from perflab.servers.redis_cluster import EmbeddedCluster

LAB_SCHEMA = "faultlab"
LAB_PREFIX = "faultlab"


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
    """`with FaultLab(settings, cfg) as lab: lab.scenario("redis_stop"); ...; lab.durability()`."""

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
        # Children, not daemons: they die with the run, and their CPU stays in the report's process tree
        # (a daemon leaves it, and the noise record counted the fault lab's servers as outsiders).
        self.redis = RedisServer(self.workdir / "redis", free_port(), daemonize=False)
        self.postgres = PostgresServer(self.workdir / "postgres", free_port(), daemonize=False)
        self.settings = settings  # replaced in start() by the lab's own
        self.cluster: EmbeddedCluster | None = None  # set by use_cluster()
        self.service: ServiceProcess | None = None
        self._user_ids: dict[int, str] = {}
        self.photos: list[Path] = []
        self.results: list[ScenarioResult] = []
        self._t0 = time.monotonic()

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
            session_secret=secrets.token_hex(32),
            cdn_signing_key=secrets.token_hex(32),
        )
        seed_schema(
            self.settings, media=cfg.media, users=cfg.users, seed=cfg.seed,
            embedder=HashingEmbedder(self.settings.embedding_dim),
        )  # fmt: skip
        ensure_corpus()
        self.photos = [p for p in photo_paths() if "_" not in p.stem]  # the small originals
        service = self.start_service()
        self.log(
            f"fault lab up in {time.perf_counter() - t:.1f}s: {cfg.media} media, {cfg.users} users, "
            f"{cfg.workers} workers at {service.url} (redis :{self.redis.port}, postgres :{self.postgres.port})"
        )
        self._warm_up()
        return self

    def _warm_up(self, min_s: float = 0.0) -> None:
        seconds = max(self.config.warmup_s, min_s)
        if seconds > 0:
            with Traffic(self.url, self._traffic(0), self.photos, clock=self.clock) as warm:
                time.sleep(seconds)
            self.log(f"warm-up: {len(warm.records)} requests, hit rate {hit_rate(warm.records) or 0:.2f}")

    def start_service(self, port: int | None = None) -> ServiceProcess:
        """(Re)start `perflab serve` on the lab's settings, on `port` if given."""
        self.service = ServiceProcess(
            self.settings, workers=self.config.workers, port=port, log=self.workdir / "serve.log"
        ).start()
        return self.service

    def use_cluster(self) -> FaultLab:
        """Move the service onto a private Redis Cluster (3 masters + 3 replicas), then warm up again."""
        t = time.perf_counter()
        self.cluster = EmbeddedCluster(self.workdir / "cluster", daemonize=False)
        self.cluster.start()
        self.settings = self.settings.replace(redis_url=self.cluster.url)
        assert self.service is not None
        self.service.stop()
        self.start_service()
        self.log(
            f"service moved to the cluster in {time.perf_counter() - t:.1f}s: {len(self.cluster.nodes)} nodes"
        )
        self._warm_up(min_s=3.0)  # the cluster starts empty: give the per-shard baselines some hits
        return self

    def user_ids(self) -> dict[int, str]:
        """{seeded user number: user id}, as the service's sign-in answers it."""
        if not self._user_ids:
            for user in range(1, self.config.users + 1):
                with closing(sign_in(self.url, user)) as client:
                    self._user_ids[user] = client.post(
                        "/sessions", json={"email": seeded_email(user)}
                    ).json()["user_id"]
        return self._user_ids

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
        for server in (self.redis, self.postgres, self.cluster):
            if server is None:
                continue
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
        self,
        name: str,
        before_s: float,
        inject: Callable[[Callable[[str], None]], None],
        after_s: float,
        *,
        warm_s: float = 0.0,
    ) -> ScenarioResult:
        """Traffic for `before_s`, then `inject(mark)` (which marks its events), then `after_s` more.

        With `warm_s`, the same traffic (same users, sessions and query streams) runs that long first,
        and its requests are not counted: the scenario starts on caches those very users have filled,
        so a baseline taken before the fault is a warm one.
        """
        events: dict[str, float] = {}

        def mark(event: str) -> None:
            events[event] = self.clock()

        traffic = Traffic(self.url, self._traffic(len(self.results) + 1), self.photos, clock=self.clock)
        with traffic:
            time.sleep(warm_s)
            start = self.clock()
            time.sleep(before_s)
            inject(mark)
            time.sleep(after_s)
        records = traffic.records
        counted = [x for x in records if x.t >= start]
        result = ScenarioResult(name, start, self.clock(), counted, events)
        result.figures = _counts(result.records)
        result.figures["warmup_requests"] = len(records) - len(counted)
        self.results.append(result)
        return result

    def scenario(self, name: str, **params: Any) -> ScenarioResult:
        """Run scenario `name` from the table in perflab.lab.scenarios."""
        from perflab.lab.scenarios import run_scenario

        return run_scenario(self, name, **params)

    # -- judgement ------------------------------------------------------------------------------
    def durability(self) -> Durability:
        """Every acknowledged upload of every scenario, looked up in PostgreSQL and through the API."""
        acked = [m for res in self.results for m in res.acknowledged]
        unacked = sum(1 for res in self.results for x in res.records if x.kind == UPLOAD and x.failed)
        with connect(self.settings, self.postgres.url) as conn:
            in_pg = count_media(conn, acked)
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
            rows = count_media(conn)
        files = sum(1 for p in self.settings.media_dir.rglob("*") if p.is_file())
        return rows + files

    def _media_rows(self, user: int) -> int:
        with connect(self.settings, self.postgres.url) as conn:
            return count_user_media(conn, seeded_email(user))
