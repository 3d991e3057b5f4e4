"""Reach a server and report what it is; turn a failure into one clear line."""

from __future__ import annotations

from dataclasses import dataclass

from perflab.config import is_cluster_url, redact_url
from perflab.errors import ServiceUnavailable


@dataclass(frozen=True)
class ServerStatus:
    name: str
    url: str  # password redacted
    version: str
    detail: dict[str, str]


def probe_redis(url: str, timeout: float = 2.0) -> ServerStatus:
    import redis

    if is_cluster_url(url):
        from perflab.servers.redis_cluster import probe_cluster

        return probe_cluster(url, timeout)

    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        info = client.info("server")
        client.close()
    except (redis.RedisError, OSError, ValueError) as exc:
        raise ServiceUnavailable(
            "Redis",
            redact_url(url),
            _short(exc),
            "check PERFLAB_REDIS_URL, or unset both URLs and run `perflab up`",
        ) from exc
    return ServerStatus(
        "redis", redact_url(url), str(info.get("redis_version")), {"mode": info.get("redis_mode", "")}
    )


def probe_postgres(url: str, timeout: float = 5.0) -> ServerStatus:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=max(1, int(timeout)), autocommit=True) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
            row = conn.execute(
                "SELECT (SELECT extversion FROM pg_extension WHERE extname = 'vector'),"
                " (SELECT default_version FROM pg_available_extensions WHERE name = 'vector')"
            ).fetchone()
    except (psycopg.Error, OSError) as exc:
        raise ServiceUnavailable(
            "PostgreSQL",
            redact_url(url),
            _short(exc),
            "check PERFLAB_DATABASE_URL, or unset both URLs and run `perflab up`",
        ) from exc
    installed, available = (str(v or "") for v in (row or (None, None)))
    return ServerStatus("postgres", redact_url(url), str(version), pgvector_detail(installed, available))


def pgvector_detail(installed: str, available: str) -> dict[str, str]:
    """pgvector in the database (an extension is per database): installed with its version, or only
    available on the server (a superuser must CREATE EXTENSION), or not on the server at all."""
    if installed:
        shown = installed
    elif available:
        shown = f"available {available}, not installed"
    else:
        shown = "not available"
    return {"pgvector": shown, "pgvector_installed": installed, "pgvector_available": available}


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__
