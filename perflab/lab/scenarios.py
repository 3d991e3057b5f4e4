"""The fault lab's scenarios: each one a function of the `FaultLab` environment, in one table.

A scenario runs traffic, injects its fault through `lab.run`, and turns the records into figures,
`survived` among them. `SCENARIOS` lists each with the `reliability.*` figures it feeds (what notebook
06 records and notebooks/slo.toml gates); `summarize` reads that table.

- `redis_stop`: Redis stopped, then started again. Searches must keep answering from PostgreSQL
  (zero 5xx), stay fast, and the search-cache hit rate must come back soon after the restart.
- `pg_restart`: PostgreSQL restarted (fast shutdown). A few requests may fail; the pools must
  reconnect by themselves.
- `slow_redis`: `CLIENT PAUSE` (Redis accepts connections but answers nothing): every cache call is
  bounded by the socket timeout, and the circuit breaker stops paying even that.
- `worker_kill`: one uvicorn worker SIGKILLed: the others keep serving, uvicorn starts a new one.
- `api_restart`: the whole service stopped and started again.
- `master_kill` (on the lab's cluster, after `lab.use_cluster()`): one master SIGKILLed under load. Users
  whose keys live on the other masters keep their hit rate and see no failure; users on the dead
  shard lose their cache (and their sessions answer 503) until the replica takes over.
- `master_pause` (cluster): one master SIGSTOPped, shorter than the failover timeout: users on the
  healthy shards are unaffected.

The cluster scenarios judge a share of a hit rate, so they first warm the very users they measure
(`warm_s` of the same traffic, not counted) and refuse a baseline that is too thin or still cold: the
share is then None with the reason beside it, and the gate fails rather than passes on nothing.

Every bound a scenario's `survived` uses is read from notebooks/slo.toml (`_passes`), where the
report's gates on the same figures live: one place for each number.
"""

from __future__ import annotations

import os
import queue
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from perflab.cache import CacheManager, Invalidator, ShardedCluster, make_redis, user_tag
from perflab.errors import ConfigError
from perflab.lab import slo
from perflab.lab.badinput import BadInputReport
from perflab.lab.faults import Durability, FaultLab, ScenarioResult
from perflab.lab.traffic import SEARCH, UPLOAD, RequestRecord, hit_rate, percentile_ms, recovery_time, window
from perflab.servers.redis_cluster import EmbeddedCluster

# A hit-rate share needs a baseline worth dividing by: this many answered searches of the healthy
# users before the fault, at a hit rate clearly above zero (a cold cache would make any share 1.0).
MIN_BASELINE_SEARCHES = 20
MIN_BASELINE_HIT_RATE = 0.05
CLUSTER_WARM_S = 4.0  # the cluster scenarios' uncounted warm-up of the users they measure


def _passes(figures: dict[str, Any]) -> bool:
    """Every objective notebooks/slo.toml sets on these `reliability.<name>` figures holds. None (no
    value) never holds; a figure slo.toml does not gate is a ConfigError, not a silent pass."""
    named = {f"reliability.{k}": v for k, v in figures.items()}
    objectives = [o for o in slo.load() if o.figure in named]
    ungated = sorted(set(named) - {o.figure for o in objectives})
    if ungated:
        raise ConfigError(f"notebooks/slo.toml sets no objective on {', '.join(ungated)}")
    return all(v.passed for v in slo.evaluate(objectives, named))


def redis_stop(
    lab: FaultLab, *, before_s: float = 4, down_s: float = 4, after_s: float = 10
) -> ScenarioResult:
    def inject(mark: Callable[[str], None]) -> None:
        mark("redis stopping")
        lab.redis.stop()
        mark("redis stopped")
        time.sleep(down_s)
        mark("redis starting")
        lab.redis.start()
        mark("redis started")

    r = lab.run("redis_stop", before_s, inject, after_s)
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
        "recovery_s": recovery_time(r.records, started, lab.config.recovered_share * baseline),
        "recovery_target": round(lab.config.recovered_share * baseline, 4),
    }
    f = r.figures
    f["survived"] = f["failed"] == 0 and _passes(
        {"redis_stop_p95_ms": f["p95_ms"], "redis_recovery_s": f["recovery_s"]}
    )
    return r


