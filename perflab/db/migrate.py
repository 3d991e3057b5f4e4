"""Idempotent, versioned schema migrations.

Each file in migrations/ runs once per schema, in order, inside one transaction holding an advisory
lock, so several processes may call `migrate` at once and the schema ends up the same.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg
from psycopg import sql

from perflab.config import Settings


@dataclass(frozen=True)
class MigrationResult:
    schema: str
    applied: list[str]
    already: list[str]


def _migrations() -> list[tuple[str, str]]:
    folder = resources.files("perflab.db") / "migrations"
    files = sorted((p for p in folder.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name)
    return [(p.name.removesuffix(".sql"), p.read_text()) for p in files]


def migrate(conn: psycopg.Connection[Any], settings: Settings) -> MigrationResult:
    """Bring `settings.db_schema` up to date. Safe to run twice, and concurrently."""
    schema = settings.db_schema
    lock_id = zlib.crc32(f"perflab-migrate:{schema}".encode())
    applied: list[str] = []
    already: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_id,))
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector SCHEMA public")
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("SET LOCAL search_path TO {}, public").format(sql.Identifier(schema)))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
        for version, text in _migrations():
            if version in done:
                already.append(version)
                continue
            conn.execute(text.replace("{dim}", str(int(settings.embedding_dim))).encode())
            conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
            applied.append(version)
    from perflab.db.connect import configure

    configure(conn)
    return MigrationResult(schema, applied, already)


def drop_schema(conn: psycopg.Connection[Any], schema: str) -> None:
    """Remove a schema and everything in it (test teardown, `perflab db reset`)."""
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
