"""Opening a PostgreSQL connection the way the whole lab does: our schema first on the search_path,
pgvector's types registered. Pools use the same `configure` function."""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
import psycopg
from psycopg.types.json import set_json_loads

from perflab.config import Settings, redact_url
from perflab.db.activity import application_name
from perflab.errors import ServiceUnavailable


def conninfo_kwargs(settings: Settings) -> dict[str, Any]:
    """Connection options shared by single connections and pools. The application_name names this
    process (perflab.db.activity), so CPU readings can tell whose backend is whose."""
    return {
        "options": f"-c search_path={settings.db_schema},public",
        "application_name": application_name(),
        "connect_timeout": 5,
    }


def configure(conn: psycopg.Connection[Any]) -> None:
    """Per-connection set-up (the pool's `configure` hook): json/jsonb parsed by orjson (a search's
    rows carry jsonb renditions and colours: the stdlib parser was ~5 % of a cold search's Python
    time), and pgvector's adapters, if the type exists yet."""
    from pgvector.psycopg import register_vector

    set_json_loads(orjson.loads, conn)

    # `vector` is created by the first migration; connections opened before that skip it.
    with contextlib.suppress(psycopg.ProgrammingError):
        register_vector(conn)
    if not conn.autocommit:
        conn.commit()


def connect(settings: Settings, url: str, *, autocommit: bool = True) -> psycopg.Connection[Any]:
    """One connection, configured. A server that is not there is a ServiceUnavailable, not a traceback."""
    try:
        conn = psycopg.connect(url, autocommit=autocommit, **conninfo_kwargs(settings))
    except psycopg.OperationalError as exc:
        raise ServiceUnavailable(
            "PostgreSQL",
            redact_url(url),
            " ".join(str(exc).split())[:200],
            "check PERFLAB_DATABASE_URL, or unset both URLs and run `perflab up`",
        ) from exc
    configure(conn)
    return conn
