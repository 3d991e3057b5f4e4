"""The search history: one row per search, written in batches (the service's history writer)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from perflab.db.pool import PoolOrConn, borrow


@dataclass(frozen=True)
class HistoryEntry:
    """One search as the history keeps it."""

    user_id: str
    query: str
    filters: dict[str, Any]
    result_count: int
    latency_ms: float
    cache_hit: bool


def insert_history(source: PoolOrConn, rows: Sequence[HistoryEntry]) -> int:
    """Write the rows in one batch (one transaction); return how many."""
    if not rows:
        return 0
    # COPY, not executemany: one stream for the batch instead of a Bind/Execute per row.
    with (
        borrow(source) as conn,
        conn.cursor() as cur,
        cur.copy(
            "COPY search_history (user_id, query, filters, result_count, latency_ms, cache_hit) FROM STDIN"
        ) as copy,
    ):
        for r in rows:
            copy.write_row(
                (r.user_id, r.query, orjson.dumps(r.filters).decode(), r.result_count, r.latency_ms,
                 r.cache_hit)
            )  # fmt: skip
    return len(rows)