def pg_restart(lab: FaultLab, *, before_s: float = 4, after_s: float = 8) -> ScenarioResult:
    def inject(mark: Callable[[str], None]) -> None:
        mark("postgres stopping")
        lab.postgres.stop("fast")
        mark("postgres stopped")
        lab.postgres.start()
        mark("postgres started")

    r = lab.run("pg_restart", before_s, inject, after_s)
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
    r.figures["survived"] = r.figures["recovered"] and _passes(
        {"pg_restart_fail_ratio": r.figures["fail_ratio"]}
    )
    return r


def slow_redis(
    lab: FaultLab, *, before_s: float = 3, pause_s: float = 3, after_s: float = 4
) -> ScenarioResult:
    def inject(mark: Callable[[str], None]) -> None:
        admin = redis.Redis.from_url(lab.redis.url)
        try:
            mark("redis paused")
            admin.execute_command("CLIENT", "PAUSE", int(pause_s * 1000), "ALL")
            time.sleep(pause_s)
            mark("redis resumed")
        finally:
            admin.close()

    r = lab.run("slow_redis", before_s, inject, after_s)
    paused, resumed = r.events["redis paused"], r.events["redis resumed"]
    during = window(r.records, paused, resumed)
    searches = [x for x in during if x.kind == SEARCH]
    r.figures |= {
        "socket_timeout_ms": lab.settings.redis_socket_timeout * 1000,
        "p50_ms": percentile_ms(searches, 50),
        "p95_ms": percentile_ms(searches, 95),
        "max_ms": max((x.latency_ms for x in searches), default=0.0),
        "baseline_p95_ms": percentile_ms(window(r.records, r.start, paused, SEARCH), 95),
        "after_hit_rate": hit_rate(window(r.records, resumed + 1, r.end)),
    }
    # Bounded: no request waits on Redis longer than a few socket timeouts before the breaker opens.
    r.figures["timeouts_paid_max"] = round(r.figures["max_ms"] / r.figures["socket_timeout_ms"], 2)
    r.figures["survived"] = r.figures["failed"] == 0 and _passes({"slow_redis_max_ms": r.figures["max_ms"]})
    return r


def worker_kill(
    lab: FaultLab, *, before_s: float = 3, after_s: float = 3, replace_timeout_s: float = 20
) -> ScenarioResult:
    """SIGKILL one worker; traffic goes on until uvicorn has spawned its replacement, then `after_s` more."""
    assert lab.service is not None
    svc = lab.service
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

    r = lab.run("worker_kill", before_s, inject, after_s)
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
    in_flight = lab.config.traffic.search_threads + 1
    f["survived"] = (
        f["replaced"]
        and f["served_after_kill"] > 0
        and f["failed_after_kill"] <= in_flight
        and f["server_errors"] == 0
    )
    return r


def api_restart(lab: FaultLab, *, before_s: float = 3, after_s: float = 6) -> ScenarioResult:
    assert lab.service is not None
    port = lab.service.port

    def inject(mark: Callable[[str], None]) -> None:
        assert lab.service is not None
        mark("api stopping")
        lab.service.stop()
        mark("api stopped")
        lab.start_service(port)
        mark("api started")

    r = lab.run("api_restart", before_s, inject, after_s)
    r.figures |= {
        "down_s": round(r.events["api started"] - r.events["api stopping"], 3),
        "failed_after_start": sum(1 for x in window(r.records, r.events["api started"], r.end) if x.failed),
    }
    r.figures["survived"] = r.figures["failed_after_start"] == 0
    return r


# -- cluster scenarios ----------------------------------------------------------------------------------


def _shards(lab: FaultLab) -> tuple[ShardedCluster, dict[int, int]]:
    """A cluster client, and {seeded user number: port of the master holding that user's cache}."""
    assert lab.cluster is not None, "call lab.use_cluster() first"
    client = make_redis(lab.settings, lab.cluster.url)
    assert isinstance(client, ShardedCluster)
    where = {}
    for user, user_id in lab.user_ids().items():
        slot = client.keyslot(f"{lab.settings.key_prefix}:{user_tag(user_id)}:search:gen")
        where[user] = client.nodes_manager.get_node_from_slot(slot).port
    return client, where


