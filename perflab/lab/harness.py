"""One harness for everyone who needs the service running: a seeded schema, `perflab serve` in a child
process on exactly the caller's settings, and clients signed in as seeded users.

The search bench, the fault lab, the load test and the test suite all stand the service up through
here (`SeededService`, or its parts: `seed_schema`, `ServiceProcess`, `sign_in`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

from perflab.config import Settings
from perflab.db import SeedResult, connect, migrate, seed_library, seeded_email
from perflab.embed import Embedder, make_embedder
from perflab.errors import PerflabError
from perflab.net import free_port, http_ok, wait_until
from perflab.servers import endpoints
from perflab.servers.lifetime import die_with_parent, owned_env


class SignInFailed(PerflabError, RuntimeError):
    """The service refused to sign a seeded user in (unknown user, or it stayed unavailable)."""


def seed_schema(
    settings: Settings,
    *,
    media: int,
    users: int,
    seed: int,
    embedder: Embedder | None = None,
    progress: bool = False,
) -> SeedResult:
    """Migrate `settings.db_schema` and seed (or find already seeded) its library."""
    with connect(settings, endpoints(settings).database_url) as conn:
        migrate(conn, settings)
        return seed_library(
            settings, conn, media=media, users=users, seed=seed,
            embedder=embedder or make_embedder(settings, threads=os.cpu_count()), progress=progress,
        )  # fmt: skip


def sign_in(url: str, user: int | str, *, timeout: float = 10.0) -> httpx.Client:
    """An httpx client holding the session cookie of seeded user `user` (a number, or an email). A 503
    (the session store not back yet on that worker) is retried after its Retry-After, as a browser's
    retry would, for `timeout`."""
    email = seeded_email(user) if isinstance(user, int) else user
    client = httpx.Client(base_url=url, timeout=timeout)
    deadline = time.monotonic() + timeout
    r = client.post("/sessions", json={"email": email})
    while r.status_code == 503 and time.monotonic() < deadline:
        time.sleep(min(float(r.headers.get("retry-after", 1)), 1.0))
        r = client.post("/sessions", json={"email": email})
    if r.status_code != 201:
        client.close()
        raise SignInFailed(f"sign-in as {email} failed: {r.status_code} {' '.join(r.text.split())[:160]}")
    return client


def client(url: str, user: int | str | None = None, *, timeout: float = 30.0) -> httpx.Client:
    """A client of the service at `url`, signed in as seeded user `user` (number or email) unless None."""
    if user is None:
        return httpx.Client(base_url=url, timeout=timeout)
    return sign_in(url, user, timeout=timeout)


class ServiceProcess:
    """`perflab serve` in a child process on `settings` (all of them, through `Settings.to_env`);
    `with ServiceProcess(settings) as svc: httpx.get(svc.url + ...)`. `env` adds variables on top."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        workers: int = 2,
        port: int | None = None,
        env: dict[str, str] | None = None,
        log: Path | None = None,
    ) -> None:
        self.port = port or free_port()
        self.workers = workers
        self.env = {**os.environ, **(settings.to_env() if settings else {}), **(env or {})}
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> ServiceProcess:
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115
        # -P: not the working directory first on sys.path, so the service runs the perflab this
        # process's PYTHONPATH or install names (an A/B arm's checkout), not whatever sits in cwd
        command = [sys.executable, "-P", "-m", "perflab.cli", "serve", "--port", str(self.port),
                   "--workers", str(self.workers)]  # fmt: skip
        proc = self.proc = subprocess.Popen(
            command,
            env=owned_env(self.env),  # serve and its workers die with their parent
            stdout=out,
            stderr=subprocess.STDOUT if self.log else subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )
        health = self.url + "/health"
        if wait_until(
            lambda: http_ok(health), timeout=timeout, interval=0.1, alive=lambda: proc.poll() is None
        ):
            return self
        if proc.poll() is not None:
            raise PerflabError(f"perflab serve exited with {proc.returncode} (log: {self.log})")
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


class SeededService:
    """A seeded schema with the service running on it:
    `with SeededService(settings, media=400, users=4, seed=7) as svc: svc.client(1).get("/search", ...)`.
    The service embeds queries with the embedder the library was seeded with (both from `settings`)."""

    def __init__(
        self,
        settings: Settings,
        *,
        media: int,
        users: int,
        seed: int,
        workers: int = 2,
        log: Path | None = None,
        embedder: Embedder | None = None,
        progress: bool = False,
    ) -> None:
        self.settings = settings
        self.media, self.users, self.seed = media, users, seed
        self.workers = workers
        self.log = log
        self._embedder = embedder
        self._progress = progress
        self.seeded: SeedResult | None = None
        self.process: ServiceProcess | None = None

    def start(self) -> SeededService:
        self.seeded = seed_schema(
            self.settings, media=self.media, users=self.users, seed=self.seed,
            embedder=self._embedder, progress=self._progress,
        )  # fmt: skip
        self.process = ServiceProcess(self.settings, workers=self.workers, log=self.log).start()
        return self

    @property
    def url(self) -> str:
        assert self.process is not None, "start() first"
        return self.process.url

    def client(self, user: int | str | None = None, *, timeout: float = 30.0) -> httpx.Client:
        """A client of the service, signed in as seeded user `user` (number or email) unless None."""
        return client(self.url, user, timeout=timeout)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def __enter__(self) -> SeededService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
