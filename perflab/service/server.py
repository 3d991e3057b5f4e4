"""`perflab serve`: the search service on uvicorn, and `ServiceProcess`, which runs it as a child
process on a free port for tests, benchmarks and load tests (real HTTP, real workers)."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

from perflab.config import Settings
from perflab.errors import PerflabError
from perflab.servers.ports import free_port

APP_FACTORY = "perflab.service.app:create_app_from_env"


def serve(settings: Settings, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="perflab serve", description="run the search service")
    parser.add_argument("--host", default=settings.service_host)
    parser.add_argument("--port", type=int, default=settings.service_port)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    import uvicorn

    from perflab.db import connect, migrate
    from perflab.servers import endpoints

    ep = endpoints(settings)  # start the embedded servers once, before the workers race to
    _refuse_cluster_node(settings, ep.redis_url)
    with connect(settings, ep.database_url) as conn:
        migrate(conn, settings)
    prom = Path(tempfile.mkdtemp(prefix="perflab-prom-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(prom)
    # Share the cores between workers: N workers each running torch on every core oversubscribe them.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, args.workers))))
    print(f"perflab serve: http://{args.host}:{args.port} ({args.workers} workers)", flush=True)
    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    return 0


def _refuse_cluster_node(settings: Settings, url: str) -> None:
    """A plain URL at a cluster node: a one-line error now, not MOVED losses in every worker later."""
    from perflab.cache import check_not_cluster_node, make_redis

    client = make_redis(settings, url)
    try:
        check_not_cluster_node(client, url)
    finally:
        client.close()


class ServiceProcess:
    """`perflab serve` in a child process; `with ServiceProcess(...) as svc: httpx.get(svc.url + ...)`."""

    def __init__(
        self,
        *,
        workers: int = 2,
        port: int | None = None,
        env: dict[str, str] | None = None,
        log: Path | None = None,
    ) -> None:
        self.port = port or free_port()
        self.workers = workers
        self.env = {**os.environ, **(env or {})}
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> ServiceProcess:
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "perflab.cli",
                "serve",
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
            ],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT if self.log else subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PerflabError(f"perflab serve exited with {self.proc.returncode} (log: {self.log})")
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise PerflabError(f"perflab serve did not answer on {self.url} within {timeout:.0f}s")

    def worker_pids(self) -> list[int]:
        """uvicorn's worker processes: the children of the serve process that multiprocessing spawned
        (not its resource tracker, which is a child too)."""
        if self.proc is None:
            return []
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        pids = []
        for pid in map(int, out.stdout.split()):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:  # exited meanwhile
                continue
            if b"resource_tracker" not in cmdline:
                pids.append(pid)
        return pids

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
