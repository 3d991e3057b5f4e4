"""Per-user vector search over media_embeddings: exact for small libraries, HNSW for large ones.

Two paths, chosen from the user's row count (a bounded count: at most `exact_threshold + 1` index
entries are read; the decision is remembered per user for `path_ttl_s`):

- exact: the user's rows through the btree on user_id, distances computed for those rows only, top k
  sorted. Recall is 1.0 by construction, and for a small library it is as fast as the index (see the
  sweep in `perflab bench vector`). The distances are computed in a MATERIALIZED CTE so the planner
  cannot swap in the HNSW index.
- hnsw: `ORDER BY embedding <=> q LIMIT k` with the user and the filters as conditions, so the planner
  can use the HNSW index; `hnsw.ef_search` is set for this transaction only (set_config(..., true),
  i.e. SET LOCAL) together with pgvector 0.8's iterative scan (relaxed order, re-sorted outside), so
  the filters still leave k rows. If the scan gives up (hnsw.max_scan_tuples) with fewer than k, the
  query is answered again by the exact path.

The user id is a condition of the statement that ranks, and the media join repeats it, so no path can
return another user's media. The statements are prepared, but planned per execution
(plan_cache_mode=force_custom_plan, set locally): a generic plan would pick one plan for libraries of
every size. BEGIN, the settings, the search and COMMIT go out in one pipeline flush (one round trip).
"""

from __future__ import annotations

import functools
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
import psycopg

from perflab.db._validate import MEDIA_TYPES, STATUSES, as_uuid, as_vector, check_aware, check_choice
from perflab.db.errors import InvalidInput
from perflab.db.pool import PoolOrConn, borrow

SearchPath = Literal["auto", "exact", "hnsw"]

# Measured with `perflab bench vector --rows 100000` (README): at 2,000 rows the exact path is faster than
# the index under a 2% filter and exact; at 4,000 the index wins. ef_search 200 with the schema's
# ef_construction=128 gives recall@10 0.999 on clustered data for ~0.2 ms more than ef_search 100 (0.99).
EXACT_THRESHOLD = 2_000
DEFAULT_EF_SEARCH = 200
MAX_K = 1000


@dataclass(frozen=True)
class SearchFilters:
    """Optional conditions; dates are inclusive and must be timezone-aware."""

    media_type: str | None = None
    date_from: datetime | None = None
    date_to: datetime | None = None
    status: str | None = "completed"

    def validate(self) -> None:
        check_choice(self.media_type, MEDIA_TYPES, "media_type")
        check_choice(self.status, STATUSES, "status")
        check_aware(self.date_from, "date_from")
        check_aware(self.date_to, "date_to")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise InvalidInput("date_from is after date_to")

    def params(self) -> dict[str, Any]:
        """The filters that are set, by name (see _FILTER_SQL)."""
        values = {
            "media_type": self.media_type,
            "status": self.status,
            "date_from": self.date_from,
            "date_to": self.date_to,
        }
        return {k: v for k, v in values.items() if v is not None}


@dataclass(frozen=True)
class Hit:
    """One result: the media row's display fields plus its distance (cosine, 0..2) and similarity."""

    media_id: uuid.UUID
    user_id: uuid.UUID
    distance: float
    similarity: float
    filename: str
    original_filename: str | None
    caption: str | None
    media_type: str
    mime_type: str
    status: str
    uploaded_at: datetime
    width: int | None
    height: int | None
    file_size_bytes: int
    storage_key: str | None
    tags: list[str]
    blurhash: str | None
    dominant_colors: Any


_FILTER_SQL = {
    "media_type": "media_type = %(media_type)s",
    "status": "status = %(status)s",
    "date_from": "uploaded_at >= %(date_from)s",
    "date_to": "uploaded_at <= %(date_to)s",
}

_HIT_COLUMNS = (
    "mf.id, mf.user_id, top.distance, 1 - top.distance, mf.filename, mf.original_filename, mf.caption,"
    " mf.media_type, mf.mime_type, mf.status, mf.uploaded_at, mf.width, mf.height, mf.file_size_bytes,"
    " mf.storage_key, mf.tags, mf.blurhash, mf.dominant_colors"
)

# Per transaction only. force_custom_plan: these statements are prepared, and a generic plan would
# guess one user size for all users (and could sort a large library instead of using the index).
_SETTINGS = (
    "SELECT set_config('hnsw.ef_search', %s, true), set_config('hnsw.iterative_scan', 'relaxed_order', true),"
    " set_config('plan_cache_mode', 'force_custom_plan', true)"
)

_COUNT = "SELECT count(*) FROM (SELECT 1 FROM media_embeddings WHERE user_id = %s LIMIT %s) s"