def _victim(lab: FaultLab, where: dict[int, int]) -> int:
    """The master of the most searchers that still leaves some searchers on other masters; when every
    searcher shares one master, another master (so the healthy-shard figures always exist)."""
    assert lab.cluster is not None
    cfg = lab.config.traffic
    searchers = {1 + i % (cfg.users - 1) for i in range(cfg.search_threads)}  # as Traffic assigns them
    counts: dict[int, int] = {}
    for u in searchers:
        counts[where[u]] = counts.get(where[u], 0) + 1
    split = [p for p, n in counts.items() if n < len(searchers)]
    if split:
        return max(split, key=lambda p: counts[p])
    return next(p for p in lab.cluster.master_ports() if p not in counts)


class _Listener:
    """The lab's own invalidation subscriber on the service's channel: what a worker would hear."""

    def __init__(self, lab: FaultLab, client: ShardedCluster) -> None:
        self.heard: queue.Queue[float] = queue.Queue()
        self.resets = 0
        manager = CacheManager(client, prefix=lab.settings.key_prefix, default_ttl=60)
        self.sub = Invalidator(manager).subscribe(
            lambda _user: self.heard.put(lab.clock()), on_reset=self._reset
        )
        self.sub.ready.wait(10)

    def _reset(self) -> None:
        self.resets += 1

    def times(self) -> list[float]:
        out = []
        while not self.heard.empty():
            out.append(self.heard.get())
        return out


def _pid(cluster: EmbeddedCluster, port: int) -> int:
    pid = cluster.node(port).pid()
    if pid is None:
        raise RuntimeError(f"cluster node :{port} is not running")
    return pid


def _by_shard(
    records: list[RequestRecord], where: dict[int, int], victim: int
) -> tuple[list[RequestRecord], list[RequestRecord]]:
    """(searches of users on healthy masters, searches of users on the victim's shard)."""
    healthy = [r for r in records if r.kind == SEARCH and where.get(r.user) != victim]
    failed = [r for r in records if r.kind == SEARCH and where.get(r.user) == victim]
    return healthy, failed


@dataclass(frozen=True)
class HitShare:
    """The healthy users' hit rate during a fault as a share of theirs before it, or why there is none."""

    share: float | None
    before: float | None
    during: float | None
    baseline_searches: int
    why: str = ""  # empty when the share was computed

    def figures(self) -> dict[str, Any]:
        return {
            "healthy_hit_rate_before": self.before,
            "healthy_hit_rate_during": self.during,
            "healthy_hit_share": self.share,
            "healthy_baseline_searches": self.baseline_searches,
            "healthy_hit_share_why": self.why,
        }


def hit_share(before: list[RequestRecord], during: list[RequestRecord]) -> HitShare:
    """during / before of the hit rate, from a baseline of at least MIN_BASELINE_SEARCHES answered
    searches at a hit rate of at least MIN_BASELINE_HIT_RATE; otherwise no share, and the reason."""
    n = sum(1 for x in before if x.kind == SEARCH and x.cache_hit is not None)
    b, d = hit_rate(before), hit_rate(during)
    why = ""
    if n < MIN_BASELINE_SEARCHES:
        why = f"no baseline: {n} answered healthy searches before the fault (need {MIN_BASELINE_SEARCHES})"
    elif b is None or b < MIN_BASELINE_HIT_RATE:
        why = f"no baseline: healthy hit rate before the fault {b or 0:.3f} < {MIN_BASELINE_HIT_RATE} (caches cold)"
    elif d is None:
        why = "no answered healthy search during the fault"
    share = None if why or b is None or d is None else round(d / b, 4)
    return HitShare(share, b, d, n, why)


