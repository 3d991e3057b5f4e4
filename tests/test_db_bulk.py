"""Bulk load: binary COPY round trip, all-or-nothing, the vector index rebuilt around a large load."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest

from perflab.config import Settings
from perflab.db import (
    InvalidInput,
    JobRow,
    MediaRow,
    NewMedia,
    UserRow,
    VectorSearch,
    bulk_load,
    connect,
    drop_schema,
    migrate,
)
from perflab.db.indexes import BlockingProbe, vector_indexes
from perflab.servers import Endpoints

DIM = 16
T0 = datetime(2025, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)


@pytest.fixture()
def conn(servers: Endpoints, base_settings: Settings) -> Iterator[psycopg.Connection]:
    s = base_settings.replace(
        db_schema=f"{base_settings.db_schema}_bulk{uuid.uuid4().hex[:6]}", embedding_dim=DIM
    )
    with connect(s, servers.database_url) as c:
        migrate(c, s)
        yield c
        drop_schema(c, s.db_schema)


def rows(n: int, user: uuid.UUID, seed: int = 0) -> tuple[list[MediaRow], np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    media = [
        MediaRow(
            user,
            NewMedia(
                id=uuid.uuid4(),
                filename=f"ünïcode 📷 {i}.jpg",
                original_filename=None if i % 2 else f"orig {i}.JPG",
                caption=f"caption with 'quotes' and \\backslash {i}",
                media_type=("image", "video", "audio", "document")[i % 4],
                mime_type="image/jpeg",
                file_size_bytes=i * 1_000_003,
                width=None if i % 3 == 0 else 100 + i,
                height=None if i % 3 == 0 else 50 + i,
                status=("completed", "pending")[i % 2],
                tags=("a", "b c", "ü") if i % 2 else (),
                storage_key=f"k/{i}",
                dominant_colors={"colors": [{"hex": "#ffffff", "share": 0.5}]} if i % 2 else None,
                blurhash="LEHV6nWB2yk8pyo0adR*.7kCMdnj" if i % 2 else None,
                uploaded_at=T0 + timedelta(seconds=i),
                processed_at=None if i % 2 else T0 + timedelta(seconds=i, milliseconds=1),
            ),
        )
        for i in range(n)
    ]
    return media, vectors


def test_copy_round_trip(conn) -> None:
    user = UserRow(
        id=uuid.uuid4(), email="bulk@test.invalid", display_name="Zoë", firebase_uid="fb:1", created_at=T0
    )
    media, vectors = rows(50, user.id)
    jobs = [JobRow(media[0].media.id, "thumbnail", "completed", T0, T0 + timedelta(seconds=1))]
    result = bulk_load(
        conn, users=[user], media=media, embeddings=vectors, model_name="m", jobs=jobs, progress=False
    )
    assert (result.users, result.media, result.jobs) == (1, 50, 1)
    got = conn.execute(
        "SELECT id, firebase_uid, email, display_name, subscription_tier, created_at, last_login_at FROM users"
    ).fetchall()
    assert got == [(user.id, "fb:1", "bulk@test.invalid", "Zoë", "free", T0, None)]
    stored = {
        r[0]: r
        for r in conn.execute(
            "SELECT id, user_id, filename, original_filename, mime_type, media_type, file_size_bytes, width, height,"
            " status, caption, tags, storage_key, dominant_colors, blurhash, uploaded_at, processed_at FROM media_files"
        )
    }
    for m in media:
        x = m.media
        assert stored[x.id] == (
            x.id, m.user_id, x.filename, x.original_filename, x.mime_type, x.media_type, x.file_size_bytes,
            x.width, x.height, x.status, x.caption, list(x.tags), x.storage_key, x.dominant_colors, x.blurhash,
            x.uploaded_at, x.processed_at,
        )  # fmt: skip
    emb = {
        r[0]: r
        for r in conn.execute(
            "SELECT media_file_id, user_id, media_type, status, uploaded_at, embedding, embedding_model, is_primary"
            " FROM media_embeddings"
        )
    }
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    for m, v in zip(media, unit, strict=True):
        e = emb[m.media.id]
        assert e[1:5] == (m.user_id, m.media.media_type, m.media.status, m.media.uploaded_at)
        assert e[6:] == ("m", True)
        np.testing.assert_array_equal(e[5].to_numpy(), v.astype(np.float32))  # bit-exact float32
    assert conn.execute("SELECT job_type, status, completed_at FROM processing_jobs").fetchall() == [
        ("thumbnail", "completed", T0 + timedelta(seconds=1))
    ]


def test_a_failed_load_leaves_everything_as_it_was(conn) -> None:
    owner = UserRow(id=uuid.uuid4(), email="first@test.invalid")
    media, vectors = rows(1200, owner.id)
    bulk_load(conn, users=[owner], media=media, embeddings=vectors, model_name="m", progress=False)
    before = conn.execute("SELECT count(*) FROM media_files").fetchone()
    ghost_media, ghost_vectors = rows(3000, uuid.uuid4(), seed=1)  # their user does not exist: FK fails
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        bulk_load(conn, media=ghost_media, embeddings=ghost_vectors, model_name="m", progress=False)
    assert conn.execute("SELECT count(*) FROM media_files").fetchone() == before
    # the load would have dropped and rebuilt the HNSW index: it is still there, and still used
    assert [d.name for d in vector_indexes(conn)] == ["idx_media_embeddings_hnsw"]
    hits = VectorSearch(conn, exact_threshold=10).search(owner.id, vectors[5], k=1, filters=None)
    assert hits[0].media_id in {m.media.id for m in media}


def test_large_load_rebuilds_the_vector_index_small_one_does_not(conn) -> None:
    owner = UserRow(id=uuid.uuid4(), email="o@test.invalid")
    media, vectors = rows(1500, owner.id)
    first = bulk_load(conn, users=[owner], media=media, embeddings=vectors, model_name="m", progress=False)
    assert first.rebuilt_indexes == ["idx_media_embeddings_hnsw"] and first.maintenance_work_mem == "64MB"
    more, more_vectors = rows(200, owner.id, seed=2)
    second = bulk_load(conn, media=more, embeddings=more_vectors, model_name="m", progress=False)
    assert second.rebuilt_indexes == []
    definition = conn.execute(
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'idx_media_embeddings_hnsw' AND schemaname = current_schema()"
    ).fetchone()[0]
    # migration 0005: a halfvec expression index over the vector column
    assert "halfvec_cosine_ops" in definition and "ef_construction='128'" in definition
    assert conn.execute("SELECT count(*) FROM media_embeddings").fetchone() == (1700,)


def test_batched_load_commits_each_batch_then_builds_the_index(conn, servers, base_settings) -> None:
    """batch_rows: no transaction of the load holds a snapshot for long (a concurrent index build in
    another schema waits for one batch, not the load), and the index is built once after the rows."""
    owner = UserRow(id=uuid.uuid4(), email="b@test.invalid")
    media, vectors = rows(1300, owner.id)
    jobs = [JobRow(m.media.id, "thumbnail", "completed", T0) for m in media[:700]]
    result = bulk_load(
        conn, users=[owner], media=media, embeddings=vectors, model_name="m", jobs=jobs,
        progress=False, batch_rows=500, rebuild_vector_index=True,
    )  # fmt: skip
    assert result.batches == 1 + 3 + 2  # users, media in 3 batches of <= 500, jobs in 2
    assert result.rebuilt_indexes == ["idx_media_embeddings_hnsw"] and result.longest_batch_s > 0
    assert conn.execute("SELECT count(*) FROM media_embeddings").fetchone() == (1300,)
    assert conn.execute("SELECT count(*) FROM processing_jobs").fetchone() == (700,)
    hits = VectorSearch(conn, exact_threshold=10).search(owner.id, vectors[8], k=1, path="hnsw")
    assert hits[0].media_id == media[8].media.id  # completed (odd rows are pending)
    with pytest.raises(InvalidInput, match="batch_rows"):
        bulk_load(conn, media=media, embeddings=vectors, model_name="m", batch_rows=0)


def test_blocking_probe_sees_a_transaction_that_holds_a_snapshot(conn, servers, base_settings) -> None:
    """A concurrent index build waits for every older snapshot in the database: the probe's samples
    show it, so the bench can say how long its load held other work up."""
    schema = f"{base_settings.db_schema}_probe{uuid.uuid4().hex[:6]}"
    with (
        connect(base_settings, servers.database_url) as holder,
        connect(base_settings, servers.database_url) as pc,
    ):
        with BlockingProbe(pc, schema, interval_s=0.05) as probe:
            while not probe.waits:  # one sample before the snapshot
                time.sleep(0.02)
            with holder.transaction():
                holder.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                holder.execute("SELECT 1").fetchone()  # takes the snapshot, held until commit
                held = time.perf_counter()
                time.sleep(1.0)
            released = time.perf_counter() - held
            n = len(probe.waits)
            while len(probe.waits) < n + 1:
                time.sleep(0.02)
        summary = probe.summary()
    assert summary["samples"] >= 2
    assert summary["max_s"] >= 0.5 * released  # some build waited for the held snapshot


@pytest.mark.parametrize(
    ("embeddings", "message"),
    [
        (np.ones((2, DIM)), "shape"),
        (np.zeros((3, DIM)), "zero vector"),
        (np.full((3, DIM), np.inf), "NaN or infinite"),
        (None, "need their embeddings"),
    ],
)
def test_bad_input_is_refused_before_anything_is_sent(conn, embeddings, message: str) -> None:
    media, _ = rows(3, uuid.uuid4())
    with pytest.raises(InvalidInput, match=message):
        bulk_load(conn, media=media, embeddings=embeddings, model_name="m", progress=False)
