"""Loopback ports and waiting for a server to answer: what the lab's servers, the CDN edge and the
service harness all need, on the ground floor so each may import it (no upward import)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable


def free_port(preferred: int | None = None) -> int:
    """Return `preferred` if it is free on 127.0.0.1, else any free port the kernel hands out."""
    for candidate in ([preferred] if preferred else []) + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise OSError("no free port on 127.0.0.1")


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(
    ready: Callable[[], bool],
    *,
    timeout: float,
    interval: float = 0.05,
    alive: Callable[[], bool] | None = None,
) -> bool:
    """Poll `ready` until it is true (True), or until `timeout` seconds pass or the process being
    waited for has died (`alive` false): False. The one start-and-poll loop of the lab."""
    deadline = time.monotonic() + timeout
    while True:
        if ready():
            return True
        if (alive is not None and not alive()) or time.monotonic() > deadline:
            return False
        time.sleep(interval)


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """True when a GET of `url` answers 200 (a server's health route); any transport error is False."""
    import httpx

    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False
