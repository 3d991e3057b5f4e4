"""The seed's QueryOptimizer (Step 5): the hot queries as prepared statements, user stats cached.

The search service reads through it too: hydrating a page of hits and loading one media item are its
batch loads (prepared, one round trip, scoped to the user).

What changed from the seed:
- user with stats reads the user's media through an aggregate subquery on the (user_id, ...) index,
  instead of LEFT JOIN + GROUP BY over every column of users;
- the batch media load gathers processed job types with a correlated ARRAY() per row instead of
  joining processing_jobs and embeddings and grouping, and leaves the 384 floats out unless asked;
- statements are prepared per connection by psycopg on first use (`prepare=True`), so the pool's
  connections parse and plan each hot query once;
- query analysis walks EXPLAIN's JSON plan tree (explain.py) instead of string matching.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Protocol

import numpy as np
from psycopg.rows import dict_row

from perflab.db._validate import as_uuid
from perflab.db.errors import InvalidInput
from perflab.db.explain import PlanAnalysis, analyze_plan
from perflab.db.pool import PoolOrConn, borrow

log = logging.getLogger(__name__)

USER_STATS_TTL_S = 300  # the seed's 5 minutes: stats may lag an upload by that much
MAX_BATCH = 1000


class GetOrSetCache(Protocol):
    """What QueryOptimizer needs from a cache (perflab.cache's CacheManager has it)."""

    def get_or_set(self, key: str, factory: Callable[[], Any], ttl: int) -> Any: ...


@dataclass(frozen=True)
class UserStats:
    id: uuid.UUID
    email: str | None
    display_name: str | None
    subscription_tier: str
    created_at: datetime
    last_login_at: datetime | None
    total_files: int
    total_storage_bytes: int

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types, so any cache serializer stores it and a hit decodes to the same object."""
        d = asdict(self)
        d["id"] = str(self.id)
        d["created_at"] = self.created_at.isoformat()
        d["last_login_at"] = self.last_login_at.isoformat() if self.last_login_at else None
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> UserStats:
        return cls(
            id=uuid.UUID(d["id"]),
            email=d["email"],
            display_name=d["display_name"],
            subscription_tier=d["subscription_tier"],
            created_at=datetime.fromisoformat(d["created_at"]),
            last_login_at=datetime.fromisoformat(d["last_login_at"]) if d["last_login_at"] else None,
            total_files=int(d["total_files"]),
            total_storage_bytes=int(d["total_storage_bytes"]),
        )


@dataclass(frozen=True)
class MediaRecord:
    """A media_files row with what the pipeline did to it (and optionally its primary embedding)."""

    id: uuid.UUID
    user_id: uuid.UUID
    filename: str
    original_filename: str | None
    mime_type: str
    media_type: str
    file_size_bytes: int
    width: int | None
    height: int | None
    status: str
    caption: str | None
    tags: list[str]
    storage_key: str | None
    dominant_colors: Any
    blurhash: str | None
    uploaded_at: datetime
    processed_at: datetime | None
    embedding_model: str | None
    processed_jobs: list[str]
    embedding: np.ndarray | None = None


USER_WITH_STATS = """
SELECT u.id, u.email, u.display_name, u.subscription_tier, u.created_at, u.last_login_at,
       s.total_files, s.total_storage_bytes
FROM users u
CROSS JOIN LATERAL (
    SELECT count(*) AS total_files, coalesce(sum(mf.file_size_bytes), 0)::bigint AS total_storage_bytes
    FROM media_files mf WHERE mf.user_id = u.id
) s
WHERE u.id = %s
"""

_MEDIA_COLUMNS = """
    mf.id, mf.user_id, mf.filename, mf.original_filename, mf.mime_type, mf.media_type,
    mf.file_size_bytes, mf.width, mf.height, mf.status, mf.caption, mf.tags, mf.storage_key,
    mf.dominant_colors, mf.blurhash, mf.uploaded_at, mf.processed_at, me.embedding_model,
    ARRAY(SELECT DISTINCT pj.job_type FROM processing_jobs pj
          WHERE pj.media_file_id = mf.id AND pj.status = 'completed' ORDER BY 1) AS processed_jobs
"""
_MEDIA_FROM = """
FROM media_files mf
LEFT JOIN media_embeddings me ON me.media_file_id = mf.id AND me.is_primary
WHERE mf.id = ANY(%s)
"""
BATCH_LOAD_MEDIA = "SELECT" + _MEDIA_COLUMNS + _MEDIA_FROM
BATCH_LOAD_MEDIA_WITH_EMBEDDINGS = "SELECT" + _MEDIA_COLUMNS + ", me.embedding" + _MEDIA_FROM

# The service's loads, always scoped to the signed-in user.
USER_MEDIA = (
    "SELECT id, filename, caption, media_type, mime_type, uploaded_at, width, height, file_size_bytes,"
    " tags, blurhash, dominant_colors, status, derivatives"
    " FROM media_files WHERE id = %s AND user_id = %s"
)


class QueryOptimizer:
    """The seed's optimized queries over a pool (or one connection), with an optional cache."""

    def __init__(
        self, pool: PoolOrConn, cache: GetOrSetCache | None = None, *, stats_ttl_s: int = USER_STATS_TTL_S
    ) -> None:
        self.pool = pool
        self.cache = cache
        self.stats_ttl_s = stats_ttl_s

    @staticmethod
    def stats_key(user_id: uuid.UUID) -> str:
        return f"user:stats:{user_id}"

    def user_with_stats(self, user_id: uuid.UUID | str) -> UserStats | None:
        """The user and their file count and storage; through the cache (5 min) when there is one."""
        uid = as_uuid(user_id, "user_id")
        if self.cache is None:
            return self._load_user_stats(uid)
        ran = False

        def factory() -> dict[str, Any] | None:
            nonlocal ran
            ran = True
            stats = self._load_user_stats(uid)
            return stats.to_json() if stats else None

        try:
            value = self.cache.get_or_set(self.stats_key(uid), factory, self.stats_ttl_s)
        except Exception:
            if ran:  # the database failed inside the factory: that is the caller's error
                raise
            log.warning("user stats cache failed; reading the database", exc_info=True)
            return self._load_user_stats(uid)
        return UserStats.from_json(value) if value else None

    def _load_user_stats(self, uid: uuid.UUID) -> UserStats | None:
        with borrow(self.pool, autocommit=True) as conn, conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(USER_WITH_STATS, (uid,), prepare=True).fetchone()
        return UserStats(**row) if row else None

    def batch_load_media(
        self, ids: Iterable[uuid.UUID | str], *, with_embeddings: bool = False
    ) -> dict[uuid.UUID, MediaRecord]:
        """Load many media rows in one round trip (`= ANY(array)`), keyed by id; unknown ids are absent."""
        wanted = list(dict.fromkeys(as_uuid(i, "media id") for i in ids))
        if not wanted:
            return {}
        if len(wanted) > MAX_BATCH:
            raise InvalidInput(f"batch_load_media takes at most {MAX_BATCH} ids, got {len(wanted)}")
        query = BATCH_LOAD_MEDIA_WITH_EMBEDDINGS if with_embeddings else BATCH_LOAD_MEDIA
        with borrow(self.pool, autocommit=True) as conn, conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(query, (wanted,), prepare=True).fetchall()
        out: dict[uuid.UUID, MediaRecord] = {}
        for row in rows:
            emb = row.pop("embedding", None)
            out[row["id"]] = MediaRecord(**row, embedding=None if emb is None else emb.to_numpy())
        return out

    def user_media(self, user_id: uuid.UUID | str, media_id: uuid.UUID | str) -> dict[str, Any] | None:
        """One media row as the API shows it (with its derivatives), or None when it is not this user's."""
        params = (as_uuid(media_id, "media id"), as_uuid(user_id, "user_id"))
        with borrow(self.pool, autocommit=True) as conn, conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(USER_MEDIA, params, prepare=True).fetchone()

    def analyze(self, sql: str, params: Sequence[Any] | None = None) -> PlanAnalysis:
        """EXPLAIN (ANALYZE, BUFFERS) the statement (rolled back) and recommend fixes per plan node."""
        with borrow(self.pool) as conn:
            return analyze_plan(conn, sql, params)
