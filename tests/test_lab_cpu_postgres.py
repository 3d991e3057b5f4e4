"""CPU attribution on the shared embedded PostgreSQL: the lab's backends, not another process's."""

from __future__ import annotations

import subprocess
import sys

import pytest

from perflab.config import Settings
from perflab.db import connect
from perflab.db.activity import application_name, owner_pid
from perflab.lab import cpu
from perflab.servers import Endpoints


def test_application_name_carries_the_process() -> None:
    assert owner_pid(application_name(4321)) == 4321
    assert owner_pid("perflab") is None  # the old, unattributed name
    assert owner_pid("perflab/x1") is None
    assert owner_pid("psql") is None
    assert owner_pid(None) is None


def test_postgres_cpu_counts_the_lab_backends_and_not_another_process(
    base_settings: Settings, servers: Endpoints
) -> None:
    if not base_settings.embedded:
        pytest.skip("the staging server's processes are on another host")
    pg = cpu.server_sources(base_settings)["postgres"]
    assert isinstance(pg, cpu.PostgresBackends)
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"]) as other:
        try:
            # the same server, seen from a process tree this test is not in
            theirs = cpu.PostgresBackends(pg.postmaster, pg.url, (other.pid,))
            with connect(base_settings, servers.database_url) as conn:
                backend = conn.info.backend_pid
                t0 = cpu.process_table()
                mine0, theirs0 = pg.local_ticks(t0), theirs.local_ticks(t0)
                conn.execute("SELECT count(*) FROM generate_series(1, 8000000)")
                t1 = cpu.process_table()
                mine1, theirs1 = pg.local_ticks(t1), theirs.local_ticks(t1)
                burned = t1[backend].own - t0[backend].own
        finally:
            other.kill()
    assert burned >= 10, burned  # the query cost the backend real CPU
    # the backend's ticks are this process's, and another tree's view of the server leaves them out
    assert (mine1 - mine0) - (theirs1 - theirs0) >= burned - 2


def test_unreadable_activity_counts_the_whole_server(base_settings: Settings, servers: Endpoints) -> None:
    if not base_settings.embedded:
        pytest.skip("the staging server's processes are on another host")
    pg = cpu.server_sources(base_settings)["postgres"]
    assert isinstance(pg, cpu.PostgresBackends)
    blind = cpu.PostgresBackends(pg.postmaster, "postgresql://postgres@127.0.0.1:1/none", (1,))
    table = cpu.process_table()
    assert blind.local_ticks(table) == cpu.tree_ticks(table, pg.postmaster)
