"""Per-user vector search over media_embeddings: exact for small filtered sets, HNSW for large ones.

The path is chosen from the size of what the WHOLE filter keeps (user, status, media type, dates), not
from the user's size: a large user with a narrow date window keeps a few dozen rows, and the exact
answer over those is both right and faster than any graph walk. That size is a bounded count (at most
threshold + 1 entries of the covering btree `idx_media_embeddings_filter`, index-only), and the
decision is remembered per (user, filter values) for `path_ttl_s`. The threshold is `exact_threshold`
(2,000) up to 100k rows and grows as the square root of the table beyond (`threshold_for`).

- exact: the filtered rows through the btree, distances computed for those rows only, top k sorted.
  Recall is 1.0 by construction. The distances are computed in a MATERIALIZED CTE so the planner cannot
  swap in the HNSW index.
- hnsw: the HNSW index with pgvector 0.8's iterative scan (relaxed order), so the filters still leave
  rows; the scan stops at k candidates (over-fetching more cost 30-50 % more time for under 0.004 of
  recall@10), which are ordered by their exact full-precision distance. The
  index is a halfvec expression index by default (migration 0005: half the memory and I/O); the
  re-rank uses the stored float32 vectors, so distances are exact either way. `hnsw.ef_search` and
  `hnsw.iterative_scan` are session settings of the connection (they affect HNSW scans only), sent
  only when its ef_search is not already the one wanted (`_run`); the module remembers what it set
  per connection, so a RESET ALL / DISCARD ALL on a connection searches still use is not seen. If the scan gives up (hnsw.max_scan_tuples) with
  fewer than k, the query is answered again by the exact path.

The user id is a condition of the statement that ranks, and the media join repeats it, so no path can
return another user's media. The exact statements are unnamed (not prepared), so each is planned for
its own parameters. The HNSW statement is prepared when its generic plan (PostgreSQL's
`EXPLAIN (GENERIC_PLAN)`, checked once per statement and `path_ttl_s`) ranks with the HNSW index:
only filters that keep more than the threshold reach it, so one plan serves them all, and
planning was the largest part of what perflab cost over a prepared hand-written loop. A generic plan
that does not use the index keeps the statement unnamed. A search is one statement and one round trip;
the settings, when they change, ride in the same pipeline flush.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
import psycopg

from perflab.db._validate import MEDIA_TYPES, STATUSES, as_uuid, as_vector, check_aware, check_choice
from perflab.db.errors import EmbedderMismatch, InvalidInput
from perflab.db.indexes import vector_indexes
from perflab.db.pool import PoolOrConn, autocommit, borrow, idle

SearchPath = Literal["auto", "exact", "hnsw"]
IndexKind = Literal["halfvec", "vector"]
Path = Literal["exact", "hnsw"]

# Measured with `perflab bench vector --rows 100000` (README): below ~2,000 matching rows the exact path
# is as fast as the index, and exact. ef_search 100 gives recall@10 >= 0.99
# on clustered data with the schema's ef_construction=128.
EXACT_THRESHOLD = 2_000
# The table size EXACT_THRESHOLD was measured at; the threshold grows as sqrt(rows / this) above it
# (threshold_for).
THRESHOLD_ROWS = 100_000
DEFAULT_EF_SEARCH = 100
MAX_K = 1000
MAX_EF = 1000


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
    """One result: the media row's display fields plus its distance (cosine, 0..2) and similarity, and
    its stored renditions (the vector query reads them from the row it joins anyway: a search result
    needs no second round trip)."""

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
    derivatives: list[dict[str, Any]]


@dataclass(frozen=True)
class Route:
    """How one search runs: the path, the rows the whole filter keeps (counted up to the exact
    threshold + 1, so `matches > threshold` means "more"), and the ef_search used."""

    path: Path
    matches: int
    ef: int
    selectivity: float  # the planner's estimate of the share of the table the filter keeps
    threshold: int = EXACT_THRESHOLD  # the exact/HNSW threshold at this table's size


@dataclass(frozen=True)
class VectorIndex:
    """The HNSW index a search ranks with: its kind, the halfvec dimension its expression casts to, and
    its name (what a plan names; None where only the expression matters)."""

    kind: IndexKind
    dim: int | None = None
    name: str | None = None

    def rank_sql(self) -> str:
        """The ORDER BY expression that this index serves (it must match the index expression)."""
        if self.kind == "halfvec":
            return f"(embedding::halfvec({self.dim})) <=> %(q)s::halfvec({self.dim})"
        return "embedding <=> %(q)s"


_FILTER_SQL = {
    "media_type": "media_type = %(media_type)s",
    "status": "status = %(status)s",
    "date_from": "uploaded_at >= %(date_from)s",
    "date_to": "uploaded_at <= %(date_to)s",
}

_HIT_COLUMNS = (
    "mf.id, mf.user_id, top.distance, 1 - top.distance, mf.filename, mf.original_filename, mf.caption,"
    " mf.media_type, mf.mime_type, mf.status, mf.uploaded_at, mf.width, mf.height, mf.file_size_bytes,"
    " mf.storage_key, mf.tags, mf.blurhash, mf.dominant_colors, mf.derivatives"
)

# Session settings for the HNSW scan (they steer nothing but HNSW scans). Set on a connection when its
# remembered ef_search differs from the one a search wants (_SESSION), else not sent at all. Inside a
# caller's transaction they are set for that transaction only (the last argument, is_local).
_SETTINGS = (
    "SELECT set_config('hnsw.ef_search', %s, %s), set_config('hnsw.iterative_scan', 'relaxed_order', %s)"
)
# A prepared HNSW search runs its generic plan: set for the search's implicit transaction only (_run).
_GENERIC_PLAN = "SELECT set_config('plan_cache_mode', 'force_generic_plan', true)"
# The ef_search each connection's session holds, as set by _run (a weak map: connections come and go).
_SESSION: weakref.WeakKeyDictionary[psycopg.Connection[Any], int] = weakref.WeakKeyDictionary()
_SESSION_LOCK = threading.Lock()

_HALFVEC_DIM = re.compile(r"halfvec\((\d+)\)")
_WIDEN_BELOW = 0.1


@contextlib.contextmanager
def _one_flight(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """A pipeline whose statements leave in one flush and run in one transaction: the implicit one of
    an autocommit pipeline (one round trip) on an idle connection, the caller's own (a savepoint) on a
    connection already inside a transaction."""
    if idle(conn):
        with autocommit(conn), conn.pipeline():
            yield
    else:
        with conn.pipeline(), conn.transaction():
            yield


def _where(filters: tuple[str, ...], *, steer: bool = False) -> str:
    # The user is always a condition of the ranking statement, and again of the join. `steer` writes
    # it as `(user_id = %(u)s) IS TRUE` (the same rows), which no btree can serve: the HNSW statement
    # runs only where the route chose the graph walk, and without this its generic plan (which guesses
    # a user at 1/n_distinct of the table: 125 rows in the 100k seeded library) is the filter btree
    # plus a sort of every row the user owns.
    user = "(user_id = %(u)s) IS TRUE" if steer else "user_id = %(u)s"
    return " AND ".join([user, "is_primary", *(_FILTER_SQL[f] for f in filters)])


@functools.lru_cache(maxsize=64)
def _count_query(filters: tuple[str, ...]) -> str:
    """How many rows the whole filter keeps, up to %(cap)s (an index-only scan of the filter btree)."""
    return f"SELECT count(*) FROM (SELECT 1 FROM media_embeddings WHERE {_where(filters)} LIMIT %(cap)s) s"


@functools.lru_cache(maxsize=64)
def _estimate_query(filters: tuple[str, ...]) -> str:
    """The planner's estimate of the same count, unbounded (statistics only, nothing is read)."""
    return f"EXPLAIN (FORMAT JSON) SELECT 1 FROM media_embeddings WHERE {_where(filters)}"


