"""What the server runs: PostgreSQL's version and pgvector's (installed in this database, and on disk).

One query for the service's health check, `perflab status` and the vector bench's provenance.
"""

from __future__ import annotations

from dataclasses import dataclass

from perflab.db.pool import PoolOrConn, borrow


@dataclass(frozen=True)
class ServerVersions:
    postgres: str
    pgvector: str | None  # the extension installed in this database, None when it is not
    pgvector_available: str | None  # the version CREATE EXTENSION would install, None without one
    shared_buffers: str | None = None  # memory settings, for the vector bench's residency figures
    effective_cache_size: str | None = None


def server_versions(source: PoolOrConn) -> ServerVersions:
    with borrow(source) as conn:
        row = conn.execute(
            "SELECT current_setting('server_version'),"
            " (SELECT extversion FROM pg_extension WHERE extname = 'vector'),"
            " (SELECT default_version FROM pg_available_extensions WHERE name = 'vector'),"
            " current_setting('shared_buffers'), current_setting('effective_cache_size')"
        ).fetchone()
    assert row is not None
    return ServerVersions(str(row[0]), row[1], row[2], row[3], row[4])
