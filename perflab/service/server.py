"""`perflab serve`: the search service on uvicorn workers. Tests, benchmarks and load tests run it as a
child process through the lab's harness (`perflab.lab.harness.ServiceProcess`)."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from perflab.config import Settings
from perflab.service.secrets import check_secrets

APP_FACTORY = "perflab.service.app:create_app_from_env"


def serve(settings: Settings, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="perflab serve", description="run the search service")
    parser.add_argument("--host", default=settings.service_host)
    parser.add_argument("--port", type=int, default=settings.service_port)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    check_secrets(settings)  # staging without its keys: one line, before anything starts
    import uvicorn

    from perflab.db import connect, migrate
    from perflab.servers import endpoints

    ep = endpoints(settings)  # start the embedded servers once, before the workers race to
    _refuse_cluster_node(settings, ep.redis_url)
    with connect(settings, ep.database_url) as conn:
        migrate(conn, settings)
    prom = Path(tempfile.mkdtemp(prefix="perflab-prom-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(prom)
    # Only now: prometheus-client picks in-memory or shared-file values once, when first imported.
    from perflab.service.metrics import write_serve_info

    write_serve_info(prom, args.workers)
    # Share the cores between workers: N workers each running torch on every core oversubscribe them.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, args.workers))))
    print(f"perflab serve: http://{args.host}:{args.port} ({args.workers} workers) starting", flush=True)
    threading.Thread(target=_report_ready, args=(prom, args.workers), daemon=True).start()
    try:
        uvicorn.run(
            APP_FACTORY,
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level=args.log_level,
            access_log=False,
            timeout_graceful_shutdown=5,
            # Named, not "auto": a missing uvloop/httptools (uvicorn[standard]) fails here rather than
            # quietly doubling the CPU each request costs in the asyncio/h11 fallbacks.
            loop="uvloop",
            http="httptools",
        )
    finally:  # issue 14.10: the run's metrics folder goes with it (also on SIGTERM, which uvicorn handles)
        shutil.rmtree(prom, ignore_errors=True)
    return 0


def _refuse_cluster_node(settings: Settings, url: str) -> None:
    """A plain URL at a cluster node: a one-line error now, not MOVED losses in every worker later."""
    from perflab.cache import check_not_cluster_node, make_redis

    client = make_redis(settings, url)
    try:
        check_not_cluster_node(client, url)
    finally:
        client.close()


def _report_ready(prom: Path, workers: int) -> None:
    """One line once every worker has loaded and warmed its embedder (/health is 503 until then)."""
    from perflab.service.metrics import wait_ready

    t0 = time.monotonic()
    state = wait_ready(prom, timeout_s=3600)
    if state.ok:
        print(f"perflab serve: ready, {workers} workers warm in {time.monotonic() - t0:.1f}s", flush=True)
