"""`make lab`: JupyterLab on the notebooks, bound to loopback, with a token, and as root when it must.

This machine kind runs as root, where JupyterLab refuses to start without `--allow-root`. The token is
made here, so the URL printed first is the one that works; a port already taken is an error, not a
silent move to another port the printed URL would not name.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

from perflab.config import Settings, project_root

LOOPBACK = "127.0.0.1"


def lab_argv(notebooks: Path, port: int, token: str, *, uid: int | None = None) -> list[str]:
    """The JupyterLab command line; `--allow-root` only when running as root (uid 0)."""
    argv = [
        sys.executable, "-m", "jupyterlab", f"--notebook-dir={notebooks}", "--no-browser",
        f"--ip={LOOPBACK}", f"--port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
    ]  # fmt: skip
    if (os.getuid() if uid is None else uid) == 0:
        argv.append("--allow-root")
    return argv


def lab_url(port: int, token: str) -> str:
    return f"http://{LOOPBACK}:{port}/lab?token={token}"


def lab(settings: Settings, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="perflab lab", description="JupyterLab on notebooks/ (loopback)")
    parser.add_argument("--port", type=int, default=8888, help="port on 127.0.0.1 (default 8888)")
    args = parser.parse_args(argv)
    token = os.environ.get("PERFLAB_LAB_TOKEN") or secrets.token_hex(24)
    command = lab_argv(project_root() / "notebooks", args.port, token)
    print(f"JupyterLab: {lab_url(args.port, token)}  (loopback only; Ctrl-C stops it)", flush=True)
    os.execv(command[0], command)
    return 0  # not reached: execv replaces this process
