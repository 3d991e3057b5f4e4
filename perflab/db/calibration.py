"""The calibration probe's fixed SQL query (perflab.lab.calibrate times it as one machine-speed probe)."""

from __future__ import annotations

from typing import Any

import psycopg

# CPU-bound in the server, touches no table: the same work on every database, every run.
CALIBRATION_SQL = "SELECT sum(i * 7 % 13) FROM generate_series(1, 200000) AS i"


def calibration_query(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(CALIBRATION_SQL).fetchone()
    return int(row[0]) if row else 0
