"""The lab's servers: embedded real Redis and PostgreSQL + pgvector, or staging's by URL."""

from perflab.net import free_port, port_open
from perflab.servers.postgres_server import PostgresServer
from perflab.servers.probe import ServerStatus, probe_postgres, probe_redis
from perflab.servers.redis_server import RedisServer
from perflab.servers.registry import Endpoints, embedded_servers, endpoints, shutdown

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
