"""`perflab up | down | status`."""

from __future__ import annotations

import argparse
import json

from perflab.config import Settings, is_cluster_url, redact_url
from perflab.errors import ConfigError
from perflab.servers.lifetime import leftovers
from perflab.servers.probe import probe_postgres, probe_redis
from perflab.servers.registry import endpoints, shutdown


def up(settings: Settings, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="perflab up")
    parser.add_argument(
        "--redis-cluster",
        action="store_true",
        help="start the embedded Redis Cluster (3 masters + 3 replicas) instead of one Redis; "
        "processes use it with PERFLAB_REDIS_CLUSTER=1",
    )
    args = parser.parse_args(argv)
    if args.redis_cluster:
        settings = settings.replace(redis_cluster=True)
    ep = endpoints(settings)
    where = f"embedded, under {settings.home}" if ep.embedded else "staging (PERFLAB_*_URL set)"
    print(f"redis     {redact_url(ep.redis_url)}\npostgres  {redact_url(ep.database_url)}\n({where})")
    return 0


def down(settings: Settings, argv: list[str]) -> int:
    argparse.ArgumentParser(prog="perflab down").parse_args(argv)
    if not settings.embedded:
        print("staging servers are not ours to stop; nothing done")
        return 0
    stopped = shutdown(settings)
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def status(settings: Settings, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="perflab status")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    ep = endpoints(settings, start=False)
    redis = probe_redis(ep.redis_url)
    pg = probe_postgres(ep.database_url)
    if redis.detail.get("mode") == "cluster" and not is_cluster_url(ep.redis_url):
        raise ConfigError(
            f"PERFLAB_REDIS_URL={redis.url} is a Redis Cluster node: name the cluster instead, "
            "PERFLAB_REDIS_URL=redis+cluster://host:port,host:port/"
        )
    left = leftovers()
    if args.json:
        print(json.dumps({
            "embedded": ep.embedded,
            "redis": {"url": redis.url, "version": redis.version, **_cluster_json(redis.detail)},
            "postgres": {"url": pg.url, "version": pg.version, **pg.detail},
            "leftovers": [{"kind": x.kind, "what": x.what, "detail": x.detail} for x in left],
        }))  # fmt: skip
    else:
        print(f"redis     {redis.url}  Redis {redis.version}")
        if "topology" in redis.detail:
            for line in redis.detail["topology"].splitlines():
                print(f"          {line}")
        print(f"postgres  {pg.url}  PostgreSQL {pg.version}, pgvector {pg.detail['pgvector']}")
        print("mode      " + ("embedded (perflab up/down)" if ep.embedded else "staging"))
        for x in left:  # issue 14.10: what earlier runs left behind
            print(f"left      {x.kind:<8} {x.what}  ({x.detail})")
    return 0


def _cluster_json(detail: dict[str, str]) -> dict[str, object]:
    if detail.get("mode") != "cluster" or "topology" not in detail:
        return {}
    return {
        "mode": "cluster",
        "masters": int(detail["masters"]),
        "replicas": int(detail["replicas"]),
        "topology": detail["topology"].splitlines(),
    }
