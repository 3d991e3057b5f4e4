"""Fixtures on the real servers: the shared embedded ones by default, staging's when the URLs are set.

Isolation is by name, never by mocks: the session gets its own PostgreSQL schema and each test its own
Redis key prefix; both are removed afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from redis.cluster import ClusterNode

from perflab.config import Settings, is_cluster_url, parse_cluster_url
from perflab.db import connect, drop_schema, migrate
from perflab.lab.harness import ServiceProcess, seed_schema
from perflab.net import free_port
from perflab.servers import Endpoints, RedisServer, endpoints

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

_RUN = uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    """Settings for this test session: its own schema, its own key prefix."""
    return Settings.from_env().replace(db_schema=f"test_{_RUN}", key_prefix=f"t{_RUN}")


@pytest.fixture(scope="session")
def servers(base_settings: Settings) -> Endpoints:
    return endpoints(base_settings)


@pytest.fixture()
def settings(base_settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """Per-test settings: a key prefix no other test shares."""
    return base_settings.replace(key_prefix=f"t{_RUN}x{uuid.uuid4().hex[:8]}")


# -- Redis: a single server, or the embedded cluster --------------------------------------------------
# A test module marked `pytestmark = pytest.mark.both_redis` runs each test that uses Redis (through
# `redis_url`, `redis_client` or `cache_manager`) twice: on the single server and on the embedded
# 3-master cluster. Elsewhere those fixtures are the single server only.
REDIS_KINDS = ("single", "cluster")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "both_redis: run this module's Redis tests on a single server and a cluster"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "redis_kind" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_redis"):
        metafunc.parametrize("redis_kind", REDIS_KINDS, indirect=True)


@pytest.fixture()
def redis_kind(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "single"))


@pytest.fixture(scope="session")
def cluster_servers(base_settings: Settings) -> Endpoints:
    """The embedded cluster (3 masters + 3 replicas), started on first use and shared like the server."""
    return endpoints(base_settings.replace(redis_cluster=True))


@pytest.fixture()
def redis_url(redis_kind: str, servers: Endpoints, request: pytest.FixtureRequest) -> str:
    if redis_kind == "cluster":
        return str(request.getfixturevalue("cluster_servers").redis_url)
    return servers.redis_url


def raw_redis(url: str) -> redis.Redis | redis.RedisCluster:
    """A plain redis-py client (no perflab guard) on a server or a cluster URL, for inspection."""
    if is_cluster_url(url):
        nodes = [ClusterNode(h, p) for h, p in parse_cluster_url(url).nodes]
        return redis.RedisCluster(startup_nodes=nodes)
    return redis.Redis.from_url(url)


@pytest.fixture()
def redis_client(settings: Settings, redis_url: str) -> Iterator[redis.Redis | redis.RedisCluster]:
    client = raw_redis(redis_url)
    yield client
    for key in client.scan_iter(match=f"{settings.key_prefix}:*", count=1000):
        client.unlink(key)
    client.close()


@pytest.fixture(scope="session")
def db_conn(base_settings: Settings, servers: Endpoints) -> Iterator[psycopg.Connection]:
    """A migrated, autocommit connection on this session's schema; the schema is dropped at the end."""
    conn = connect(base_settings, servers.database_url)
    migrate(conn, base_settings)
    yield conn
    drop_schema(conn, base_settings.db_schema)
    conn.close()


@pytest.fixture()
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, to stop and restart without touching anyone else's."""
    server = RedisServer(tmp_path / "redis", free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture()
def cache_manager(settings: Settings, redis_url: str, redis_client: object) -> Iterator[object]:
    """A perflab.cache CacheManager on the shared Redis (or cluster) under this test's key prefix (cleaned up after)."""
    from perflab.cache import CacheManager, make_redis

    client = make_redis(settings, redis_url)
    yield CacheManager(client, prefix=settings.key_prefix, default_ttl=60)
    client.close()


@pytest.fixture(scope="session")
def db_pool(base_settings: Settings, servers: Endpoints, db_conn: psycopg.Connection) -> Iterator[object]:
    """A perflab.db pool (psycopg_pool) on this session's migrated schema."""
    from perflab.db import make_pool

    with make_pool(base_settings, servers.database_url, min_size=1, max_size=4, open=True) as pool:
        yield pool


@pytest.fixture(scope="session")
def image_corpus() -> Path:
    """data/ with photos/ and bad/, built on first use from packaged sample images (see data/README.md)."""
    from perflab.lab.corpus import ensure_corpus

    return ensure_corpus()


@pytest.fixture(scope="session")
def svc_settings(base_settings: Settings, servers: Endpoints) -> Iterator[Settings]:
    """A schema of its own with a small seeded library (users user1..user4@example.com)."""
    from perflab.embed import HashingEmbedder

    s = base_settings.replace(
        db_schema=base_settings.db_schema + "_svc", key_prefix=base_settings.key_prefix + "svc"
    )
    seed_schema(s, media=400, users=4, seed=7, embedder=HashingEmbedder(s.embedding_dim))
    yield s
    with connect(s, servers.database_url) as conn:
        drop_schema(conn, s.db_schema)


@pytest.fixture(scope="session")
def service(svc_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """`perflab serve` (one worker) on the seeded schema, for the whole session."""
    media = tmp_path_factory.mktemp("media")
    on = svc_settings.replace(embedder="hashing", media_root=media)
    with ServiceProcess(on, workers=1, log=media / "serve.log") as svc:
        yield svc


@pytest.fixture(scope="session")
def cluster_service(
    svc_settings: Settings, cluster_servers: Endpoints, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """`perflab serve` (two workers) on the seeded schema with the embedded cluster as its Redis."""
    media = tmp_path_factory.mktemp("media-cluster")
    on = svc_settings.replace(embedder="hashing", media_root=media, redis_cluster=True)
    with ServiceProcess(on, workers=2, log=media / "serve.log") as svc:
        yield svc
