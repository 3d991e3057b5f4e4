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
from perflab.db.errors import DatabaseNotReady


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
        ensure_extension(conn)
        _ensure_schema(conn, schema)
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


def ensure_extension(conn: psycopg.Connection[Any], name: str = "vector") -> None:
    """Create extension `name` in schema public unless it is there. A role that may not create it, or a
    server that does not have it, is a DatabaseNotReady naming the database and the fix, not a traceback.
    """
    where = _where(conn)
    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = %s", (name,)).fetchone():
        return  # installed: nothing to create, so no privilege is needed
    if not conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = %s", (name,)).fetchone():
        raise DatabaseNotReady(
            f"the {name} extension is not installed on the PostgreSQL server of database {where}: install "
            f"it on the server (pgvector, e.g. the Debian package postgresql-<major>-pgvector), then a "
            f"superuser runs: {_create_sql(conn, name)}"
        )
    try:
        with conn.transaction():
            conn.execute(
                sql.SQL("CREATE EXTENSION IF NOT EXISTS {} SCHEMA public").format(sql.Identifier(name))
            )
    except psycopg.errors.InsufficientPrivilege as exc:
        raise DatabaseNotReady(
            f"role {conn.info.user} may not create the {name} extension in database {where}; "
            f"a superuser must run once: {_create_sql(conn, name)}"
        ) from exc


def _ensure_schema(conn: psycopg.Connection[Any], schema: str) -> None:
    if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone():
        return
    try:
        with conn.transaction():
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    except psycopg.errors.InsufficientPrivilege as exc:
        grant = sql.SQL("GRANT CREATE ON DATABASE {} TO {};").format(
            sql.Identifier(conn.info.dbname), sql.Identifier(conn.info.user)
        )
        raise DatabaseNotReady(
            f"role {conn.info.user} may not create schema {schema} in database {_where(conn)}; "
            f"a superuser runs: {grant.as_string(conn)} (or creates the schema owned by the role)"
        ) from exc


def _where(conn: psycopg.Connection[Any]) -> str:
    info = conn.info
    host = info.host if info.host and not info.host.startswith("/") else "localhost"
    return f"{info.dbname} on {host}:{info.port}"


def _create_sql(conn: psycopg.Connection[Any], name: str) -> str:
    return f"psql -d {conn.info.dbname} -c 'CREATE EXTENSION IF NOT EXISTS {name} SCHEMA public;'"


def drop_schema(conn: psycopg.Connection[Any], schema: str) -> None:
    """Remove a schema and everything in it (test teardown, `perflab db reset`)."""
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
