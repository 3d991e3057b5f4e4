"""Index management: CONCURRENTLY IF NOT EXISTS, INVALID leftovers rebuilt, unused/missing report."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from perflab.config import Settings
from perflab.db import (
    SEED_INDEXES,
    IndexSpec,
    InvalidInput,
    connect,
    create_indexes,
    drop_schema,
    index_report,
    migrate,
)
from perflab.servers import Endpoints


@pytest.fixture()
def scratch(servers: Endpoints, base_settings: Settings) -> Iterator[psycopg.Connection]:
    """A schema of the test's own: these tests drop indexes and read per-schema statistics."""
    s = base_settings.replace(db_schema=f"{base_settings.db_schema}_ix{uuid.uuid4().hex[:8]}")
    with connect(s, servers.database_url) as conn:
        migrate(conn, s)
        yield conn
        drop_schema(conn, s.db_schema)


def names(conn: psycopg.Connection) -> set[str]:
    return {
        r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")
    }


def test_seed_indexes_are_created_then_left_alone(scratch) -> None:
    scratch.execute("DROP INDEX idx_users_activity, idx_media_files_user_status")
    first = {o.name: o.action for o in create_indexes(scratch)}
    assert first["idx_users_activity"] == "created" and first["idx_media_files_user_status"] == "created"
    assert first["idx_search_history_user_created"] == "exists"
    assert {s.name for s in SEED_INDEXES} <= names(scratch)
    assert {o.action for o in create_indexes(scratch)} == {"exists"}


def test_an_invalid_leftover_is_rebuilt(scratch) -> None:
    scratch.execute("CREATE TABLE dupes (v int)")
    scratch.execute("INSERT INTO dupes VALUES (1), (1), (2)")
    spec = IndexSpec("idx_dupes_v", "dupes", "(v)")
    with pytest.raises(psycopg.errors.UniqueViolation):
        scratch.execute("CREATE UNIQUE INDEX CONCURRENTLY idx_dupes_v ON dupes (v)")
    valid = scratch.execute(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = 'idx_dupes_v'::regclass"
    ).fetchone()
    assert valid == (False,)  # what a failed concurrent build leaves behind; IF NOT EXISTS would keep it
    [outcome] = create_indexes(scratch, (spec,))
    assert outcome.action == "rebuilt"
    assert scratch.execute(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = 'idx_dupes_v'::regclass"
    ).fetchone() == (True,)


def test_create_indexes_refuses_an_open_transaction(scratch) -> None:
    with scratch.transaction(), pytest.raises(InvalidInput):
        create_indexes(scratch)


def test_report_unused_and_missing(scratch) -> None:
    scratch.execute("CREATE TABLE parent (id int PRIMARY KEY)")
    scratch.execute("CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent(id), note text)")
    scratch.execute("CREATE TABLE events AS SELECT g AS id, g % 97 AS kind FROM generate_series(1, 20000) g")
    scratch.execute("CREATE INDEX idx_events_id ON events (id)")
    scratch.execute("ANALYZE events")
    for k in range(6):
        scratch.execute("SELECT count(*) FROM events WHERE kind = %s", (k,))
    scratch.execute("SELECT pg_stat_force_next_flush()")
    scratch.execute("SELECT 1")  # the flush happens at the end of the previous statement
    report = index_report(scratch)
    unused = {u.name for u in report.unused}
    assert "idx_events_id" in unused
    assert not {"child_pkey", "parent_pkey"} & unused  # constraint indexes are not "unused"
    fk = [m for m in report.missing if m.kind == "foreign_key"]
    [child] = [m for m in fk if m.table == "child"]
    assert child.suggestion == 'CREATE INDEX CONCURRENTLY ON "child" ("parent_id")'
    assert "parent" not in {m.table for m in fk}  # parent has no foreign key
    seq = [m for m in report.missing if m.kind == "seq_scans"]
    assert [m.table for m in seq] == ["events"] and "20,000" in seq[0].detail
