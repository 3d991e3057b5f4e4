"""CPU attribution on the shared embedded PostgreSQL: the lab's backends, not another process's."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from perflab.config import Settings
from perflab.db import connect
from perflab.db.activity import application_name, owner_pid
from perflab.lab import cpu
from perflab.net import wait_until
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


def test_a_lab_backend_that_exits_inside_a_watched_phase_keeps_its_cpu(
    base_settings: Settings, servers: Endpoints
) -> None:
    """The postmaster reaps the lab's backends with everyone else's: without the last ticks kept, a
    notebook's seeding connection that closed before the phase ended was charged to outsiders."""
    if not base_settings.embedded:
        pytest.skip("the staging server's processes are on another host")
    pg = cpu.server_sources(base_settings)["postgres"]
    assert isinstance(pg, cpu.PostgresBackends)
    before = pg.local_ticks(cpu.process_table())
    with cpu.watching({"postgres": pg}, interval_s=0.05):
        conn = connect(base_settings, servers.database_url)
        backend = conn.info.backend_pid
        t0 = cpu.process_table()[backend].own
        conn.execute("SELECT count(*) FROM generate_series(1, 8000000)")
        time.sleep(0.3)  # a few samples see the backend's ticks
        burned = cpu.process_table()[backend].own - t0
        conn.close()
        assert wait_until(lambda: backend not in cpu.process_table(), timeout=10)
    after = pg.local_ticks(cpu.process_table())
    assert burned >= 10, burned
    assert after - before >= burned - 2  # the exited backend's CPU is still the lab's


def test_an_exited_backend_never_takes_back_what_it_had_counted(
    base_settings: Settings, servers: Endpoints
) -> None:
    """Unwatched, a backend seen at the phase's start and gone at its end counts what it had then: the
    phase's delta is not made negative by it."""
    if not base_settings.embedded:
        pytest.skip("the staging server's processes are on another host")
    pg = cpu.server_sources(base_settings)["postgres"]
    assert isinstance(pg, cpu.PostgresBackends)
    conn = connect(base_settings, servers.database_url)
    backend = conn.info.backend_pid
    conn.execute("SELECT count(*) FROM generate_series(1, 8000000)")
    table = cpu.process_table()
    had = table[backend].own + table[backend].reaped
    before = pg.local_ticks(table)
    conn.close()
    assert wait_until(lambda: backend not in cpu.process_table(), timeout=10)
    assert had >= 10, had
    # what the other lab backends did meanwhile only adds; losing the backend would subtract `had`
    assert pg.local_ticks(cpu.process_table()) - before >= 0
