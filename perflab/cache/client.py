"""Build the one redis-py client a process uses: a blocking pool, the hiredis parser, bounded timeouts.

Every knob that bounds how long a cache call can take when Redis is dead or slow lives here: socket
and connect timeouts from settings, a bounded wait for a free pooled connection, and no client-side
retries (redis-py 6+ retries up to 10 times with backoff by default, which would turn one dead-server
call into seconds; the circuit breaker handles retrying instead).
"""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.utils import HIREDIS_AVAILABLE

from perflab.config import Settings, redact_url
from perflab.errors import ConfigError


def make_redis(settings: Settings, url: str) -> redis.Redis:
    """A client on a BlockingConnectionPool; it does no I/O until its first command."""
    options: dict[str, object] = {
        "max_connections": settings.redis_max_connections,
        # How long a caller waits for a free connection when all are busy (e.g. stuck on a slow server).
        "timeout": settings.redis_socket_timeout + settings.redis_connect_timeout,
        "socket_timeout": settings.redis_socket_timeout,
        "socket_connect_timeout": settings.redis_connect_timeout,
        "socket_keepalive": True,
        "retry": Retry(NoBackoff(), 0),
        "client_name": "perflab",
    }
    if HIREDIS_AVAILABLE:
        from redis._parsers import _HiredisParser

        options["parser_class"] = _HiredisParser
    try:
        pool = redis.BlockingConnectionPool.from_url(url, **options)
    except ValueError as exc:
        raise ConfigError(f"Redis URL {redact_url(url)}: {exc}") from exc
    return redis.Redis(connection_pool=pool)
