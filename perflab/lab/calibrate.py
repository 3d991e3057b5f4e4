"""The calibration probe: a fixed reference workload timed at the start and end of every run.

Four probes (a pure-Python loop, a numpy kernel, a loopback Redis GET loop, one fixed SQL query); each is
the median of a few repetitions, divided into a fixed reference time, so 1.0 is "as fast as the reference
machine" and 0.8 is "20 % slower". The run's machine speed index is the geometric mean over the probes
and both ends; `perflab compare` divides time figures by it, and a run whose end differs from its start
by more than DRIFT_LIMIT is said to have drifted (the machine changed speed under the run).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from typing import Any

from perflab.config import Settings

DRIFT_LIMIT = 0.10
REPEATS = 5
# Reference seconds per probe repetition (an idle 2-core lab machine of the kind the lab runs on).
REFERENCE_S = {"python_loop": 0.015, "numpy_matmul": 0.002, "redis_get": 0.008, "sql_query": 0.030}


def _python_loop() -> None:
    total = 0
    for i in range(200_000):
        total += i * i % 7
    if total < 0:
        raise AssertionError


def _timed(fn: Callable[[], Any], repeats: int = REPEATS) -> float:
    fn()  # warm-up (imports, connection, caches)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _probes(settings: Settings) -> dict[str, Callable[[], Any]]:
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((160, 160)), rng.standard_normal((160, 160))

    def numpy_matmul() -> None:
        for _ in range(4):
            a @ b

    probes: dict[str, Callable[[], Any]] = {"python_loop": _python_loop, "numpy_matmul": numpy_matmul}
    return probes


def probe(settings: Settings, *, servers: bool = True) -> dict[str, Any]:
    """Time each probe; `servers=False` skips Redis and SQL (no servers needed). A server probe that
    cannot run is left out of the index, and the reason kept."""
    probes = _probes(settings)
    closers: list[Callable[[], None]] = []
    out: dict[str, Any] = {}
    if servers:
        try:
            probes.update(_server_probes(settings, closers))
        except Exception as exc:
            out["error"] = " ".join(str(exc).split())[:200]
    try:
        seconds = {name: round(_timed(fn), 6) for name, fn in probes.items()}
    finally:
        for close in closers:
            close()
    return {"seconds": seconds, "index": speed_index(seconds), **out}


def _server_probes(settings: Settings, closers: list[Callable[[], None]]) -> dict[str, Callable[[], Any]]:
    from perflab.cache import make_redis
    from perflab.db import connect
    from perflab.db.calibration import calibration_query
    from perflab.servers.registry import endpoints

    ep = endpoints(settings)
    client = make_redis(settings, ep.redis_url)
    closers.append(client.close)
    key = f"{settings.key_prefix}calibration:probe"
    client.set(key, b"x" * 64, ex=600)
    conn = connect(settings, ep.database_url)
    closers.append(conn.close)

    def redis_get() -> None:
        for _ in range(100):
            client.get(key)

    return {"redis_get": redis_get, "sql_query": lambda: calibration_query(conn)}


def speed_index(seconds: dict[str, float]) -> float | None:
    """Geometric mean of reference / measured over the probes that ran (higher is faster)."""
    ratios = [REFERENCE_S[k] / v for k, v in seconds.items() if k in REFERENCE_S and v]
    return round(math.exp(sum(map(math.log, ratios)) / len(ratios)), 4) if ratios else None


def summarize(start: dict[str, Any], end: dict[str, Any] | None) -> dict[str, Any]:
    """The run's calibration record: both probes, the index (geometric mean), drift end / start - 1."""
    i0 = start.get("index")
    i1 = end.get("index") if end else None
    both = [i for i in (i0, i1) if i]
    index = round(math.sqrt(both[0] * both[1]), 4) if len(both) == 2 else (both[0] if both else None)
    drift = round(i1 / i0 - 1.0, 4) if i0 and i1 else None
    return {
        "start": start,
        "end": end,
        "index": index,
        "drift": drift,
        "drifted": drift is not None and abs(drift) > DRIFT_LIMIT,
        "drift_limit": DRIFT_LIMIT,
    }
