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

from perflab.config import Settings
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


@pytest.fixture()
def redis_client(settings: Settings, servers: Endpoints) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(servers.redis_url)
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
def cache_manager(settings: Settings, servers: Endpoints, redis_client: redis.Redis) -> Iterator[object]:
    """A perflab.cache CacheManager on the shared Redis under this test's key prefix (cleaned up after)."""
    from perflab.cache import CacheManager, make_redis

    client = make_redis(settings, servers.redis_url)
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
