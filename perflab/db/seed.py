"""A reproducible synthetic media library: `perflab seed --media N --users U --seed S`.

Same arguments, same library: ids, captions, sizes and dates all come from one numpy Generator, and
dates count back from a fixed epoch rather than from now. Per-user library sizes follow a Pareto law
(a few users own tens of thousands of items, most a few hundred), users are `user1@example.com` ..
`userU@example.com` in decreasing library size, and captions are composed from vocabulary.py. The
captions are embedded with the configured embedder (each distinct caption once) and bulk loaded.

Seeded users are marked by `firebase_uid = 'seed:<fingerprint>:<n>'`; the fingerprint covers the
arguments and the embedder's model id, so a library embedded by one model is never taken for one
embedded by another (`perflab.embed.onnx`'s int8 and fp32 models have ids of their own). Seeding
again with the same arguments and embedder finds its fingerprint and does nothing; other arguments or
another model replace the previous seeded users (and, by cascade, their media) in the load's
transaction. Other users are never touched.

A seeded library is a bench fixture: it belongs to a schema of its own that nothing else writes to.
Every seeded item is dated before SEED_EPOCH; media in seeded users' libraries that are not (an upload
by a lab run into a bench schema), or more media than the library has, were not made by the seeder,
and seeding never deletes them silently: it raises `SeedConflict` unless `replace=True` says to.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
from tqdm import tqdm

from perflab.config import Settings
from perflab.db.bulk import BulkLoadResult, JobRow, MediaRow, UserRow, bulk_load
from perflab.db.errors import InvalidInput
from perflab.db.media import NewMedia
from perflab.db.pool import PoolOrConn, borrow
from perflab.db.vocabulary import caption_for
from perflab.embed.base import Embedder

SEED_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
PARETO_ALPHA = 1.16  # the "80/20" exponent
PARETO_MAX = 500.0  # largest / smallest weight
_MEDIA_KINDS = ("image", "video", "document", "audio")
_MEDIA_P = (0.82, 0.11, 0.05, 0.02)
_STATUS = ("completed", "processing", "pending", "failed")
_STATUS_P = (0.96, 0.015, 0.015, 0.01)
_FORMAT = {  # media_type -> (filename prefix, extension, mime, median bytes)
    "image": ("IMG", ".jpg", "image/jpeg", 2_500_000),
    "video": ("VID", ".mp4", "video/mp4", 45_000_000),
    "document": ("Scan", ".pdf", "application/pdf", 350_000),
    "audio": ("Voice", ".m4a", "audio/mp4", 4_000_000),
}
_SIZES = ((4032, 3024), (3024, 4032), (1920, 1080), (1080, 1920), (4000, 3000), (1200, 1200), (2048, 1536))


class SeedConflict(InvalidInput):
    """Seeding would delete media that the seeder did not make (another run wrote into the library)."""


def seeded_email(n: int) -> str:
    """The login of seeded user n (1-based; user1 has the largest library)."""
    return f"user{n}@example.com"


@dataclass(frozen=True)
class Library:
    """A generated library, not yet embedded or stored."""

    users: list[UserRow]
    media: list[MediaRow]
    jobs: list[JobRow]
    sizes: list[int]  # media per user, user1 first


@dataclass(frozen=True)
class SeedResult:
    seed: int
    users: int
    media: int
    model_name: str
    created: bool  # False: this exact library was already there
    sizes: list[int]
    embed_s: float
    load: BulkLoadResult | None
    elapsed_s: float

    @property
    def largest_user(self) -> tuple[str, int]:
        return seeded_email(1), self.sizes[0] if self.sizes else 0


def user_sizes(media: int, users: int, rng: np.random.Generator) -> list[int]:
    """Split `media` items over `users` with Pareto weights; largest first; sums to `media` exactly."""
    if users <= 0 or media < 0:
        raise InvalidInput("need at least one user and a non-negative media count")
    # Bounded Pareto on [1, PARETO_MAX] by inverse CDF, one draw per quantile stratum: heavy-tailed,
    # with a tail that does not swing from seed to seed, and no single user owning it all.
    u = (np.arange(users) + rng.uniform(size=users)) / users
    weights = np.sort((1 - u * (1 - PARETO_MAX**-PARETO_ALPHA)) ** (-1 / PARETO_ALPHA))[::-1]
    raw = weights / weights.sum() * media
    sizes = np.floor(raw).astype(np.int64)
    leftover = int(media - sizes.sum())
    sizes[np.argsort(-(raw - sizes), kind="stable")[:leftover]] += 1
    return sorted((int(s) for s in sizes), reverse=True)


def _uuid(rng: np.random.Generator) -> uuid.UUID:
    return uuid.UUID(bytes=rng.bytes(16), version=4)


def fingerprint(*, media: int, users: int, seed: int, model_name: str, dim: int) -> str:
    # v2: completed images carry derivative records (v1 libraries had none: re-seeded)
    return hashlib.sha256(f"v2:{media}:{users}:{seed}:{model_name}:{dim}".encode()).hexdigest()[:16]


# The renditions an upload of a w x h photo stores, as perflab.images.derivatives.plan makes them with
# PipelineOptions' defaults (a 2048 px master box, widths 320/640/1024/1920, a 300 px square thumbnail;
# tests/test_db_seed.py holds the two together). A search result's URLs are minted from these: without
# them a seeded library's search responses carry no URLs, and the search bench measured less work than
# a real library's responses cost.
_MASTER_BOX = 2048
_WIDTHS = (1920, 1024, 640, 320)
_THUMBNAIL = 300


def seeded_derivatives(media_id: uuid.UUID, width: int, height: int) -> list[dict[str, Any]]:
    """The derivative records of a completed seeded image: names, sizes, and content-hash-shaped keys
    (from the media id: no bytes exist behind them)."""
    scale = min(_MASTER_BOX / width, _MASTER_BOX / height, 1.0)
    master = (
        (width, height) if scale == 1.0 else (max(1, round(width * scale)), max(1, round(height * scale)))
    )
    sizes = [("master", master)]
    sizes += [(f"w{w}", (w, max(1, round(master[1] * w / master[0])))) for w in _WIDTHS if w < master[0]]
    side = min(_THUMBNAIL, min(master))
    sizes.append(("thumb", (side, side)))
    records = []
    for name, (w, h) in sizes:
        digest = hashlib.sha256(media_id.bytes + name.encode()).hexdigest()[:32]
        records.append(
            {"name": name, "width": w, "height": h, "format": "jpeg",
             "key": f"{digest[:2]}/{digest}-{name}.jpg", "bytes": w * h // 8}
        )  # fmt: skip
    return records


def generate_library(*, media: int, users: int, seed: int, tag: str = "") -> Library:
    """The library's rows (pure: no I/O). `tag` goes into the seeded users' firebase_uid."""
    rng = np.random.default_rng(seed)
    sizes = user_sizes(media, users, rng)
    user_rows: list[UserRow] = []
    media_rows: list[MediaRow] = []
    jobs: list[JobRow] = []
    counter = 0
    for n, size in enumerate(sizes, 1):
        uid = _uuid(rng)
        created = SEED_EPOCH - timedelta(days=float(rng.uniform(30, 3 * 365)))
        span = (SEED_EPOCH - created).total_seconds()
        user_rows.append(
            UserRow(
                id=uid,
                email=seeded_email(n),
                display_name=f"Seeded user {n}",
                subscription_tier="pro" if size >= 5000 else "free",
                firebase_uid=f"seed:{tag}:{n}",
                created_at=created,
                last_login_at=SEED_EPOCH - timedelta(hours=float(rng.exponential(72))),
            )
        )
        kinds = rng.choice(len(_MEDIA_KINDS), size=size, p=_MEDIA_P)
        statuses = rng.choice(len(_STATUS), size=size, p=_STATUS_P)
        offsets = np.sort(rng.uniform(0, span, size=size))
        for kind_i, status_i, offset in zip(kinds, statuses, offsets, strict=True):
            counter += 1
            kind, status = _MEDIA_KINDS[kind_i], _STATUS[status_i]
            prefix, ext, mime, median = _FORMAT[kind]
            uploaded = created + timedelta(seconds=float(offset))
            caption, tags = caption_for(rng, kind)
            mid = _uuid(rng)
            w, h = (
                _SIZES[rng.integers(len(_SIZES))]
                if kind in ("image", "video")
                else ((2480, 3508) if kind == "document" else (None, None))
            )
            processed = (
                uploaded + timedelta(seconds=float(rng.uniform(2, 90))) if status == "completed" else None
            )
            media_rows.append(
                MediaRow(
                    uid,
                    NewMedia(
                        id=mid,
                        filename=f"{prefix}_{uploaded:%Y%m%d_%H%M%S}_{counter:06d}{ext}",
                        original_filename=f"{prefix}_{counter:06d}{ext}",
                        caption=caption,
                        media_type=kind,
                        mime_type=mime,
                        file_size_bytes=int(median * rng.lognormal(0.0, 0.6)),
                        width=w,
                        height=h,
                        status=status,
                        tags=tags,
                        storage_key=f"{uid}/{mid}{ext}",
                        uploaded_at=uploaded,
                        processed_at=processed,
                        derivatives=(
                            seeded_derivatives(mid, w, h)
                            if kind == "image" and status == "completed" and w and h
                            else []
                        ),
                    ),
                )
            )
            jobs += _jobs_for(mid, status, uploaded, processed)
    return Library(user_rows, media_rows, jobs, sizes)


def _jobs_for(mid: uuid.UUID, status: str, uploaded: datetime, processed: datetime | None) -> list[JobRow]:
    done = processed or uploaded + timedelta(seconds=5)
    if status == "completed":
        return [
            JobRow(mid, "thumbnail", "completed", uploaded, done),
            JobRow(mid, "embedding", "completed", uploaded, done),
        ]
    if status == "processing":
        return [
            JobRow(mid, "thumbnail", "completed", uploaded, done),
            JobRow(mid, "embedding", "processing", uploaded),
        ]
    if status == "failed":
        return [JobRow(mid, "thumbnail", "failed", uploaded, done, error="decoder error: truncated file")]
    return [JobRow(mid, "thumbnail", "pending", uploaded)]


def embed_captions(
    embedder: Embedder, captions: list[str], *, batch_size: int = 256, progress: bool = False
) -> np.ndarray:
    """Embed each distinct caption once (in batches), then spread the vectors back over the rows."""
    unique, inverse = np.unique(np.asarray(captions, dtype=object), return_inverse=True)
    out = np.empty((len(unique), embedder.dim), dtype=np.float32)
    with tqdm(
        total=len(unique), disable=not progress, unit="caption", desc=f"embed ({embedder.model_name})"
    ) as bar:
        for i in range(0, len(unique), batch_size):
            chunk = [str(c) for c in unique[i : i + batch_size]]
            out[i : i + len(chunk)] = embedder.embed(chunk)
            bar.update(len(chunk))
    return out[inverse.reshape(-1)]


def seed_library(
    settings: Settings,
    conn_or_pool: PoolOrConn,
    *,
    media: int,
    users: int,
    seed: int,
    embedder: Embedder,
    progress: bool | None = None,
    replace: bool = False,
) -> SeedResult:
    """Build (or find already built) the library for these arguments in `settings.db_schema`.

    `replace=True` lets it delete media that seeded users hold but the seeder did not make."""
    if embedder.dim != settings.embedding_dim:
        raise InvalidInput(
            f"embedder {embedder.model_name} makes {embedder.dim}-d vectors, the schema has {settings.embedding_dim}"
        )
    t0 = time.perf_counter()
    fp = fingerprint(media=media, users=users, seed=seed, model_name=embedder.model_name, dim=embedder.dim)
    with borrow(conn_or_pool) as conn:
        state = _seeded_state(conn, fp)
        foreign = max(state.foreign_media, state.mine_media - media)
        if foreign and not replace:
            raise SeedConflict(
                f"schema {settings.db_schema} holds {foreign} media in seeded users' libraries that the "
                "seeder did not make (uploads by a lab run?); seeding would delete them. A seeded library "
                "needs a schema of its own that nothing else writes to (PERFLAB_DB_SCHEMA); to delete "
                "them and seed anew, pass --replace"
            )
        if not foreign and state.mine_users == state.seeded_users == users and state.mine_media == media:
            rng = np.random.default_rng(seed)
            sizes = user_sizes(media, users, rng)
            return SeedResult(
                seed, users, media, embedder.model_name, False, sizes, 0.0, None, time.perf_counter() - t0
            )
        lib = generate_library(media=media, users=users, seed=seed, tag=fp)
        t1 = time.perf_counter()
        show = bool(progress) if progress is not None else False
        vectors = embed_captions(embedder, [m.media.caption or "" for m in lib.media], progress=show)
        embed_s = time.perf_counter() - t1
        try:
            load = bulk_load(
                conn,
                users=lib.users,
                media=lib.media,
                embeddings=vectors,
                model_name=embedder.model_name,
                jobs=lib.jobs,
                progress=progress,
                prepare=_delete_seeded_users,
            )
        except psycopg.errors.UniqueViolation as exc:
            raise InvalidInput(
                f"cannot seed: a user that is not a seeded one already has a seeded email ({exc.diag.message_detail})"
            ) from exc
    return SeedResult(
        seed, users, media, embedder.model_name, True, lib.sizes, embed_s, load, time.perf_counter() - t0
    )


def forget_uploads(conn_or_pool: PoolOrConn) -> int:
    """Delete what seeded users uploaded after seeding (a load test's uploads): the library is again
    exactly the seeded one, so the next run measures the same library and may reuse it. Only media of
    seeded users (`seed:` ids) dated on or after SEED_EPOCH go: nobody else's. Returns how many."""
    with borrow(conn_or_pool) as conn:
        cur = conn.execute(
            "DELETE FROM media_files mf USING users s WHERE s.id = mf.user_id"
            " AND s.firebase_uid LIKE 'seed:%%' AND mf.uploaded_at >= %(epoch)s",
            {"epoch": SEED_EPOCH},
        )
        if not conn.autocommit:
            conn.commit()
        return cur.rowcount


def _delete_seeded_users(conn: psycopg.Connection[Any]) -> None:
    conn.execute("DELETE FROM users WHERE firebase_uid LIKE 'seed:%'")


@dataclass(frozen=True)
class _SeededState:
    mine_users: int  # seeded users of this fingerprint
    seeded_users: int  # seeded users of any fingerprint
    mine_media: int  # media of this fingerprint's users
    foreign_media: int  # media of any seeded user dated on or after SEED_EPOCH: not the seeder's


def _seeded_state(conn: psycopg.Connection[Any], fp: str) -> _SeededState:
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE u.firebase_uid LIKE %(mine)s), count(*),"
        " (SELECT count(*) FROM media_files mf JOIN users s ON s.id = mf.user_id WHERE s.firebase_uid LIKE %(mine)s),"
        " (SELECT count(*) FROM media_files mf JOIN users s ON s.id = mf.user_id"
        "   WHERE s.firebase_uid LIKE 'seed:%%' AND mf.uploaded_at >= %(epoch)s)"
        " FROM users u WHERE u.firebase_uid LIKE 'seed:%%'",
        {"mine": f"seed:{fp}:%", "epoch": SEED_EPOCH},
    ).fetchone()
    if not conn.autocommit:
        conn.commit()
    assert row is not None
    return _SeededState(*(int(x) for x in row))
