"""Bulk load: binary COPY of users, media rows, embeddings and jobs, then the vector index, then ANALYZE.

As in pgvector-python's loading example: COPY ... WITH (FORMAT BINARY) with pgvector's binary dumper,
then CREATE INDEX with a large maintenance_work_mem. When the load at least doubles media_embeddings,
its HNSW index is dropped first and rebuilt once afterwards, because building the graph in one pass is
many times faster than inserting each row into it. Everything up to the rebuilt index is one
transaction: a failed load leaves the tables (and the index) as they were.

With `batch_rows` the load commits every batch instead (a bench's own schema at 1M rows): no
transaction lives longer than one batch of COPY, so a CREATE INDEX CONCURRENTLY elsewhere in the
database waits for a batch, not for the whole load. The index is built after the last batch, in its
own transaction (a snapshot held for the whole build: that is the one long wait left). A failed
batched load leaves the batches before it.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from tqdm import tqdm

from perflab.db._validate import as_unit_rows
from perflab.db.errors import InvalidInput
from perflab.db.indexes import IndexDef, build_indexes, drop_indexes, maintenance_work_mem_for, vector_indexes
from perflab.db.media import NewMedia
from perflab.db.pool import autocommit, idle


@dataclass(frozen=True)
class UserRow:
    id: uuid.UUID
    email: str | None
    display_name: str | None = None
    subscription_tier: str = "free"
    firebase_uid: str | None = None
    created_at: datetime | None = None
    last_login_at: datetime | None = None


@dataclass(frozen=True)
class MediaRow:
    """A media row to load: whose it is, and its columns (media.id must be set)."""

    user_id: uuid.UUID
    media: NewMedia


@dataclass(frozen=True)
class JobRow:
    media_file_id: uuid.UUID
    job_type: str
    status: str
    created_at: datetime
    completed_at: datetime | None = None
    error: str | None = None


@dataclass(frozen=True)
class BulkLoadResult:
    users: int
    media: int
    jobs: int
    copy_s: float
    index_s: float
    analyze_s: float
    rebuilt_indexes: list[str]
    maintenance_work_mem: str | None
    batches: int = 1  # transactions the rows went in (1 unless batch_rows)
    longest_batch_s: float = 0.0  # the longest of those transactions (batched loads), seconds


_USER_COLS = (
    "id",
    "firebase_uid",
    "email",
    "display_name",
    "subscription_tier",
    "created_at",
    "last_login_at",
)
_USER_TYPES = ("uuid", "text", "text", "text", "text", "timestamptz", "timestamptz")
_MEDIA_COLS = (
    "id", "user_id", "filename", "original_filename", "mime_type", "media_type", "file_size_bytes", "width",
    "height", "status", "caption", "tags", "storage_key", "dominant_colors", "blurhash", "uploaded_at",
    "processed_at", "derivatives",
)  # fmt: skip
_MEDIA_TYPES = (
    "uuid", "uuid", "text", "text", "text", "text", "int8", "int4", "int4", "text", "text", "text[]", "text",
    "jsonb", "text", "timestamptz", "timestamptz", "jsonb",
)  # fmt: skip
_EMB_COLS = (
    "media_file_id",
    "user_id",
    "media_type",
    "status",
    "uploaded_at",
    "embedding",
    "embedding_model",
)
_EMB_TYPES = ("uuid", "uuid", "text", "text", "timestamptz", "vector", "text")
_JOB_COLS = ("media_file_id", "job_type", "status", "error", "created_at", "completed_at")
_JOB_TYPES = ("uuid", "text", "text", "text", "timestamptz", "timestamptz")


def _copy(
    conn: psycopg.Connection[Any],
    table: str,
    cols: Sequence[str],
    types: Sequence[str],
    rows: Iterable[Sequence[Any]],
    bar: tqdm,
) -> None:
    stmt = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT BINARY)").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, cols))
    )
    bar.set_description(f"COPY {table}")
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        copy.set_types(list(types))
        count = 0
        for row in rows:
            copy.write_row(row)
            count += 1
            if count % 2048 == 0:
                bar.update(2048)
        bar.update(count % 2048)


def bulk_load(
    conn: psycopg.Connection[Any],
    *,
    users: Sequence[UserRow] = (),
    media: Sequence[MediaRow] = (),
    embeddings: np.ndarray | None = None,
    model_name: str = "",
    jobs: Sequence[JobRow] = (),
    rebuild_vector_index: bool | None = None,
    progress: bool | None = None,
    parallel_workers: int = 1,
    prepare: Callable[[psycopg.Connection[Any]], None] | None = None,
    batch_rows: int | None = None,
) -> BulkLoadResult:
    """Load everything in one transaction, then ANALYZE. `embeddings[i]` belongs to `media[i]`.

    rebuild_vector_index=None decides by size (rebuild when the load at least doubles the table);
    progress=None shows a bar when stderr is a terminal; `prepare(conn)` runs first in the load's
    transaction (seed.py deletes the rows it replaces there). `batch_rows` commits every that many
    media rows (with their embeddings), then builds the index (module docstring)."""
    if batch_rows is not None and (batch_rows < 1 or prepare is not None):
        raise InvalidInput("batch_rows must be positive, and a batched load takes no prepare step")
    if media and (embeddings is None or not model_name):
        raise InvalidInput("media rows need their embeddings and the model_name that made them")
    vectors = (
        as_unit_rows(embeddings, len(media))
        if media and embeddings is not None
        else np.zeros((0, 0), np.float32)
    )
    if any(m.media.id is None for m in media):
        raise InvalidInput("bulk-loaded media rows need their id set")
    for m in media:
        m.media.validate()
    if not idle(conn):
        raise InvalidInput("bulk_load needs a connection that is not inside a transaction")
    if batch_rows is not None:
        return _batched_load(conn, users, media, vectors, model_name, jobs, rebuild_vector_index,
                             progress, parallel_workers, batch_rows)  # fmt: skip
    now = datetime.now(UTC)
    show = sys.stderr.isatty() if progress is None else progress
    total = len(users) + 2 * len(media) + len(jobs)
    t0 = time.perf_counter()
    index_s = 0.0
    with (
        tqdm(total=total, disable=not show, unit="row", unit_scale=True, file=sys.stderr) as bar,
        conn.transaction(),
    ):
        if prepare is not None:
            prepare(conn)
        existing = conn.execute("SELECT count(*) FROM media_embeddings").fetchone()[0]  # type: ignore[index]
        rebuild = (
            rebuild_vector_index if rebuild_vector_index is not None else len(media) >= max(existing, 1000)
        )
        defs = vector_indexes(conn) if rebuild and media else []
        mwm = maintenance_work_mem_for(existing + len(media), vectors.shape[1]) if defs else None
        drop_indexes(conn, defs)
        _copy(conn, "users", _USER_COLS, _USER_TYPES, (_user_tuple(u, now) for u in users), bar)
        _copy(conn, "media_files", _MEDIA_COLS, _MEDIA_TYPES, (_media_tuple(m, now) for m in media), bar)
        _copy(
            conn,
            "media_embeddings",
            _EMB_COLS,
            _EMB_TYPES,
            _emb_tuples(media, vectors, model_name, now),
            bar,
        )
        _copy(
            conn,
            "processing_jobs",
            _JOB_COLS,
            _JOB_TYPES,
            _job_tuples(jobs),
            bar,
        )
        copy_s = time.perf_counter() - t0
        if defs:
            index_s = _rebuild(conn, defs, bar, mwm, parallel_workers)
    analyze_s = _vacuum_analyze(conn)
    return BulkLoadResult(
        users=len(users),
        media=len(media),
        jobs=len(jobs),
        copy_s=copy_s,
        index_s=index_s,
        analyze_s=analyze_s,
        rebuilt_indexes=[d.name for d in defs],
        maintenance_work_mem=mwm,
    )


def _batched_load(
    conn: psycopg.Connection[Any],
    users: Sequence[UserRow],
    media: Sequence[MediaRow],
    vectors: np.ndarray,
    model_name: str,
    jobs: Sequence[JobRow],
    rebuild_vector_index: bool | None,
    progress: bool | None,
    parallel_workers: int,
    batch_rows: int,
) -> BulkLoadResult:
    """bulk_load with a commit every `batch_rows` media rows, then the index in its own transaction."""
    now = datetime.now(UTC)
    show = sys.stderr.isatty() if progress is None else progress
    total = len(users) + 2 * len(media) + len(jobs)
    t0 = time.perf_counter()
    existing = conn.execute("SELECT count(*) FROM media_embeddings").fetchone()[0]  # type: ignore[index]
    rebuild = rebuild_vector_index if rebuild_vector_index is not None else len(media) >= max(existing, 1000)
    defs = vector_indexes(conn) if rebuild and media else []
    mwm = maintenance_work_mem_for(existing + len(media), vectors.shape[1]) if defs else None
    drop_indexes(conn, defs)
    longest, batches = 0.0, 0
    with tqdm(total=total, disable=not show, unit="row", unit_scale=True, file=sys.stderr) as bar:

        def committed(step: Callable[[], None]) -> None:
            nonlocal longest, batches
            t = time.perf_counter()
            with conn.transaction():
                step()
            longest, batches = max(longest, time.perf_counter() - t), batches + 1

        committed(
            lambda: _copy(conn, "users", _USER_COLS, _USER_TYPES, (_user_tuple(u, now) for u in users), bar)
        )
        for lo in range(0, len(media), batch_rows):
            part = media[lo : lo + batch_rows]
            vs = vectors[lo : lo + batch_rows]

            def step(part: Sequence[MediaRow] = part, vs: np.ndarray = vs) -> None:
                _copy(
                    conn, "media_files", _MEDIA_COLS, _MEDIA_TYPES, (_media_tuple(m, now) for m in part), bar
                )
                _copy(
                    conn,
                    "media_embeddings",
                    _EMB_COLS,
                    _EMB_TYPES,
                    _emb_tuples(part, vs, model_name, now),
                    bar,
                )

            committed(step)
        for lo in range(0, len(jobs), batch_rows):
            jpart = jobs[lo : lo + batch_rows]

            def jstep(jpart: Sequence[JobRow] = jpart) -> None:
                _copy(conn, "processing_jobs", _JOB_COLS, _JOB_TYPES, _job_tuples(jpart), bar)

            committed(jstep)
        copy_s = time.perf_counter() - t0
        index_s = 0.0
        if defs:
            index_s = _rebuild(conn, defs, bar, mwm, parallel_workers)
    analyze_s = _vacuum_analyze(conn)
    return BulkLoadResult(
        users=len(users), media=len(media), jobs=len(jobs), copy_s=copy_s, index_s=index_s,
        analyze_s=analyze_s, rebuilt_indexes=[d.name for d in defs],
        maintenance_work_mem=mwm, batches=batches, longest_batch_s=longest,
    )  # fmt: skip


def _rebuild(
    conn: psycopg.Connection[Any], defs: list[IndexDef], bar: Any, mwm: str | None, parallel_workers: int
) -> float:
    """Build the dropped indexes once, after the load (one sort instead of a million inserts)."""
    bar.set_description(f"CREATE INDEX {', '.join(d.name for d in defs)}")
    return build_indexes(conn, defs, maintenance_work_mem=mwm or "64MB", parallel_workers=parallel_workers)


def _vacuum_analyze(conn: psycopg.Connection[Any]) -> float:
    """VACUUM sets the visibility map too, so the bounded per-user count in vector.py is index-only."""
    t0 = time.perf_counter()
    with autocommit(conn):
        for table in ("users", "media_files", "media_embeddings", "processing_jobs"):
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(table)))
    return time.perf_counter() - t0


def _emb_tuples(
    media: Sequence[MediaRow], vectors: np.ndarray, model_name: str, now: datetime
) -> Iterable[tuple[Any, ...]]:
    for m, v in zip(media, vectors, strict=True):
        yield (
            m.media.id,
            m.user_id,
            m.media.media_type,
            m.media.status,
            m.media.uploaded_at or now,
            v,
            model_name,
        )


def _job_tuples(jobs: Sequence[JobRow]) -> Iterable[tuple[Any, ...]]:
    return ((j.media_file_id, j.job_type, j.status, j.error, j.created_at, j.completed_at) for j in jobs)


def _user_tuple(u: UserRow, now: datetime) -> tuple[Any, ...]:
    return (
        u.id,
        u.firebase_uid,
        u.email,
        u.display_name,
        u.subscription_tier,
        u.created_at or now,
        u.last_login_at,
    )


def _media_tuple(row: MediaRow, now: datetime) -> tuple[Any, ...]:
    m = row.media
    return (
        m.id,
        row.user_id,
        m.filename,
        m.original_filename,
        m.mime_type,
        m.media_type,
        m.file_size_bytes,
        m.width,
        m.height,
        m.status,
        m.caption,
        list(m.tags),
        m.storage_key,
        None if m.dominant_colors is None else Jsonb(m.dominant_colors),
        m.blurhash,
        m.uploaded_at or now,
        m.processed_at,
        Jsonb(list(m.derivatives)),
    )
