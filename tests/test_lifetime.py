"""What a run starts goes with it: child servers die with their parent (even a SIGKILLed one), temp
folders are removed also on failure, and `perflab status` lists whatever was left anyway."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from perflab.config import Settings
from perflab.errors import ServiceUnavailable
from perflab.lab import hitrate
from perflab.servers.lifetime import OWNER_ENV, leftover_processes
from perflab.servers.lifetime import pid_alive as _alive

ROOT = Path(__file__).resolve().parents[1]


def _parent(code: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], list[str]]:
    """A Python parent running `code`, which prints one line of JSON and then sleeps."""
    proc = subprocess.Popen(
        [sys.executable, "-c", code + "\nimport time\ntime.sleep(600)\n"],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]), **(env or {})},
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())


def _gone(pids: list[int], within: float = 60.0) -> list[int]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        alive = [p for p in pids if _alive(p)]
        if not alive:
            return []
        time.sleep(0.2)
    return alive


def test_private_redis_dies_with_its_parent(tmp_path: Path) -> None:
    proc, (pid,) = _parent(
        "import json\nfrom pathlib import Path\nfrom perflab.servers import RedisServer\n"
        "from perflab.servers.ports import free_port\n"
        f"s = RedisServer(Path({str(tmp_path)!r}), free_port(), appendonly=False, daemonize=False)\n"
        "s.start()\nprint(json.dumps([s.pid()]), flush=True)\n"
    )
    assert _alive(pid)
    proc.kill()
    proc.wait()
    assert _gone([pid]) == []


def test_service_and_its_workers_die_with_their_parent(svc_settings: Settings, tmp_path: Path) -> None:
    env = svc_settings.replace(embedder="hashing", media_root=tmp_path / "media").to_env()
    proc, pids = _parent(
        "import json\nfrom perflab.lab.harness import ServiceProcess\n"
        f"svc = ServiceProcess(workers=2, env={env!r}).start()\n"
        "print(json.dumps([svc.proc.pid, *svc.worker_pids()]), flush=True)\n"
    )
    try:
        assert len(pids) == 3 and all(_alive(p) for p in pids)
        worker_env = Path(f"/proc/{pids[1]}/environ").read_bytes().split(b"\0")
        prom = next(
            v.split(b"=", 1)[1].decode() for v in worker_env if v.startswith(b"PROMETHEUS_MULTIPROC_DIR=")
        )
        assert Path(prom).is_dir()
        proc.kill()  # SIGKILL: the parent cannot stop anything itself
        proc.wait()
        assert _gone(pids) == []
        assert not Path(prom).exists()  # serve removed its metrics folder on the way out
    finally:
        for p in pids:
            if _alive(p):
                os.kill(p, signal.SIGKILL)


def test_capacity_sweep_removes_its_temp_folder(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    stream = hitrate.zipf_stream(60, users=3, s=1.1, seed=1)
    runs = hitrate.capacity_sweep(settings, stream, ["1mb"])
    assert runs and runs[0].extra["maxmemory"] == "1mb"
    with pytest.raises(ServiceUnavailable):  # a Redis that cannot start: the folder goes all the same
        hitrate.capacity_sweep(settings, stream, ["not-a-size"])
    assert list(tmp_path.glob("perflab-hitrate-*")) == []


def test_status_lists_a_leftover_process() -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that no longer runs: the owner of the orphan below
    orphan = subprocess.Popen(["sleep", "120"], env={**os.environ, OWNER_ENV: str(gone.pid)})
    try:
        assert any(x.what.startswith(f"pid {orphan.pid}:") for x in leftover_processes())
        r = subprocess.run(
            [sys.executable, "-m", "perflab.cli", "status"],
            env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert f"left      process  pid {orphan.pid}: sleep 120  (owner pid {gone.pid} is gone)" in r.stdout
    finally:
        orphan.kill()
        orphan.wait()