def master_kill(
    lab: FaultLab,
    *,
    before_s: float = 4,
    after_s: float = 10,
    failover_timeout_s: float = 30,
    warm_s: float = CLUSTER_WARM_S,
) -> ScenarioResult:
    """SIGKILL one master under load; wait for its replica to take over; restart it (it rejoins as a replica)."""
    assert lab.cluster is not None
    cluster = lab.cluster
    client, where = _shards(lab)
    victim = _victim(lab, where)
    replica = cluster.replica_of(victim)
    listener = _Listener(lab, client)

    def inject(mark: Callable[[str], None]) -> None:
        pid = _pid(cluster, victim)
        mark("master killed")
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + failover_timeout_s
        while time.monotonic() < deadline:
            if replica in cluster.master_ports():
                mark("replica promoted")
                break
            time.sleep(0.05)
        cluster.node(victim).start()
        mark("old master restarted")

    try:
        r = lab.run("master_kill", before_s, inject, after_s, warm_s=warm_s)
        heard = listener.times()
        resets = listener.resets
    finally:
        listener.sub.close()
        client.close()
    killed = r.events["master killed"]
    promoted = r.events.get("replica promoted")
    healthy, failed_shard = _by_shard(r.records, where, victim)
    share = hit_share(window(healthy, r.start, killed), window(healthy, killed, r.end))
    uploads = [x for x in r.records if x.kind == UPLOAD and x.media_id]
    lost = max(0, len(uploads) - len([t for t in heard if t >= r.start]))
    r.figures |= {
        "victim_port": victim,
        "users_on_victim": sorted(u for u, p in where.items() if p == victim),
        "failover_s": round(promoted - killed, 3) if promoted is not None else None,
        **share.figures(),
        "failed_shard_hit_rate_before": hit_rate(window(failed_shard, r.start, killed)),
        "failed_shard_hit_rate_during": hit_rate(window(failed_shard, killed, r.end)),
        "healthy_failed": sum(1 for x in healthy if x.failed),
        "failed_shard_failed": sum(1 for x in failed_shard if x.failed),
        "healthy_p95_ms": percentile_ms(window(healthy, killed, r.end), 95),
        "uploads_acknowledged": len(uploads),
        "invalidations_heard": len(heard),
        "invalidations_lost": lost,
        "subscriber_resets": resets,
        # A lost invalidation is harmless only if the subscriber dropped its state (a reset).
        "unreset_losses": int(lost > 0 and resets == 0),
    }
    f = r.figures
    f["survived"] = (
        f["healthy_failed"] == 0
        and f["unreset_losses"] == 0
        and _passes(
            {"cluster_failover_s": f["failover_s"], "cluster_kill_healthy_hit_share": f["healthy_hit_share"]}
        )
    )
    return r


def master_pause(
    lab: FaultLab,
    *,
    before_s: float = 3,
    pause_s: float = 2,
    after_s: float = 3,
    warm_s: float = CLUSTER_WARM_S,
) -> ScenarioResult:
    """SIGSTOP one master for less than the failover timeout: healthy-shard users must not notice."""
    assert lab.cluster is not None
    cluster = lab.cluster
    client, where = _shards(lab)
    client.close()
    victim = _victim(lab, where)

    def inject(mark: Callable[[str], None]) -> None:
        pid = _pid(cluster, victim)
        mark("master paused")
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(pause_s)
        finally:
            os.kill(pid, signal.SIGCONT)
            mark("master resumed")

    r = lab.run("master_pause", before_s, inject, after_s, warm_s=warm_s)
    paused, resumed = r.events["master paused"], r.events["master resumed"]
    healthy, failed_shard = _by_shard(r.records, where, victim)
    share = hit_share(window(healthy, r.start, paused), window(healthy, paused, resumed))
    r.figures |= {
        "victim_port": victim,
        "healthy_failed": sum(1 for x in healthy if x.failed),
        **share.figures(),
        "healthy_p95_ms": percentile_ms(window(healthy, paused, resumed), 95),
        "baseline_p95_ms": percentile_ms(window(healthy, r.start, paused), 95),
        "paused_shard_p95_ms": percentile_ms(window(failed_shard, paused, resumed), 95),
        "paused_shard_failed": sum(1 for x in failed_shard if x.failed),
        "socket_timeout_ms": lab.settings.redis_socket_timeout * 1000,
    }
    f = r.figures
    f["survived"] = f["healthy_failed"] == 0 and _passes(
        {
            "cluster_pause_healthy_p95_ms": f["healthy_p95_ms"],
            "cluster_pause_healthy_hit_share": f["healthy_hit_share"],
        }
    )
    return r


