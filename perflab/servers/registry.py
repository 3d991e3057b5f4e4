"""Find or start the lab's servers, once, for every process that asks.

Embedded mode keeps a small JSON file under `home` recording each server's port; a file lock makes
"start if not running" atomic across processes, so tests, notebooks, API workers and Locust workers
started together all end up on the same two servers. With `redis_cluster` set (PERFLAB_REDIS_CLUSTER=1
or `perflab up --redis-cluster`) the Redis is the embedded cluster instead, under `home/redis-cluster`,
started and shared the same way; `perflab down` stops whichever is running.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from perflab.config import Settings
from perflab.net import free_port
from perflab.servers.postgres_server import PostgresServer
from perflab.servers.redis_cluster import EmbeddedCluster
from perflab.servers.redis_server import RedisServer

_STATE = "services.json"


@dataclass(frozen=True)
class Endpoints:
    """Where the lab's servers are."""

    redis_url: str
    database_url: str
    embedded: bool


def _lock(home: Path) -> FileLock:

    home.mkdir(parents=True, exist_ok=True)
    return FileLock(str(home / "services.lock"), timeout=180)


def _read_state(home: Path) -> dict[str, int]:
    try:
        data = json.loads((home / _STATE).read_text())
    except (OSError, ValueError):
        return {}
    return {k: int(v) for k, v in data.items() if isinstance(v, int)}


def _servers(home: Path, state: dict[str, int]) -> tuple[RedisServer, PostgresServer]:
    return (
        RedisServer(home / "redis", state.get("redis_port", 0)),
        PostgresServer(home / "postgres", state.get("postgres_port", 0)),
    )


def embedded_cluster(settings: Settings) -> EmbeddedCluster:
    """The embedded cluster's object (running or not), for status and fault-injection."""
    return EmbeddedCluster(settings.home / "redis-cluster")


def endpoints(settings: Settings, *, start: bool = True) -> Endpoints:
    """The servers to use: staging's URLs when set, else the shared embedded ones (started if needed)."""
    if not settings.embedded:
        assert settings.redis_url is not None and settings.database_url is not None
        return Endpoints(settings.redis_url, settings.database_url, embedded=False)
    home = settings.home
    state = _read_state(home)
    redis, pg = _servers(home, state)
    cluster = embedded_cluster(settings) if settings.redis_cluster else None
    redis_ok = cluster.is_running() if cluster else redis.is_ready()
    if (state and redis_ok and pg.is_running()) or not start:
        return Endpoints(cluster.url if cluster else redis.url, pg.url, embedded=True)
    with _lock(home):
        state = _read_state(home)
        redis, pg = _servers(home, state)
        if cluster is not None:
            cluster = embedded_cluster(settings)  # re-read under the lock: another process may have made it
            cluster.start()
        elif not redis.is_running():
            redis.port = free_port(redis.port or None)
            redis.start()
        else:
            redis.wait_ready()  # up, but still loading its append-only file
        if not pg.is_running():
            pg.port = free_port(pg.port or None)
            pg.start()
        state.update(postgres_port=pg.port, **({"redis_port": redis.port} if redis.port else {}))
        (home / _STATE).write_text(json.dumps(state))
    return Endpoints(cluster.url if cluster else redis.url, pg.url, embedded=True)


def shutdown(settings: Settings) -> list[str]:
    """Stop the embedded servers (never staging's). Returns what was stopped."""
    if not settings.embedded:
        return []
    stopped = []
    with _lock(settings.home):
        redis, pg = _servers(settings.home, _read_state(settings.home))
        if redis.port and redis.pid() is not None:
            redis.stop()
            stopped.append("redis")
        if pg.port and pg.pid() is not None:
            pg.stop()
            stopped.append("postgres")
        if embedded_cluster(settings).stop():
            stopped.append("redis cluster")
    return stopped


def embedded_servers(settings: Settings) -> tuple[RedisServer, PostgresServer]:
    """The embedded server objects themselves, for fault-injection (stop/restart) in the lab."""
    return _servers(settings.home, _read_state(settings.home))
