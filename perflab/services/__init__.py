"""The lab's servers: embedded real Redis and PostgreSQL + pgvector, or staging's by URL."""

from perflab.services.ports import free_port, port_open
from perflab.services.postgres_server import PostgresServer
from perflab.services.probe import ServerStatus, probe_postgres, probe_redis
from perflab.services.redis_server import RedisServer
from perflab.services.registry import Endpoints, embedded_servers, endpoints, shutdown

__all__ = [
    "Endpoints",
    "PostgresServer",
    "RedisServer",
    "ServerStatus",
    "embedded_servers",
    "endpoints",
    "free_port",
    "port_open",
    "probe_postgres",
    "probe_redis",
    "shutdown",
]
