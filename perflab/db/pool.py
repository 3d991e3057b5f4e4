"""A psycopg_pool.ConnectionPool configured like every perflab connection (schema on the search_path,
pgvector registered), and `borrow`, which lets a function accept either a pool or a connection."""

from __future__ import annotations

import contextlib
import select
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from perflab.config import Settings
from perflab.db.connect import configure, conninfo_kwargs
from perflab.db.errors import InvalidInput

# psycopg prepares a statement on a connection after it ran this many times (its default is 5). The hot
# queries pass prepare=True and are prepared on first use; this covers everything else that repeats.
PREPARE_THRESHOLD = 2

PoolOrConn = ConnectionPool | psycopg.Connection[Any]


def check_idle_connection(conn: psycopg.Connection[Any]) -> None:
    """The pools' `check`: refuse a connection the server closed while it sat idle in the pool
    (PostgreSQL restarted, or the backend was terminated), so no request is handed a dead connection.

    No round trip (unlike `ConnectionPool.check_connection`): an idle connection has nothing to read,
    so a readable socket means the server has said goodbye (a FATAL error, then end of file). A server
    that vanished without a word is still only found by the query that uses the connection.
    """
    if conn.closed or conn.pgconn.status != psycopg.pq.ConnStatus.OK:
        raise psycopg.OperationalError("the connection is closed")
    readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    if readable:
        conn.close()  # closed, the pool discards it (a connection that only failed a check goes back)
        raise psycopg.OperationalError("the server closed the connection while it was idle in the pool")


class _LifoPool(ConnectionPool):
    """A ConnectionPool that hands out the connection returned last. psycopg_pool's own order is
    first-in first-out, so serial requests rotate through every idle connection, each time waking a
    different backend with cold CPU caches: at 50k rows a serial vector search took p95 2.8 ms through a
    pool of 8 and 1.8 ms through a pool of 1. Last-in first-out keeps the work on as few backends as the
    concurrency needs; the idle ones stay at the far end, where the pool's shrinking looks first.
    (psycopg_pool 3.3 takes from the left of its deque under its lock: the newest moves there first.)"""

    def _get_ready_connection(self, timeout: float | None) -> psycopg.Connection[Any] | None:
        if len(self._pool) > 1:
            self._pool.rotate(1)
        conn: psycopg.Connection[Any] | None = super()._get_ready_connection(timeout)
        return conn


def make_pool(
    settings: Settings,
    url: str,
    *,
    min_size: int | None = None,
    max_size: int | None = None,
    open: bool = False,
    name: str = "perflab",
    check: Callable[[psycopg.Connection[Any]], None] | None = check_idle_connection,
) -> ConnectionPool:
    """Build the pool (sizes default to settings.db_pool_min/max). Nothing connects until it is opened:
    pass open=True, call `pool.open()`, or use it as a context manager. `check` vets each connection
    as it is handed out (psycopg_pool discards one that fails and, after a pause, tries another)."""
    kwargs = conninfo_kwargs(settings) | {"prepare_threshold": PREPARE_THRESHOLD}
    return _LifoPool(
        url,
        min_size=settings.db_pool_min if min_size is None else min_size,
        max_size=settings.db_pool_max if max_size is None else max_size,
        kwargs=kwargs,
        configure=configure,
        check=check,
        open=open,
        name=name,
    )


@contextlib.contextmanager
def borrow(source: PoolOrConn, *, autocommit: bool = False) -> Iterator[psycopg.Connection[Any]]:
    """A connection from a pool (returned afterwards) or the connection itself (left open).

    `autocommit`: the caller's statements each stand alone (reads), so a pooled connection runs them in
    autocommit: one round trip each, where a pooled connection otherwise sends BEGIN before the first
    and COMMIT when it goes back (each a wake-up of the client and of a backend; the search path's
    hydrate paid them on every cold search). A caller's own connection is used as given, inside its
    transaction if it has one."""
    if not isinstance(source, ConnectionPool):
        yield source
        return
    # a pooled connection is idle when handed out, as `autocommit` requires
    with source.connection() as conn, _autocommit(conn) if autocommit else contextlib.nullcontext(conn):
        yield conn


def idle(conn: psycopg.Connection[Any]) -> bool:
    """Whether `conn` is outside any transaction: a statement on it is its own (or the caller's
    autocommit's), not part of a caller's transaction that it must not commit or break."""
    return conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


@contextlib.contextmanager
def autocommit(conn: psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    """Run statements that refuse a transaction block (CREATE INDEX CONCURRENTLY, VACUUM) on `conn`,
    restoring its mode afterwards. The connection must be idle."""
    if not idle(conn):
        raise InvalidInput("this needs a connection that is not inside a transaction")
    was = conn.autocommit
    conn.autocommit = True
    try:
        yield conn
    finally:
        conn.autocommit = was


_autocommit = autocommit  # under another name for `borrow`, whose parameter shadows this one
