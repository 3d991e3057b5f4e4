"""Staging as a new user meets it: a database reached as a non-superuser role. `perflab db migrate` and
`perflab serve` name what is missing in one line (the database and the SQL a superuser runs), and work
once it is done. The role and its database are real, created on the embedded PostgreSQL and dropped."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from perflab.db.errors import DatabaseNotReady
from perflab.db.migrate import ensure_extension
from perflab.servers import Endpoints
from perflab.servers.ports import free_port
from perflab.servers.probe import probe_postgres

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "np-" + uuid.uuid4().hex[:12]


@pytest.fixture()
def restricted_db(servers: Endpoints) -> Iterator[tuple[str, str]]:
    """(superuser URL, role URL) of a fresh database that a fresh LOGIN role may connect to, no more."""
    name = f"perflab_np_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(servers.database_url, autocommit=True) as su:
        su.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name), sql.Literal(PASSWORD))
        )
        su.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    parts = urlsplit(servers.database_url)
    host = parts.netloc.rsplit("@", 1)[-1]
    su_url = urlunsplit(parts._replace(path=f"/{name}"))
    role_url = urlunsplit(parts._replace(netloc=f"{name}:{PASSWORD}@{host}", path=f"/{name}"))
    try:
        yield su_url, role_url
    finally:
        with psycopg.connect(servers.database_url, autocommit=True) as su:
            su.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            su.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def _perflab(role_url: str, redis_url: str, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERFLAB_")}
    env.update(PYTHONPATH=str(ROOT), PERFLAB_DATABASE_URL=role_url, PERFLAB_REDIS_URL=redis_url,
               PERFLAB_DB_SCHEMA="perflab",
               # staging's signing keys, so that `serve` gets as far as the database
               PERFLAB_SESSION_SECRET=uuid.uuid4().hex, PERFLAB_CDN_SIGNING_KEY=uuid.uuid4().hex)  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "perflab.cli", *argv], env=env, capture_output=True, text=True, timeout=180
    )


def _one_error_line(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr and PASSWORD not in r.stderr + r.stdout
    errors = [line for line in r.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1, r.stderr
    return errors[0]


def test_non_superuser_migrate_names_what_is_missing_then_works(
    restricted_db: tuple[str, str], servers: Endpoints
) -> None:
    su_url, role_url = restricted_db
    db = urlsplit(role_url).path.lstrip("/")
    role = urlsplit(role_url).username

    line = _one_error_line(_perflab(role_url, servers.redis_url, "db", "migrate"))
    assert f"role {role} may not create the vector extension in database {db}" in line
    assert f"psql -d {db} -c 'CREATE EXTENSION IF NOT EXISTS vector SCHEMA public;'" in line
    line = _one_error_line(_perflab(role_url, servers.redis_url, "serve", "--port", str(free_port())))
    assert "CREATE EXTENSION IF NOT EXISTS vector SCHEMA public;" in line

    with psycopg.connect(su_url, autocommit=True) as su:  # what the line told the superuser to run
        su.execute("CREATE EXTENSION IF NOT EXISTS vector SCHEMA public;")
    line = _one_error_line(_perflab(role_url, servers.redis_url, "db", "migrate"))
    assert f"role {role} may not create schema perflab in database {db}" in line
    grant = line.split("a superuser runs: ", 1)[1].split(";", 1)[0] + ";"
    assert grant == f'GRANT CREATE ON DATABASE "{db}" TO "{role}";'

    with psycopg.connect(su_url, autocommit=True) as su:
        su.execute(grant)
    r = _perflab(role_url, servers.redis_url, "db", "migrate")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "schema perflab: applied 0001_init" in r.stdout


def test_extension_missing_from_the_server_says_install_it(db_conn: psycopg.Connection) -> None:
    with pytest.raises(
        DatabaseNotReady, match=r"perflab_no_such_ext extension is not installed on the PostgreSQL server"
    ):
        ensure_extension(db_conn, "perflab_no_such_ext")


def test_status_tells_installed_from_available(restricted_db: tuple[str, str], servers: Endpoints) -> None:
    su_url, _ = restricted_db
    available = probe_postgres(su_url)
    assert available.detail["pgvector_installed"] == ""
    assert available.detail["pgvector_available"]
    assert (
        available.detail["pgvector"] == f"available {available.detail['pgvector_available']}, not installed"
    )
    with psycopg.connect(su_url, autocommit=True) as su:
        su.execute("CREATE EXTENSION vector SCHEMA public")
    installed = probe_postgres(su_url)
    assert installed.detail["pgvector"] == installed.detail["pgvector_installed"] != ""
