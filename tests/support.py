"""Helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
from psycopg_pool import ConnectionPool

from perflab.config import Settings
from perflab.db import make_pool
from perflab.lab.harness import ServiceProcess
from perflab.lab.harness import client as harness_client


def client(service: ServiceProcess, email: str | None = None) -> httpx.Client:
    """A client of the test service, signed in as the seeded user `email` unless None."""
    return harness_client(service.url, email)


def libpq_sent(settings: Settings, url: str, trace: Path, work: Callable[[ConnectionPool], None]) -> str:
    """What `work` sent the server through a pool of one connection, from libpq's own protocol trace
    (so a test checks what reached the server, not what the code meant to send)."""
    pool = make_pool(settings, url, min_size=1, max_size=1, open=True)
    with pool, trace.open("w") as out:
        with pool.connection() as traced:  # the pool's only connection: traced from here on
            traced.pgconn.trace(out.fileno())
        work(pool)
        with pool.connection() as conn:
            sent = trace.read_text()
            conn.pgconn.untrace()
            assert conn is traced and not conn.autocommit  # the pool keeps its own mode
    return sent
