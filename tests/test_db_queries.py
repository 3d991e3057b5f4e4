"""QueryOptimizer: user stats (cached 5 min through the cache layer), batch media load, prepared statements."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import psycopg
import pytest

from perflab.config import Settings
from perflab.db import InvalidInput, NewMedia, QueryOptimizer, UserStats, insert_media, make_pool
from perflab.db.queries import BATCH_LOAD_MEDIA, USER_WITH_STATS
from perflab.servers import Endpoints


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(384).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture()
def user_with_media(db_pool, db_conn: psycopg.Connection) -> tuple[uuid.UUID, list[uuid.UUID]]:
    uid = uuid.uuid4()
    db_conn.execute(
        "INSERT INTO users (id, email, display_name) VALUES (%s, %s, 'Ada')", (uid, f"{uid}@test.invalid")
    )
    ids = [
        insert_media(
            db_pool,
            uid,
            NewMedia(filename=f"{i}.jpg", file_size_bytes=1000 * (i + 1)),
            unit(i),
            model_name="t",
        )
        for i in range(3)
    ]
    db_conn.execute(
        "INSERT INTO processing_jobs (media_file_id, job_type, status) VALUES"
        " (%s, 'thumbnail', 'completed'), (%s, 'embedding', 'completed'), (%s, 'thumbnail', 'failed')",
        (ids[0], ids[0], ids[1]),
    )
    return uid, ids


def test_user_with_stats(db_pool, user_with_media) -> None:
    uid, _ = user_with_media
    stats = QueryOptimizer(db_pool).user_with_stats(str(uid))
    assert isinstance(stats, UserStats)
    assert (stats.id, stats.display_name, stats.total_files, stats.total_storage_bytes) == (
        uid,
        "Ada",
        3,
        6000,
    )
    assert QueryOptimizer(db_pool).user_with_stats(uuid.uuid4()) is None
    with pytest.raises(InvalidInput):
        QueryOptimizer(db_pool).user_with_stats("1 OR 1=1")


def test_user_stats_are_cached_through_the_cache_manager(db_pool, cache_manager, user_with_media) -> None:
    uid, _ = user_with_media
    qo = QueryOptimizer(db_pool, cache=cache_manager)
    first = qo.user_with_stats(uid)
    insert_media(db_pool, uid, NewMedia(filename="new.jpg", file_size_bytes=5), unit(9), model_name="t")
    second = qo.user_with_stats(uid)
    assert second == first and second.total_files == 3  # served from Redis for up to 5 minutes
    assert QueryOptimizer(db_pool).user_with_stats(uid).total_files == 4  # the database moved on


class _BrokenCache:
    """A cache whose backend is gone and that does not fail open by itself."""

    def get_or_set(self, key: str, factory: Callable[[], Any], ttl: int) -> Any:
        raise ConnectionError("cache backend unreachable")


class _CallsFactory:
    def get_or_set(self, key: str, factory: Callable[[], Any], ttl: int) -> Any:
        self.key, self.ttl = key, ttl
        return factory()


def test_a_failing_cache_falls_back_to_the_database(db_pool, user_with_media) -> None:
    uid, _ = user_with_media
    assert QueryOptimizer(db_pool, cache=_BrokenCache()).user_with_stats(uid).total_files == 3
    probe = _CallsFactory()
    assert QueryOptimizer(db_pool, cache=probe).user_with_stats(uid).total_files == 3
    assert probe.ttl == 300 and str(uid) in probe.key


def test_batch_load_media(db_pool, user_with_media) -> None:
    uid, ids = user_with_media
    qo = QueryOptimizer(db_pool)
    unknown = uuid.uuid4()
    got = qo.batch_load_media([ids[0], str(ids[1]), ids[0], unknown])
    assert set(got) == {ids[0], ids[1]}
    assert got[ids[0]].processed_jobs == ["embedding", "thumbnail"]
    assert got[ids[1]].processed_jobs == []  # failed jobs are not "processed"
    assert got[ids[0]].user_id == uid and got[ids[0]].embedding_model == "t" and got[ids[0]].embedding is None
    with_emb = qo.batch_load_media(ids, with_embeddings=True)
    np.testing.assert_allclose(with_emb[ids[2]].embedding, unit(2), atol=1e-6)
    assert qo.batch_load_media([]) == {}
    with pytest.raises(InvalidInput, match="at most"):
        qo.batch_load_media(uuid.uuid4() for _ in range(1001))
    with pytest.raises(InvalidInput, match="not a UUID"):
        qo.batch_load_media(["nope"])


def test_hot_queries_are_prepared_on_the_connection(
    base_settings: Settings, servers: Endpoints, db_conn, user_with_media
) -> None:
    uid, ids = user_with_media
    with make_pool(base_settings, servers.database_url, min_size=1, max_size=1, open=True) as pool:
        qo = QueryOptimizer(pool)
        qo.user_with_stats(uid)
        qo.batch_load_media(ids)
        with pool.connection() as conn:
            prepared = [r[0] for r in conn.execute("SELECT statement FROM pg_prepared_statements")]
    norm = [" ".join(s.split()) for s in prepared]
    assert any("FROM users u CROSS JOIN LATERAL" in s for s in norm), norm
    assert any("WHERE mf.id = ANY($1)" in s for s in norm), norm
    assert " ".join(USER_WITH_STATS.split()).replace("%s", "$1") in norm
    assert " ".join(BATCH_LOAD_MEDIA.split()).replace("%s", "$1") in norm


def test_server_versions_names_postgres_and_pgvector(db_pool) -> None:
    from perflab.db.versions import server_versions

    v = server_versions(db_pool)
    assert v.postgres[0].isdigit() and v.pgvector and v.pgvector_available


def test_pool_hands_out_the_connection_returned_last(base_settings, servers) -> None:
    """Serial requests stay on one warm backend instead of rotating through every idle connection."""
    with make_pool(base_settings, servers.database_url, min_size=3, max_size=3, open=True) as pool:
        pool.wait()
        with pool.connection() as a, pool.connection() as b:
            pids = (a.info.backend_pid, b.info.backend_pid)  # b goes back first, then a
        for _ in range(4):
            with pool.connection() as c:
                assert c.info.backend_pid == pids[0]