@functools.lru_cache(maxsize=128)
def _query(path: Path, filters: tuple[str, ...], index: VectorIndex | None = None) -> str:
    """The search statement for a path, a set of filter names and an index (all values are parameters)."""
    where = _where(filters)
    if path == "exact":
        top = (
            "WITH mine AS MATERIALIZED ("
            f"SELECT media_file_id, embedding <=> %(q)s AS distance FROM media_embeddings WHERE {where}),"
            " top AS (SELECT * FROM mine ORDER BY distance LIMIT %(k)s)"
        )
    else:
        # %(n)s candidates from the iterative scan (roughly nearest first), re-ranked exactly, cut to k.
        rank = (index or VectorIndex("vector")).rank_sql()
        top = (
            "WITH cand AS MATERIALIZED ("
            f"SELECT media_file_id, embedding <=> %(q)s AS distance FROM media_embeddings"
            f" WHERE {_where(filters, steer=True)}"
            f" ORDER BY {rank} LIMIT %(n)s),"
            " top AS (SELECT * FROM cand ORDER BY distance LIMIT %(k)s)"
        )
    return (
        f"{top} SELECT {_HIT_COLUMNS} FROM top JOIN media_files mf"
        " ON mf.id = top.media_file_id AND mf.user_id = %(u)s ORDER BY top.distance, mf.id"
    )


