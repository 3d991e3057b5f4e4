"""`make lab` / `perflab lab`: JupyterLab starts as root (this machine kind), on loopback only, and the
URL it prints first, with its token, is the one that works. Also `make help` and bare `make`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from perflab.lab.jupyter import LOOPBACK, lab_argv
from perflab.servers.ports import free_port

ROOT = Path(__file__).resolve().parents[1]


def test_allow_root_only_as_root() -> None:
    as_root = lab_argv(ROOT / "notebooks", 8888, "t", uid=0)
    as_user = lab_argv(ROOT / "notebooks", 8888, "t", uid=1000)
    assert "--allow-root" in as_root and "--allow-root" not in as_user
    for argv in (as_root, as_user):
        assert f"--ip={LOOPBACK}" in argv and "--ServerApp.port_retries=0" in argv


def test_lab_serves_the_printed_url_with_its_token(tmp_path: Path) -> None:
    pytest.importorskip("jupyterlab", reason="the lab extra")
    port, token = free_port(), "perflab-test-" + os.urandom(8).hex()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PERFLAB_LAB_TOKEN": token,
        "JUPYTER_RUNTIME_DIR": str(tmp_path),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "perflab.cli", "lab", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        url = f"http://{LOOPBACK}:{port}/lab?token={token}"
        assert url in first, first
        deadline = time.monotonic() + 120
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status = httpx.get(
                    f"http://{LOOPBACK}:{port}/api/status", params={"token": token}
                ).status_code
            except httpx.HTTPError:
                status = None
            if status == 200:
                break
            time.sleep(0.5)
        assert status == 200, f"exited {proc.poll()}: {proc.stdout.read() if proc.poll() is not None else ''}"
        assert httpx.get(f"http://{LOOPBACK}:{port}/api/status").status_code == 403  # the token is needed
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_make_help_and_bare_make_runs_the_report() -> None:
    r = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    targets = {line.split()[0] for line in r.stdout.splitlines()[1:] if line.strip()}
    assert {"report", "test", "lab", "help", "status", "lint"} <= targets
    db = subprocess.run(["make", "-np", "help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert ".DEFAULT_GOAL := report" in db.stdout.splitlines()