@functools.lru_cache(maxsize=64)
def _query(path: Literal["exact", "hnsw"], filters: tuple[str, ...]) -> str:
    """The search statement for a path and a set of filter names (all values are parameters)."""
    # The user is always a condition of the ranking statement, and again of the join.
    where = " AND ".join(["user_id = %(u)s", "is_primary", *(_FILTER_SQL[f] for f in filters)])
    if path == "exact":
        top = (
            "WITH mine AS MATERIALIZED ("
            f"SELECT media_file_id, embedding <=> %(q)s AS distance FROM media_embeddings WHERE {where}),"
            " top AS (SELECT * FROM mine ORDER BY distance LIMIT %(k)s)"
        )
    else:
        top = (
            "WITH top AS MATERIALIZED ("
            f"SELECT media_file_id, embedding <=> %(q)s AS distance FROM media_embeddings WHERE {where}"
            " ORDER BY distance LIMIT %(k)s)"
        )
    return (
        f"{top} SELECT {_HIT_COLUMNS} FROM top JOIN media_files mf"
        " ON mf.id = top.media_file_id AND mf.user_id = %(u)s ORDER BY top.distance, mf.id"
    )


class VectorSearch:
    """Search one user's media by embedding. Thread-safe: each call borrows its own connection.

    The path decision (a bounded count of the user's rows) is remembered per user for `path_ttl_s`;
    it only steers speed, so a library that just crossed the threshold may take the other path for
    that long."""

    def __init__(
        self,
        pool: PoolOrConn,
        *,
        exact_threshold: int = EXACT_THRESHOLD,
        ef_search: int = DEFAULT_EF_SEARCH,
        dim: int | None = None,
        path_ttl_s: float = 30.0,
        path_cache_size: int = 10_000,
    ) -> None:
        self.pool = pool
        self.exact_threshold = exact_threshold
        self.ef_search = ef_search
        self.dim = dim
        self.path_ttl_s = path_ttl_s
        self._path_cache_size = path_cache_size
        self._paths: OrderedDict[uuid.UUID, tuple[float, Literal["exact", "hnsw"]]] = OrderedDict()
        self._lock = threading.Lock()

    def search(
        self,
        user_id: uuid.UUID | str,
        embedding: np.ndarray | Sequence[float],
        k: int = 10,
        filters: SearchFilters | None = None,
        *,
        ef_search: int | None = None,
        path: SearchPath = "auto",
    ) -> list[Hit]:
        """The user's k nearest media (cosine), nearest first. `path` forces a path (benchmarks)."""
        uid = as_uuid(user_id, "user_id")
        q = as_vector(embedding, self.dim)
        if not 1 <= k <= MAX_K:
            raise InvalidInput(f"k must be in 1..{MAX_K}, got {k}")
        ef = self.ef_search if ef_search is None else ef_search
        if not 1 <= ef <= 1000:
            raise InvalidInput(f"ef_search must be in 1..1000, got {ef}")
        if path not in ("auto", "exact", "hnsw"):
            raise InvalidInput(f"path must be auto, exact or hnsw, not {path!r}")
        filters = filters or SearchFilters()
        filters.validate()
        fparams = filters.params()
        params = {"u": uid, "q": q, "k": k, **fparams}
        names = tuple(sorted(fparams))
        with borrow(self.pool) as conn:
            try:
                chosen = path if path != "auto" else self._path(conn, uid)
                rows = self._run(conn, _query(chosen, names), params, max(ef, k))
                if path == "auto" and chosen == "hnsw" and len(rows) < k:
                    # The iterative scan stopped at hnsw.max_scan_tuples: a very selective filter.
                    rows = self._run(conn, _query("exact", names), params, ef)
            except psycopg.errors.DataException as exc:
                raise InvalidInput(f"rejected by the database: {exc.diag.message_primary}") from exc
        return [Hit(*row) for row in rows]

    @staticmethod
    def _run(
        conn: psycopg.Connection[Any], query: str, params: dict[str, Any], ef: int
    ) -> list[tuple[Any, ...]]:
        # BEGIN, the settings, the search and COMMIT leave in one flush: one round trip.
        with conn.pipeline(), conn.transaction():
            conn.execute(_SETTINGS, (str(ef),), prepare=True)
            cur = conn.execute(query.encode(), params, prepare=True)
        return cur.fetchall()

    def _path(self, conn: psycopg.Connection[Any], uid: uuid.UUID) -> Literal["exact", "hnsw"]:
        now = time.monotonic()
        with self._lock:
            hit = self._paths.get(uid)
            if hit and hit[0] > now:
                return hit[1]
        with conn.pipeline(), conn.transaction():
            cur = conn.execute(_COUNT, (uid, self.exact_threshold + 1), prepare=True)
        row = cur.fetchone()
        chosen: Literal["exact", "hnsw"] = "exact" if row and row[0] <= self.exact_threshold else "hnsw"
        with self._lock:
            self._paths[uid] = (now + self.path_ttl_s, chosen)
            self._paths.move_to_end(uid)
            while len(self._paths) > self._path_cache_size:
                self._paths.popitem(last=False)
        return chosen

    def path_for(self, user_id: uuid.UUID | str) -> Literal["exact", "hnsw"]:
        """Which path `search` takes for this user (fresh count, and remembered)."""
        uid = as_uuid(user_id, "user_id")
        with self._lock:
            self._paths.pop(uid, None)
        with borrow(self.pool) as conn:
            return self._path(conn, uid)