_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def _positional(query: str) -> str:
    """`query` with its %(name)s placeholders as $1, $2, ... (one number per name), as EXPLAIN
    (GENERIC_PLAN) takes it: a statement with parameters and no values."""
    numbers: dict[str, int] = {}
    return _PLACEHOLDER.sub(lambda m: f"${numbers.setdefault(m.group(1), len(numbers) + 1)}", query)


def _plan_indexes(node: Any) -> Iterator[str]:
    """Every index a JSON plan (or any part of one) scans."""
    if isinstance(node, dict):
        if "Index Name" in node:
            yield str(node["Index Name"])
        for value in node.values():
            yield from _plan_indexes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _plan_indexes(value)


def generic_plan_uses(conn: psycopg.Connection[Any], query: str, index_name: str) -> bool:
    """Whether the generic plan of `query` (planned without parameter values, as a prepared statement's
    cached plan is) scans `index_name`. Nothing runs: EXPLAIN without ANALYZE. A server that refuses
    the question (GENERIC_PLAN is PostgreSQL 16+; a staging server may be older) answers no."""
    sql_bytes = ("EXPLAIN (GENERIC_PLAN, FORMAT JSON) " + _positional(query)).encode()
    try:
        standalone = conn.autocommit and idle(conn)
        # otherwise a transaction (a savepoint inside a caller's): a refusal leaves the connection usable
        with contextlib.nullcontext() if standalone else conn.transaction():
            row = conn.execute(sql_bytes, prepare=False).fetchone()  # no values: never a prepared one
    except (psycopg.ProgrammingError, psycopg.NotSupportedError, psycopg.DataError):
        return False
    return row is not None and index_name in set(_plan_indexes(row[0]))


def threshold_for(rows_total: float, base: int = EXACT_THRESHOLD) -> int:
    """The exact/HNSW crossover for a table of `rows_total` rows: `base` up to THRESHOLD_ROWS, then
    base * sqrt(rows_total / THRESHOLD_ROWS). The exact path computes m distances for m matching
    rows; a walk through a filter that keeps m of N rows visits about ef * N / m nodes to find its k;
    the two cost the same at m ~ sqrt(ef * N). Measured crossovers (`perflab bench vector`, the
    sweep): ~2,000 rows at 100k, between 4,000 and 8,000 at 1M (this gives 6,325)."""
    return max(base, round(base * math.sqrt(max(rows_total, 0.0) / THRESHOLD_ROWS)))


