"""`perflab up | down | status`."""

from __future__ import annotations

import argparse
import json

from perflab.config import Settings, redact_url
from perflab.servers.lifetime import leftovers
from perflab.servers.probe import probe_postgres, probe_redis
from perflab.servers.registry import endpoints, shutdown


def up(settings: Settings, argv: list[str]) -> int:
    argparse.ArgumentParser(prog="perflab up").parse_args(argv)
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
    left = leftovers()
    if args.json:
        print(json.dumps({
            "embedded": ep.embedded,
            "redis": {"url": redis.url, "version": redis.version},
            "postgres": {"url": pg.url, "version": pg.version, **pg.detail},
            "leftovers": [{"kind": x.kind, "what": x.what, "detail": x.detail} for x in left],
        }))  # fmt: skip
    else:
        print(f"redis     {redis.url}  Redis {redis.version}")
        print(f"postgres  {pg.url}  PostgreSQL {pg.version}, pgvector {pg.detail['pgvector']}")
        print("mode      " + ("embedded (perflab up/down)" if ep.embedded else "staging"))
        for x in left:  # issue 14.10: what earlier runs left behind
            print(f"left      {x.kind:<8} {x.what}  ({x.detail})")
    return 0
