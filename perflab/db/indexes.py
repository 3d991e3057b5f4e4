"""Index management: the seed's indexes built CONCURRENTLY IF NOT EXISTS, vector index rebuilds for
bulk loads, and a report of unused and missing indexes from PostgreSQL's statistics views."""

from __future__ import annotations

import contextlib
import math
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from perflab.db.pool import autocommit


@dataclass(frozen=True)
class IndexSpec:
    name: str
    table: str
    body: str  # what follows `ON table`: columns, USING, WITH, WHERE

    def create_sql(self) -> sql.Composed:
        return sql.SQL("CREATE INDEX CONCURRENTLY IF NOT EXISTS {} ON {} ").format(
            sql.Identifier(self.name), sql.Identifier(self.table)
        ) + sql.SQL(self.body)  # body is a constant of this module or a test


# The seed's createOptimalIndexes, plus the covering btree vector search counts and reads filters with.
SEED_INDEXES: tuple[IndexSpec, ...] = (
    IndexSpec("idx_users_activity", "users", "(last_login_at DESC, created_at DESC)"),
    IndexSpec("idx_media_files_user_status", "media_files", "(user_id, status, uploaded_at DESC)"),
    IndexSpec(
        "idx_processing_jobs_status",
        "processing_jobs",
        "(status, created_at DESC) WHERE status IN ('pending', 'processing')",
    ),
    IndexSpec("idx_search_history_user_created", "search_history", "(user_id, created_at DESC)"),
    IndexSpec(
        "idx_media_embeddings_filter",
        "media_embeddings",
        "(user_id, media_type, uploaded_at) INCLUDE (status) WHERE is_primary",
    ),
)


@dataclass(frozen=True)
class IndexOutcome:
    name: str
    action: str  # created | exists | rebuilt (an INVALID leftover of a failed concurrent build)
    seconds: float


def create_indexes(
    conn: psycopg.Connection[Any], specs: tuple[IndexSpec, ...] = SEED_INDEXES
) -> list[IndexOutcome]:
    """Create each index without blocking writers. CONCURRENTLY cannot run inside a transaction, so the
    connection is switched to autocommit for the call. A failed concurrent build leaves an INVALID index
    that IF NOT EXISTS would keep forever; those are dropped and built again."""
    out: list[IndexOutcome] = []
    with autocommit(conn):
        for spec in specs:
            state = conn.execute(
                "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " WHERE c.relname = %s AND c.relnamespace = current_schema()::regnamespace",
                (spec.name,),
            ).fetchone()
            action = "created" if state is None else "exists" if state[0] else "rebuilt"
            t0 = time.perf_counter()
            if action == "rebuilt":
                conn.execute(
                    sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(spec.name))
                )
            if action != "exists":
                conn.execute(spec.create_sql())
            out.append(IndexOutcome(spec.name, action, time.perf_counter() - t0))
    return out


# ---- vector indexes around a bulk load ------------------------------------------------------------


@dataclass(frozen=True)
class IndexDef:
    name: str
    definition: str  # pg_get_indexdef(): a complete CREATE INDEX statement


def vector_indexes(conn: psycopg.Connection[Any], table: str = "media_embeddings") -> list[IndexDef]:
    """The HNSW / IVFFlat indexes on `table` in the current schema, with their exact definitions."""
    rows = conn.execute(
        "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i"
        " JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam"
        " WHERE i.indrelid = to_regclass(%s) AND am.amname IN ('hnsw', 'ivfflat') ORDER BY 1",
        (table,),
    ).fetchall()
    return [IndexDef(name, definition) for name, definition in rows]


FLOAT_HNSW_INDEX = IndexDef(
    "idx_media_embeddings_hnsw_vector",
    "CREATE INDEX idx_media_embeddings_hnsw_vector ON media_embeddings USING hnsw"
    " (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 128)",
)  # a float32 HNSW index beside the schema's halfvec one (migration 0005): what `bench vector` compares


def reindex(conn: psycopg.Connection[Any], name: str) -> float:
    """REINDEX one index of the current schema; return the seconds it took."""
    t0 = time.perf_counter()
    conn.execute(sql.SQL("REINDEX INDEX {}").format(sql.Identifier(name)))
    return time.perf_counter() - t0


def index_options(conn: psycopg.Connection[Any], name: str) -> list[str] | None:
    """An index's storage options in the current schema (e.g. ["m=16", "ef_construction=128"]), or None."""
    row = conn.execute("SELECT reloptions FROM pg_class WHERE oid = to_regclass(%s)", (name,)).fetchone()
    return list(row[0]) if row and row[0] is not None else None


