from __future__ import annotations

import threading
from pathlib import Path

import psycopg

from perflab.config import Settings
from perflab.db import connect, drop_schema, migrate
from perflab.servers import Endpoints

ALL_VERSIONS = sorted(
    p.name.removesuffix(".sql") for p in (Path(__file__).parents[1] / "perflab/db/migrations").glob("*.sql")
)


def test_migrate_twice_is_a_no_op(db_conn: psycopg.Connection, base_settings: Settings) -> None:
    again = migrate(db_conn, base_settings)
    assert again.applied == [] and again.already == ALL_VERSIONS
    tables = {
        r[0]
        for r in db_conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (base_settings.db_schema,),
        )
    }
    assert {"users", "media_files", "media_embeddings", "processing_jobs", "search_history"} <= tables


def test_embedding_dimension_comes_from_settings(servers: Endpoints, base_settings: Settings) -> None:
    s = base_settings.replace(db_schema=base_settings.db_schema + "_dim", embedding_dim=16)
    with connect(s, servers.database_url) as conn:
        try:
            migrate(conn, s)
            typ = conn.execute(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
                " WHERE attrelid = 'media_embeddings'::regclass AND attname = 'embedding'"
            ).fetchone()
            assert typ == ("vector(16)",)
        finally:
            drop_schema(conn, s.db_schema)


def test_concurrent_migrations_agree(servers: Endpoints, base_settings: Settings) -> None:
    s = base_settings.replace(db_schema=base_settings.db_schema + "_conc")
    results, errors = [], []

    def run() -> None:
        try:
            with connect(s, servers.database_url) as conn:
                results.append(migrate(conn, s).applied)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with connect(s, servers.database_url) as conn:
        drop_schema(conn, s.db_schema)
    assert not errors
    assert sorted(results) == [[], [], [], ALL_VERSIONS]


def test_seed_indexes_exist(db_conn: psycopg.Connection, base_settings: Settings) -> None:
    names = {
        r[0]
        for r in db_conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s", (base_settings.db_schema,)
        )
    }
    assert {
        "idx_users_activity",
        "idx_media_files_user_status",
        "idx_processing_jobs_status",
        "idx_search_history_user_created",
    } <= names


def test_foreign_keys_cascade(db_conn: psycopg.Connection) -> None:
    with db_conn.transaction():
        uid = db_conn.execute("INSERT INTO users (email) VALUES ('fk@example.com') RETURNING id").fetchone()[
            0
        ]
        db_conn.execute("INSERT INTO media_files (user_id, filename) VALUES (%s, 'a.jpg')", (uid,))
        db_conn.execute("DELETE FROM users WHERE id = %s", (uid,))
        assert db_conn.execute("SELECT count(*) FROM media_files WHERE user_id = %s", (uid,)).fetchone() == (
            0,
        )