# -- the table ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One fault: how to run it, and which of its figures become `reliability.<name>` figures."""

    run: Callable[..., ScenarioResult]
    figures: dict[str, str]  # figure name under `reliability.` -> key of the scenario's figures
    cluster: bool = False  # needs `lab.use_cluster()` first


SCENARIOS: dict[str, Scenario] = {
    "redis_stop": Scenario(redis_stop, {
        "redis_stop_5xx": "server_errors",
        "redis_stop_failed": "failed",
        "redis_stop_p95_ms": "p95_ms",
        "redis_recovery_s": "recovery_s",
    }),
    "pg_restart": Scenario(pg_restart, {
        "pg_restart_failed": "failed",
        "pg_restart_fail_ratio": "fail_ratio",
        "pg_restart_recovered": "recovered",
    }),
    "slow_redis": Scenario(slow_redis, {
        "slow_redis_failed": "failed",
        "slow_redis_p95_ms": "p95_ms",
        "slow_redis_max_ms": "max_ms",
    }),
    "worker_kill": Scenario(worker_kill, {
        "worker_kill_failed": "failed_after_kill",
        "worker_kill_served": "served_after_kill",
        "worker_respawned_s": "respawned_after_s",
    }),
    "api_restart": Scenario(api_restart, {
        "api_restart_down_s": "down_s",
        "api_restart_failed_after": "failed_after_start",
    }),
    "master_kill": Scenario(master_kill, {
        "cluster_kill_failed": "failed",
        "cluster_kill_5xx": "server_errors",
        "cluster_failover_s": "failover_s",
        "cluster_kill_healthy_failed": "healthy_failed",
        "cluster_kill_healthy_hit_share": "healthy_hit_share",
        "cluster_kill_healthy_hit_share_why": "healthy_hit_share_why",
        "cluster_kill_healthy_baseline_hit_rate": "healthy_hit_rate_before",
        "cluster_kill_healthy_baseline_searches": "healthy_baseline_searches",
        "cluster_kill_healthy_hit_rate": "healthy_hit_rate_during",
        "cluster_kill_failed_shard_hit_rate": "failed_shard_hit_rate_during",
        "cluster_kill_failed_shard_failed": "failed_shard_failed",
        "cluster_kill_invalidations_lost": "invalidations_lost",
        "cluster_kill_unreset_losses": "unreset_losses",
    }, cluster=True),
    "master_pause": Scenario(master_pause, {
        "cluster_pause_healthy_failed": "healthy_failed",
        "cluster_pause_healthy_p95_ms": "healthy_p95_ms",
        "cluster_pause_healthy_hit_share": "healthy_hit_share",
        "cluster_pause_healthy_hit_share_why": "healthy_hit_share_why",
        "cluster_pause_healthy_baseline_hit_rate": "healthy_hit_rate_before",
        "cluster_pause_healthy_baseline_searches": "healthy_baseline_searches",
        "cluster_pause_paused_shard_p95_ms": "paused_shard_p95_ms",
    }, cluster=True),
}  # fmt: skip


def run_scenario(lab: FaultLab, name: str, **params: Any) -> ScenarioResult:
    """Run scenario `name` of the table on `lab` (params: its before_s / after_s / ... keywords)."""
    return SCENARIOS[name].run(lab, **params)


def summarize(
    results: list[ScenarioResult], durability: Durability | None, bad: BadInputReport | None
) -> dict[str, Any]:
    """The `reliability.*` figures of a run (what the notebook records and slo.toml gates)."""
    out: dict[str, Any] = {}
    for r in results:
        scenario = SCENARIOS.get(r.name)
        for figure, key in (scenario.figures if scenario else {}).items():
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