def ef_for_selectivity(ef: int, k: int, selectivity: float) -> int:
    """ef_search for one query. A filter that keeps a share s of the table leaves the walk's candidate
    list holding about s * ef matches; the iterative scan makes up the count, but judges each batch it
    adds against that thin list. Below s = 10 % ef is widened by sqrt(0.1 / s), at most 4x, so that a
    selective filter does not pay the unfiltered recall loss; at 10 % and above ef is used as given."""
    s = min(max(selectivity, 1e-6), 1.0)
    widened = math.ceil(ef * min(4.0, math.sqrt(_WIDEN_BELOW / s))) if s < _WIDEN_BELOW else ef
    return min(max(widened, k), MAX_EF)


class VectorSearch:
    """Search one user's media by embedding. Thread-safe: each call borrows its own connection.

    The route (a bounded count of what the whole filter keeps) is remembered per (user, filter values)
    for `path_ttl_s`; it only steers speed, since both paths return the k nearest of the filtered rows.
    `index` picks the HNSW index to rank with ("halfvec" or "vector"); None takes the schema's, halfvec
    first."""

    def __init__(
        self,
        pool: PoolOrConn,
        *,
        exact_threshold: int = EXACT_THRESHOLD,
        ef_search: int = DEFAULT_EF_SEARCH,
        dim: int | None = None,
        index: IndexKind | None = None,
        adaptive_ef: bool = True,
        path_ttl_s: float = 30.0,
        path_cache_size: int = 10_000,
    ) -> None:
        if index not in (None, "halfvec", "vector"):
            raise InvalidInput(f"index must be halfvec or vector, not {index!r}")
        self.pool = pool
        self.exact_threshold = exact_threshold
        self.ef_search = ef_search
        self.dim = dim
        self.index_kind = index
        self.adaptive_ef = adaptive_ef
        self.path_ttl_s = path_ttl_s
        self._path_cache_size = path_cache_size
        self._routes: OrderedDict[tuple[Any, ...], tuple[float, int, float]] = OrderedDict()
        self._index: tuple[float, VectorIndex | None, float] | None = None  # (expiry, index, table rows)
        self._generic: dict[str, tuple[float, bool]] = {}  # HNSW statement -> (expiry, prepare it)
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
        """The user's k nearest media (cosine), nearest first. `path` forces a path (benchmarks);
        an explicit `ef_search` is used as given, the default one is widened for selective filters."""
        return self.search_routed(user_id, embedding, k, filters, ef_search=ef_search, path=path)[0]

    def search_routed(
        self,
        user_id: uuid.UUID | str,
        embedding: np.ndarray | Sequence[float],
        k: int = 10,
        filters: SearchFilters | None = None,
        *,
        ef_search: int | None = None,
        path: SearchPath = "auto",
    ) -> tuple[list[Hit], Route]:
        """`search`, and the route it took (the bench and tests report it)."""
        uid = as_uuid(user_id, "user_id")
        q = as_vector(embedding, self.dim)
        if not 1 <= k <= MAX_K:
            raise InvalidInput(f"k must be in 1..{MAX_K}, got {k}")
        if ef_search is not None and not 1 <= ef_search <= MAX_EF:
            raise InvalidInput(f"ef_search must be in 1..{MAX_EF}, got {ef_search}")
        if path not in ("auto", "exact", "hnsw"):
            raise InvalidInput(f"path must be auto, exact or hnsw, not {path!r}")
        filters = filters or SearchFilters()
        filters.validate()
        fparams = filters.params()
        names = tuple(sorted(fparams))
        params: dict[str, Any] = {"u": uid, "q": q, "k": k, **fparams}
        with borrow(self.pool, autocommit=True) as conn:
            try:
                index, rows_total = self._schema_index(conn)
                threshold = self.threshold_for(rows_total)
                matches, estimate = self._matches(conn, uid, names, params, threshold)
                selectivity = min(estimate / max(rows_total, 1.0), 1.0)
                chosen: Path
                if path == "auto":
                    chosen = "exact" if matches <= threshold or index is None else "hnsw"
                else:
                    chosen = path
                if ef_search is not None:
                    ef = max(ef_search, k)
                elif self.adaptive_ef:
                    ef = ef_for_selectivity(self.ef_search, k, selectivity)
                else:
                    ef = max(self.ef_search, k)
                # The scan stops at k, as a hand-written loop's does, and the re-rank orders those k by
                # exact float32 distance. Measured at 50k / 100k rows (user A, 50 % of the table):
                # over-fetching 2k, 4k or ef candidates gained at most 0.004 of recall@10 at ef_search 40
                # and nothing from 100 up, for 30-50 % more time per search (each candidate is a heap
                # fetch and a filter check; past the first batch, a second graph walk). A higher
                # ef_search buys that recall for less.
                params["n"] = k
                query = _query(chosen, names, index)
                prepare = chosen == "hnsw" and index is not None and self._prepare_hnsw(conn, query, index)
                rows = self._run(conn, query, params, ef, prepare=prepare)
                if path == "auto" and chosen == "hnsw" and len(rows) < k:
                    # The iterative scan stopped at hnsw.max_scan_tuples: a very selective filter.
                    chosen = "exact"
                    rows = self._run(conn, _query("exact", names), params, ef)
            except psycopg.errors.DataException as exc:
                raise InvalidInput(f"rejected by the database: {exc.diag.message_primary}") from exc
        return [Hit(*row) for row in rows], Route(chosen, matches, ef, round(selectivity, 6), threshold)

    def _prepare_hnsw(self, conn: psycopg.Connection[Any], query: str, index: VectorIndex) -> bool:
        """Whether to prepare this HNSW statement: its generic plan ranks with the index (checked once
        per statement and `path_ttl_s`; the statistics it is planned from can change)."""
        now = time.monotonic()
        with self._lock:
            known = self._generic.get(query)
        if known and known[0] > now:
            return known[1]
        ok = index.name is not None and generic_plan_uses(conn, query, index.name)
        with self._lock:
            self._generic[query] = (now + self.path_ttl_s, ok)
        return ok

    @staticmethod
    def _run(
        conn: psycopg.Connection[Any],
        query: str,
        params: dict[str, Any],
        ef: int,
        *,
        prepare: bool = False,
    ) -> list[tuple[Any, ...]]:
        """One round trip and one wake-up, as a hand-written loop would. With `prepare` (see
        `_prepare_hnsw`) the statement is prepared and runs its generic plan: `plan_cache_mode` is set
        for the search's own implicit transaction only (PostgreSQL's cost-based choice keeps custom
        plans here, since the generic plan cannot see LIMIT k), so no other statement on the pooled
        connection changes its plans. Otherwise an unnamed statement is planned for its own parameters
        every time (a generic plan would guess one filter size for libraries of 100 and 70,000 rows);
        so is every search inside a caller's transaction, where a local setting would outlive it.
        On an idle connection (autocommit for the call) the HNSW settings are session settings, sent
        only when this connection's ef_search is not already the one wanted, and then in the same
        pipeline flush as the search (one implicit transaction: if the search fails, the settings roll
        back and are forgotten). Measured at 50k rows: an explicit BEGIN / SET LOCAL / COMMIT cost 4
        round trips on a pooled connection, the pipeline without a transaction 1, but its results came
        back in several reads, each a wake-up on a busy 2-core machine."""
        sql_bytes = query.encode()
        if not idle(conn):
            with conn.pipeline(), conn.transaction():  # the caller's transaction: settings local to it
                conn.execute(_SETTINGS, (str(ef), True, True), prepare=True)
                cur = conn.execute(sql_bytes, params, prepare=False)
            return cur.fetchall()
        with _SESSION_LOCK:
            current = _SESSION.get(conn)
        with autocommit(conn):
            if current == ef and not prepare:
                return conn.execute(sql_bytes, params, prepare=False).fetchall()
            if current != ef:
                with _SESSION_LOCK:
                    _SESSION.pop(conn, None)
            with conn.pipeline():
                if current != ef:
                    conn.execute(_SETTINGS, (str(ef), False, False), prepare=True)
                if prepare:
                    conn.execute(_GENERIC_PLAN, prepare=True)
                cur = conn.execute(sql_bytes, params, prepare=prepare)
            rows = cur.fetchall()
        if current != ef:
            with _SESSION_LOCK:
                _SESSION[conn] = ef
        return rows

    def _schema_index(self, conn: psycopg.Connection[Any]) -> tuple[VectorIndex | None, float]:
        """The HNSW index to rank with and the table's row estimate, looked up once per `path_ttl_s`."""
        now = time.monotonic()
        with self._lock:
            if self._index and self._index[0] > now:
                return self._index[1], self._index[2]
        found: dict[IndexKind, VectorIndex] = {}
        for d in vector_indexes(conn):
            if "halfvec_cosine_ops" in d.definition and (m := _HALFVEC_DIM.search(d.definition)):
                found.setdefault("halfvec", VectorIndex("halfvec", int(m.group(1)), d.name))
            elif "vector_cosine_ops" in d.definition and " hnsw " in d.definition:
                found.setdefault("vector", VectorIndex("vector", None, d.name))
        if self.index_kind is not None:
            if self.index_kind not in found:
                raise InvalidInput(f"this schema has no {self.index_kind} HNSW index on media_embeddings")
            index: VectorIndex | None = found[self.index_kind]
        else:
            index = found.get("halfvec") or found.get("vector")
        row = conn.execute(
            "SELECT greatest(reltuples, 0) FROM pg_class WHERE oid = 'media_embeddings'::regclass"
        ).fetchone()
        total = float(row[0]) if row else 0.0
        with self._lock:
            self._index = (now + self.path_ttl_s, index, total)
        return index, total

    def threshold_for(self, rows_total: float) -> int:
        """The exact/HNSW threshold for a table this size (`threshold_for`, from `exact_threshold`)."""
        return threshold_for(rows_total, self.exact_threshold)

    def _matches(
        self,
        conn: psycopg.Connection[Any],
        uid: uuid.UUID,
        names: tuple[str, ...],
        params: dict[str, Any],
        threshold: int,
    ) -> tuple[int, float]:
        """(rows the filter keeps, counted up to the threshold + 1; the planner's unbounded estimate),
        both in one round trip, remembered per (user, filter values, threshold: a count capped at one
        threshold says nothing about a higher one)."""
        key = (uid, threshold, *((n, params[n]) for n in names))
        now = time.monotonic()
        with self._lock:
            hit = self._routes.get(key)
            if hit and hit[0] > now:
                return hit[1], hit[2]
        fparams = {n: params[n] for n in ("u", *names)}
        with _one_flight(conn):
            counted = conn.execute(
                _count_query(names).encode(), {**fparams, "cap": threshold + 1}, prepare=True
            )
            planned = conn.execute(_estimate_query(names).encode(), fparams, prepare=True)
        row, plan = counted.fetchone(), planned.fetchone()
        matches = int(row[0]) if row else 0
        estimate = float(plan[0][0]["Plan"]["Plan Rows"]) if plan else float(matches)
        if matches <= threshold:
            estimate = float(matches)  # counted exactly
        with self._lock:
            self._routes[key] = (now + self.path_ttl_s, matches, estimate)
            self._routes.move_to_end(key)
            while len(self._routes) > self._path_cache_size:
                self._routes.popitem(last=False)
        return matches, max(estimate, float(matches))

    def path_for(self, user_id: uuid.UUID | str, filters: SearchFilters | None = None) -> Path:
        """Which path `search` takes for this user and filter (a fresh count, then remembered)."""
        uid = as_uuid(user_id, "user_id")
        filters = filters or SearchFilters()
        filters.validate()
        fparams = filters.params()
        names = tuple(sorted(fparams))
        with borrow(self.pool, autocommit=True) as conn:
            index, rows_total = self._schema_index(conn)
            threshold = self.threshold_for(rows_total)
            with self._lock:
                self._routes.pop((uid, threshold, *((n, fparams[n]) for n in names)), None)
            matches, _ = self._matches(conn, uid, names, {"u": uid, **fparams}, threshold)
        return "exact" if matches <= threshold or index is None else "hnsw"


