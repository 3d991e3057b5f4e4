"""CPU time per process, read from the operating system (/proc/<pid>/stat: utime + stime).

A busy neighbour moves latency far more than the CPU a request costs, so CPU ms per request is the
figure regressions are judged on first. Each lab process group is a `Source`:
- `ProcessTree(pid)`: a process and all its descendants (the service's uvicorn workers, PostgreSQL's
  backends). Children that exit inside a phase are not lost: the kernel adds their time to the parent's
  cutime/cstime when it reaps them, and those are counted too.
- `OwnProcess(pid)`: one process without its children (the load client: this process, whose children
  include the service it measures).
- `CounterSource(fn)`: a cumulative CPU-seconds counter from elsewhere (staging Redis: `INFO cpu`).
- `PostgresBackends(postmaster, url, roots)`: the embedded PostgreSQL, but only the backends that
  work for the processes of `roots` (by application_name): another client of the shared server is
  an outsider.
- `UNKNOWN`: a server whose CPU cannot be read (staging PostgreSQL); its figure is None.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perflab.config import Settings


@dataclass(frozen=True)
class _Proc:
    ppid: int
    own: int  # utime + stime, clock ticks
    reaped: int  # cutime + cstime: waited-for children's ticks


ProcessTable = dict[int, _Proc]


def ticks_per_s() -> int:
    return int(os.sysconf("SC_CLK_TCK"))


def _parse_stat(text: str) -> _Proc:
    # comm (field 2) may hold spaces and parentheses: split after the last ')'.
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state): ppid is field 4, utime 14, stime 15, cutime 16, cstime 17.
    return _Proc(int(rest[1]), int(rest[11]) + int(rest[12]), int(rest[13]) + int(rest[14]))


def process_table(proc: Path = Path("/proc")) -> ProcessTable:
    """Every live process's parent and CPU ticks, in one pass over /proc."""
    table: ProcessTable = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            table[int(entry.name)] = _parse_stat((entry / "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue  # exited meanwhile, or not readable
    return table


def subtree(table: ProcessTable, root: int, exclude: int | None = None) -> set[int]:
    """`root` and every live descendant; without the subtree of `exclude`."""
    children: dict[int, list[int]] = {}
    for pid, p in table.items():
        children.setdefault(p.ppid, []).append(pid)
    stack, seen = [root], set()
    while stack:
        pid = stack.pop()
        if pid in seen or pid not in table or pid == exclude:
            continue
        seen.add(pid)
        stack.extend(children.get(pid, ()))
    return seen


def tree_ticks(table: ProcessTable, root: int, exclude: int | None = None) -> int:
    """Ticks of `root` and every live descendant, plus what each of them reaped; without the subtree
    of `exclude` (e.g. the load client's tree without the service it started)."""
    return sum(table[pid].own + table[pid].reaped for pid in subtree(table, root, exclude))


@dataclass(frozen=True)
class ProcessTree:
    pid: int
    exclude: int | None = None

    def seconds(self, table: ProcessTable) -> float | None:
        return tree_ticks(table, self.pid, self.exclude) / ticks_per_s() if self.pid in table else None

    def local_ticks(self, table: ProcessTable) -> int:
        return tree_ticks(table, self.pid, self.exclude)

    def sample(self) -> None:
        """Nothing to keep: the count is cumulative in the kernel."""


@dataclass(frozen=True)
class OwnProcess:
    pid: int

    def seconds(self, table: ProcessTable) -> float | None:
        p = table.get(self.pid)
        return p.own / ticks_per_s() if p else None

    def local_ticks(self, table: ProcessTable) -> int:
        p = table.get(self.pid)
        return p.own if p else 0

    def sample(self) -> None:
        """Nothing to keep: the count is cumulative in the kernel."""


@dataclass(frozen=True)
class CounterSource:
    read: Callable[[], float | None]

    def seconds(self, table: ProcessTable) -> float | None:
        try:
            return self.read()
        except Exception:  # a counter on a remote server that stopped answering: unknown, not fatal
            return None

    def local_ticks(self, table: ProcessTable) -> int:
        return 0  # runs elsewhere: not part of this machine's lab share

    def sample(self) -> None:
        """Nothing to keep: the count is cumulative in the kernel."""


@dataclass(frozen=True)
class _Unknown:
    def seconds(self, table: ProcessTable) -> float | None:
        return None

    def local_ticks(self, table: ProcessTable) -> int:
        return 0

    def sample(self) -> None:
        pass


UNKNOWN = _Unknown()


class PostgresBackends:
    """The embedded PostgreSQL's CPU that works for the lab: the postmaster, its background processes
    (checkpointer, WAL writer, autovacuum: shared, as the lab's writes cause them), and the backends
    whose connection names (perflab.db.activity) a process of `roots`' trees, with their parallel
    workers. The backends of anyone else on the shared server (another notebook's index build, a
    second bench) are outsiders: in the noise record, not in this CPU. When pg_stat_activity cannot
    be read (the server is down in a fault phase), the whole server tree counts, as before.

    The postmaster reaps everyone's backends alike, so a lab backend that exits takes its CPU with it.
    The count is kept cumulative instead: each lab backend's ticks when last seen are kept, and move to
    `_gone` when it exits. Seen only at reads, a backend that exits between two reads counts what it
    had at the first; `watching` samples during a long phase (a notebook's seeding, COPY and index
    builds), so all but its last interval counts."""

    def __init__(self, postmaster: int, url: str, roots: tuple[int, ...]) -> None:
        self.postmaster = postmaster
        self.url = url
        self.roots = roots
        self._last: tuple[ProcessTable, int] | None = None  # `read` asks seconds and local_ticks of one table
        self._seen: dict[int, int] = {}  # live lab backend -> its ticks when last seen counting
        self._gone = 0  # ticks of lab backends that have exited since the first read
        self._lock = threading.Lock()

    def local_ticks(self, table: ProcessTable) -> int:
        with self._lock:  # whole: the sampler's read and a phase's must not interleave their updates
            if self._last is None or self._last[0] is not table:
                self._last = (table, self._ticks(table))
            return self._last[1]

    def sample(self) -> None:
        """Note the lab backends' ticks now (what `watching` calls every interval)."""
        self.local_ticks(process_table())

    def _ticks(self, table: ProcessTable) -> int:
        from perflab.db.activity import owner_pid

        if self.postmaster not in table:
            return 0
        listed = _activity(self.url)
        if listed is None:
            return tree_ticks(table, self.postmaster)
        lab: set[int] = set()
        for root in self.roots:
            lab |= subtree(table, root)
        by_pid = {b.pid: b for b in listed}
        ours = {
            b.pid for b in listed if b.backend_type == "client backend" and owner_pid(b.application) in lab
        }

        def counts(pid: int) -> bool:
            b = by_pid.get(pid)
            if b is None:
                return True  # not a backend pg_stat_activity lists (the logger): the server's own
            if b.backend_type == "client backend":
                return pid in ours
            if b.leader_pid is not None and b.leader_pid != pid:
                return b.leader_pid in ours  # a parallel worker counts with its leader
            return True  # background: shared infrastructure

        for pid in subtree(table, self.postmaster) - {self.postmaster}:
            if counts(pid):
                ticks = table[pid].own + table[pid].reaped
                if ticks > self._seen.get(pid, -1):
                    self._seen[pid] = ticks
        for pid in [p for p in self._seen if p not in table]:
            self._gone += self._seen.pop(pid)  # exited since last seen: keep what it had used
        # a backend that stopped counting (its owner left the lab) stays at its last counted ticks
        return table[self.postmaster].own + sum(self._seen.values()) + self._gone

    def seconds(self, table: ProcessTable) -> float | None:
        return self.local_ticks(table) / ticks_per_s() if self.postmaster in table else None


# One connection per server URL for reading pg_stat_activity, shared by every PostgresBackends of the
# process (sources are built per phase; a connection each would churn backends inside the phases).
_ACTIVITY: dict[str, Any] = {}
_ACTIVITY_LOCK = threading.Lock()


def _activity(url: str) -> list[Any] | None:
    """pg_stat_activity of the server at `url`, or None when it cannot be read."""
    import psycopg

    from perflab.db.activity import application_name, backends

    with _ACTIVITY_LOCK:
        key = f"{os.getpid()} {url}"  # a forked child opens its own
        conn = _ACTIVITY.get(key)
        try:
            if conn is None or conn.closed:
                conn = psycopg.connect(
                    url, autocommit=True, connect_timeout=2, application_name=application_name()
                )
                _ACTIVITY[key] = conn
            return backends(conn)
        except psycopg.Error:
            if conn is not None:
                conn.close()
            _ACTIVITY.pop(key, None)
            return None


Source = ProcessTree | OwnProcess | CounterSource | PostgresBackends | _Unknown


@contextmanager
def watching(sources: Mapping[str, Source], interval_s: float = 1.0) -> Iterator[None]:
    """Call every source's `sample()` each `interval_s` in a background thread, for a phase long
    enough that processes start and exit inside it (a notebook's seeding, COPY and index builds):
    a source that loses what exited processes used (PostgresBackends) keeps it that way."""
    tracked = list(sources.values())
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval_s):
            for source in tracked:
                source.sample()

    thread = threading.Thread(target=loop, name="perflab-cpu-watch", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def redis_cpu_seconds(client: Any) -> float | None:
    """Redis's own CPU seconds (user + sys, main thread and children) from `INFO cpu`."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def server_sources(settings: Settings, roots: tuple[int, ...] = ()) -> dict[str, Source]:
    """Redis and PostgreSQL as CPU sources: their PIDs when embedded, PostgreSQL's counted for the
    backends of `roots`' process trees (default: this process's); on staging Redis `INFO cpu`, and
    PostgreSQL unknown (its processes are on another host). Redis is one process shared by every
    client: another process's load on it is counted as the lab's."""
    if settings.embedded:
        from perflab.servers.registry import embedded_servers, endpoints

        redis_server, pg_server = embedded_servers(settings)
        rpid, ppid = redis_server.pid(), pg_server.pid()
        pg: Source = UNKNOWN
        if ppid:
            pg = PostgresBackends(ppid, endpoints(settings).database_url, roots or (os.getpid(),))
        return {"redis": ProcessTree(rpid) if rpid else UNKNOWN, "postgres": pg}
    from perflab.cache import make_redis
    from perflab.servers.registry import endpoints

    client = make_redis(settings.replace(redis_socket_timeout=2.0), endpoints(settings).redis_url)
    return {"redis": CounterSource(lambda: redis_cpu_seconds(client)), "postgres": UNKNOWN}


def lab_sources(
    settings: Settings, server_pid: int | None = None, *, client_tree: bool = False
) -> dict[str, Source]:
    """The standard split: server (the service tree), client (this process; with `client_tree`, its
    whole tree but the service, e.g. Locust workers), redis, postgres."""
    client: Source = ProcessTree(os.getpid(), server_pid) if client_tree else OwnProcess(os.getpid())
    roots = (os.getpid(),) if server_pid is None else (os.getpid(), server_pid)
    return {
        "server": ProcessTree(server_pid) if server_pid else UNKNOWN,
        "client": client,
        **server_sources(settings, roots),
    }


@dataclass(frozen=True)
class CpuReading:
    seconds: dict[str, float | None]
    lab_ticks: int  # ticks of every local lab source, for the noise record


def read(sources: Mapping[str, Source], table: ProcessTable | None = None) -> CpuReading:
    table = process_table() if table is None else table
    return CpuReading(
        {name: src.seconds(table) for name, src in sources.items()},
        sum(src.local_ticks(table) for src in sources.values()),
    )


def per_request_ms(start: CpuReading, end: CpuReading, requests: int) -> dict[str, float | None]:
    """CPU ms per request of each source over a phase; None when unreadable at either end."""
    out: dict[str, float | None] = {}
    for name, s0 in start.seconds.items():
        s1 = end.seconds.get(name)
        if s0 is None or s1 is None or requests <= 0:
            out[name] = None
        else:
            out[name] = round(max(s1 - s0, 0.0) * 1000.0 / requests, 4)
    return out


def settle(source: Source, *, window_s: float = 0.2, busy_share: float = 0.1, timeout_s: float = 3.0) -> bool:
    """Wait until `source` is idle: under `busy_share` of one core over a `window_s` window. A trial
    then starts on a service that has finished what the work before it left behind (batched history
    writes, cache fills, garbage) instead of paying for it. True when idle (or when the source cannot
    be read: nothing to wait for), False when still busy at `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        before = source.seconds(process_table())
        time.sleep(window_s)
        after = source.seconds(process_table())
        if before is None or after is None or after - before < busy_share * window_s:
            return True
        if time.monotonic() > deadline:
            return False
