"""Child servers die with the process that started them, and whatever is left can be listed.

A `perflab serve` or a private Redis started for a run is a child that must not outlive the run: a
report or a bench killed from outside (a timeout) used to leave them running, orphaned. Each such
child gets the parent-death signal (Linux `PR_SET_PDEATHSIG`: SIGTERM when its parent dies) and
carries its owner's pid in its environment, so `perflab status` can list any that outlived it anyway
(started by an older perflab, or killed with SIGKILL before it could stop its own children).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

OWNER_ENV = "PERFLAB_OWNER_PID"
# Temp folders a run creates (system temp dir); a run removes its own, also on failure and Ctrl-C.
TEMP_PREFIXES = ("perflab-hitrate-", "perflab-prom-", "perflab-faults-", "perflab-cdn-")
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None]:
    """A `preexec_fn` for subprocess.Popen: the child gets SIGTERM when this process dies.

    The signal fires when the *thread* that started the child exits, so start children from a
    thread that lives as long as they should (the main thread, in perflab)."""
    parent = os.getpid()

    def preexec() -> None:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def owned_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's) marked with this process as the owner of the child."""
    return {**(os.environ if env is None else env), OWNER_ENV: str(os.getpid())}


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A temp folder that is removed afterwards, whatever happens (exception, Ctrl-C, SIGTERM through
    the CLI's handler)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass(frozen=True)
class Leftover:
    kind: str  # "process" | "temp"
    what: str  # pid and command line, or the folder
    detail: str  # whose it was, or its size and age


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie does not: it is dead, only not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is dead, only not yet reaped
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def leftover_processes() -> list[Leftover]:
    """Processes started for a perflab run whose owner is gone."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        owner = next((v.split(b"=", 1)[1] for v in env if v.startswith(OWNER_ENV.encode() + b"=")), None)
        if owner is None or not owner.isdigit() or pid_alive(int(owner)) or not pid_alive(int(entry.name)):
            continue
        out.append(
            Leftover("process", f"pid {entry.name}: {cmdline[:160]}", f"owner pid {int(owner)} is gone")
        )
    return out


def leftover_temp_dirs(root: Path | None = None) -> list[Leftover]:
    """perflab temp folders in the system temp directory, one line per kind (a report that is running
    now has some of its own)."""
    root = root or Path(tempfile.gettempdir())
    out = []
    for prefix in TEMP_PREFIXES:
        paths = sorted(root.glob(prefix + "*"))
        if not paths:
            continue
        size, newest = 0, 0.0
        for path in paths:
            with contextlib.suppress(OSError):
                size += sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
                newest = max(newest, path.stat().st_mtime)
        age_min = (time.time() - newest) / 60 if newest else 0.0
        out.append(
            Leftover(
                "temp",
                f"{root / prefix}*",
                f"{len(paths)} folders, {size / 2**20:.1f} MB, newest {age_min:.0f} min old",
            )
        )
    return out


def leftovers() -> list[Leftover]:
    return leftover_processes() + leftover_temp_dirs()