def library_embedders(source: PoolOrConn, user_id: uuid.UUID | str | None = None) -> list[str]:
    """The embedding_model values of the library's vectors (one user's, when given), sorted: a walk
    over the distinct values of idx_media_embeddings_model, a few index probes per model, at any size."""
    uid = None if user_id is None else as_uuid(user_id, "user_id")
    cond = "" if uid is None else " AND user_id = %(u)s"
    query = (
        "WITH RECURSIVE m(model) AS ("
        f" (SELECT embedding_model FROM media_embeddings WHERE true{cond} ORDER BY 1 LIMIT 1)"
        " UNION ALL SELECT (SELECT embedding_model FROM media_embeddings"
        f" WHERE embedding_model > m.model{cond} ORDER BY 1 LIMIT 1) FROM m WHERE m.model IS NOT NULL)"
        " SELECT model FROM m WHERE model IS NOT NULL"
    )
    with borrow(source, autocommit=True) as conn:
        return [str(r[0]) for r in conn.execute(query.encode(), {"u": uid})]


def check_embedder(source: PoolOrConn, model_name: str, user_id: uuid.UUID | str | None = None) -> None:
    """Refuse (EmbedderMismatch) when the library (or the user's part of it) holds vectors of any model
    other than `model_name`; an empty library passes."""
    models = library_embedders(source, user_id)
    if any(m != model_name for m in models):
        raise EmbedderMismatch(model_name, [m for m in models if m != model_name])


