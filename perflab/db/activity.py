"""Which PostgreSQL backend works for which process: every perflab connection names its process in
`application_name` ("perflab/<pid>"), so a CPU reading on a shared server can tell the lab's own
backends from those of another process (a notebook building an index beside a benchmark)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import psycopg

APPLICATION = "perflab"


def application_name(pid: int | None = None) -> str:
    """The application_name of this process's connections: "perflab/<pid>"."""
    return f"{APPLICATION}/{os.getpid() if pid is None else pid}"


def owner_pid(application: str | None) -> int | None:
    """The process id an application_name of `application_name` carries, else None."""
    if not application or not application.startswith(APPLICATION + "/"):
        return None
    tail = application[len(APPLICATION) + 1 :]
    return int(tail) if tail.isdigit() else None


@dataclass(frozen=True)
class Backend:
    """One server process as pg_stat_activity shows it."""

    pid: int
    application: str | None
    leader_pid: int | None  # a parallel worker's leader
    backend_type: str  # "client backend", "parallel worker", "checkpointer", ...


def backends(conn: psycopg.Connection[Any]) -> list[Backend]:
    """Every server process pg_stat_activity lists (client backends, parallel workers, background)."""
    rows = conn.execute(
        "SELECT pid, application_name, leader_pid, backend_type FROM pg_stat_activity", prepare=False
    ).fetchall()
    return [Backend(int(p), a, None if lp is None else int(lp), str(t)) for p, a, lp, t in rows]