def maintenance_work_mem_for(rows: int, dim: int) -> str:
    """Enough memory to build an HNSW graph in RAM (vectors + ~2x m neighbour slots per element),
    so the build never falls back to the much slower on-disk phase; 64 MB to 8 GB."""
    need = rows * (dim * 4 + 600) * 1.3
    mb = min(max(math.ceil(need / 2**20), 64), 8192)
    return f"{mb}MB"


def build_indexes(
    conn: psycopg.Connection[Any],
    defs: list[IndexDef],
    *,
    maintenance_work_mem: str,
    parallel_workers: int = 1,
) -> float:
    """Run the saved definitions with room to build in memory; return the seconds it took."""
    t0 = time.perf_counter()
    with conn.transaction():
        conn.execute("SELECT set_config('maintenance_work_mem', %s, true)", (maintenance_work_mem,))
        conn.execute(
            "SELECT set_config('max_parallel_maintenance_workers', %s, true)", (str(int(parallel_workers)),)
        )
        for d in defs:
            conn.execute(sql.SQL(d.definition))  # from pg_get_indexdef
    return time.perf_counter() - t0


def drop_indexes(conn: psycopg.Connection[Any], defs: list[IndexDef]) -> None:
    with conn.transaction():
        for d in defs:
            conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(d.name)))


# ---- unused / missing index report ------------------------------------------------------------------


@dataclass(frozen=True)
class UnusedIndex:
    name: str
    table: str
    size_bytes: int
    definition: str


@dataclass(frozen=True)
class MissingIndex:
    kind: str  # seq_scans | foreign_key
    table: str
    detail: str
    suggestion: str | None


@dataclass(frozen=True)
class IndexReport:
    schema: str
    unused: list[UnusedIndex]
    missing: list[MissingIndex]


_UNUSED = """
SELECT s.indexrelname, s.relname, pg_relation_size(s.indexrelid), pg_get_indexdef(s.indexrelid)
FROM pg_stat_user_indexes s JOIN pg_index i ON i.indexrelid = s.indexrelid
WHERE s.schemaname = %s AND s.idx_scan = 0 AND NOT i.indisunique AND NOT i.indisprimary
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = s.indexrelid)
ORDER BY pg_relation_size(s.indexrelid) DESC, 1
"""

_SEQ_HEAVY = """
SELECT relname, seq_scan, seq_tup_read, coalesce(idx_scan, 0), n_live_tup
FROM pg_stat_user_tables
WHERE schemaname = %s AND seq_scan >= %s AND n_live_tup >= %s
  AND seq_tup_read / greatest(seq_scan, 1) >= %s AND seq_scan > coalesce(idx_scan, 0)
ORDER BY seq_tup_read DESC
"""

# Foreign keys whose columns are not the leading columns of any index: every delete of a parent row
# (and every join on the key) scans the child table.
_FK_UNINDEXED = """
SELECT c.conrelid::regclass::text, c.conname,
       array_agg(a.attname ORDER BY k.ord) AS cols
FROM pg_constraint c
CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
WHERE c.contype = 'f' AND c.connamespace = %s::regnamespace
  AND NOT EXISTS (
      SELECT 1 FROM pg_index i
      WHERE i.indrelid = c.conrelid
        AND (i.indkey::int2[])[0:cardinality(c.conkey) - 1] @> c.conkey
        AND (i.indkey::int2[])[0:cardinality(c.conkey) - 1] <@ c.conkey)
GROUP BY 1, 2
ORDER BY 1, 2
"""


def index_report(
    conn: psycopg.Connection[Any],
    schema: str | None = None,
    *,
    min_rows: int = 10_000,
    min_seq_scans: int = 5,
) -> IndexReport:
    """Unused indexes (never scanned since statistics were reset; constraint indexes excluded) and
    missing ones: tables mostly read by large sequential scans, and unindexed foreign keys.

    The counters are cumulative since the last statistics reset, so read this after a representative
    workload, not after a fresh load."""
    schema = schema or conn.execute("SELECT current_schema()").fetchone()[0]  # type: ignore[index]
    unused = [UnusedIndex(*r) for r in conn.execute(_UNUSED, (schema,))]
    missing: list[MissingIndex] = []
    for rel, seq, seq_read, idx, live in conn.execute(
        _SEQ_HEAVY, (schema, min_seq_scans, min_rows, min_rows)
    ):
        missing.append(
            MissingIndex(
                "seq_scans",
                rel,
                f"{seq:,} sequential scans read {seq_read // max(seq, 1):,} of {live:,} rows each on average"
                f" ({idx:,} index scans); find the filtering query with perflab's analyze()",
                None,
            )
        )
    for rel, con, cols in conn.execute(_FK_UNINDEXED, (schema,)):
        missing.append(
            MissingIndex(
                "foreign_key",
                rel,
                f"foreign key {con} ({', '.join(cols)}) has no index starting with its columns",
                sql.SQL("CREATE INDEX CONCURRENTLY ON {} ({})")
                .format(sql.Identifier(*rel.split(".")), sql.SQL(", ").join(map(sql.Identifier, cols)))
                .as_string(conn),
            )
        )
    return IndexReport(schema, unused, missing)