def raw_session(conn: psycopg.Connection[Any], ef_search: int | None) -> None:
    """The raw loop's session settings: `hnsw.ef_search` (when given) and the iterative scan."""
    if ef_search is not None:
        conn.execute(f"SET hnsw.ef_search = {int(ef_search)}")
    conn.execute("SET hnsw.iterative_scan = relaxed_order")


def raw_knn_sql(index: IndexKind, dim: int) -> str:
    """The plain pgvector statement a hand-written loop would send (the bench's baseline): ids only,
    the user and status as conditions, ORDER BY the index's expression, LIMIT k; no re-rank, no join."""
    rank = VectorIndex(index, dim if index == "halfvec" else None).rank_sql()
    return (
        "SELECT media_file_id FROM media_embeddings WHERE user_id = %(u)s AND is_primary"
        f" AND status = 'completed' ORDER BY {rank} LIMIT %(k)s"
    )


def raw_knn_hits_sql(index: IndexKind, dim: int) -> str:
    """`raw_knn_sql` as a hand-written loop that needs the hits, not only their ids, would send it: the
    same k nearest, joined to media_files for the columns perflab's search returns, prepared by the
    caller. The join is work the answer needs; this baseline prices it without perflab's code."""
    rank = VectorIndex(index, dim if index == "halfvec" else None).rank_sql()
    return (
        "SELECT " + _HIT_COLUMNS + " FROM (SELECT media_file_id, embedding <=> %(q)s AS distance"
        " FROM media_embeddings WHERE user_id = %(u)s AND is_primary AND status = 'completed'"
        f" ORDER BY {rank} LIMIT %(k)s) top JOIN media_files mf ON mf.id = top.media_file_id"
        " ORDER BY top.distance"
    )