# ---- size and residency of a table's indexes ---------------------------------------------------------


def index_sizes(conn: psycopg.Connection[Any], table: str = "media_embeddings") -> dict[str, int]:
    """Bytes on disk per index of `table` in the current schema."""
    rows = conn.execute(
        "SELECT c.relname, pg_relation_size(c.oid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE i.indrelid = to_regclass(%s)",
        (table,),
    ).fetchall()
    return {str(name): int(size) for name, size in rows}


def table_size(conn: psycopg.Connection[Any], table: str = "media_embeddings") -> int:
    """Bytes on disk of `table` in the current schema: heap and TOAST, without its indexes."""
    row = conn.execute("SELECT pg_table_size(to_regclass(%s))", (table,)).fetchone()
    return int(row[0] or 0) if row else 0


def index_block_reads(
    conn: psycopg.Connection[Any], table: str = "media_embeddings"
) -> dict[str, tuple[int, int]]:
    """(shared-buffer hits, reads from the OS) per index of `table` since the statistics were reset;
    two readings around a phase give its buffer hit ratio. Other backends flush their counters when
    they go idle (about once a second), so read a second or so after the phase."""
    conn.execute("SELECT pg_stat_clear_snapshot()")
    rows = conn.execute(
        "SELECT indexrelname, idx_blks_hit, idx_blks_read FROM pg_statio_user_indexes"
        " WHERE relid = to_regclass(%s)",
        (table,),
    ).fetchall()
    return {str(name): (int(hit or 0), int(read or 0)) for name, hit, read in rows}


def scratch_copy(
    conn: psycopg.Connection[Any], source_schema: str, schema: str, tables: tuple[str, ...]
) -> None:
    """Copy `tables` (rows only, no indexes) from `source_schema` into a fresh `schema`, so an index
    experiment (drop, create, compare) never touches a schema other work is reading. The caller drops
    `schema` afterwards (perflab.db.drop_schema)."""
    with conn.transaction():
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        for table in tables:
            conn.execute(
                sql.SQL("CREATE TABLE {}.{} AS TABLE {}.{}").format(
                    sql.Identifier(schema),
                    sql.Identifier(table),
                    sql.Identifier(source_schema),
                    sql.Identifier(table),
                )
            )
            conn.execute(sql.SQL("ANALYZE {}.{}").format(sql.Identifier(schema), sql.Identifier(table)))


@dataclass
class BlockingProbe:
    """How long other work waits on a long load: while it is open, a thread builds and drops a tiny
    index CONCURRENTLY in a schema of its own (`<schema>_probe`) every `interval_s` on `conn` (its own,
    autocommit) and records each build's seconds. A concurrent build waits for every transaction in the
    database holding an older snapshot, so a wait far above the first one is time the load blocked
    CREATE INDEX CONCURRENTLY everywhere else in this database."""

    conn: psycopg.Connection[Any]
    schema: str
    interval_s: float = 1.0
    waits: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> BlockingProbe:
        s = sql.Identifier(f"{self.schema}_probe")
        self.conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(s))
        self.conn.execute(sql.SQL("CREATE SCHEMA {}").format(s))
        self.conn.execute(sql.SQL("CREATE TABLE {}.probe AS SELECT generate_series(1, 100) AS x").format(s))
        self._thread = threading.Thread(target=self._loop, name="blocking-probe", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        s = sql.Identifier(f"{self.schema}_probe")
        while not self._stop.is_set():
            t = time.perf_counter()
            try:
                self.conn.execute(sql.SQL("CREATE INDEX CONCURRENTLY probe_x ON {}.probe (x)").format(s))
                self.conn.execute(sql.SQL("DROP INDEX {}.probe_x").format(s))
            except psycopg.Error:
                return  # cancelled at exit
            self.waits.append(time.perf_counter() - t)
            self._stop.wait(self.interval_s)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            if self._thread.is_alive():  # still waiting on someone else's snapshot: give up the sample
                with contextlib.suppress(psycopg.Error):
                    self.conn.cancel_safe()
                self._thread.join(timeout=10)
        with contextlib.suppress(psycopg.Error):
            self.conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(f"{self.schema}_probe"))
            )

    def summary(self) -> dict[str, Any]:
        """Samples, median / max seconds per concurrent build, and the seconds spent waiting beyond
        the median (the time the load held it up)."""
        if not self.waits:
            return {"samples": 0}
        med = statistics.median(self.waits)
        return {
            "samples": len(self.waits),
            "median_s": round(med, 3),
            "max_s": round(max(self.waits), 2),
            "blocked_s": round(sum(max(0.0, w - med) for w in self.waits), 1),
        }
