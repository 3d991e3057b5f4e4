"""A real caching edge for the lab: Debian's nginx with `proxy_cache` in front of the origin.

Everything nginx writes (config, cache, temp files, pid, logs) lives in `cache_dir`, and it listens on
loopback only, so several labs and test sessions can run their own edges side by side. The edge obeys
the origin's Cache-Control (immutable for hashed keys, nothing for `private` signed responses, 403s
and 404s are `no-store`) and says what it did in `X-Cache-Status` (MISS, HIT, REVALIDATED, ...).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from perflab.cdn.errors import EdgeUnavailable
from perflab.net import port_open, wait_until

_CONFIG = """\
{user}daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    proxy_cache_path {dir}/cache levels=1:2 keys_zone=media:{zone_mb}m max_size={max_size}
                     inactive=7d use_temp_path=off;
    upstream origin {{
        server {origin};
        keepalive 16;
    }}
    server {{
        listen {host}:{port};
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_cache media;
            proxy_cache_revalidate on;
            proxy_cache_lock on;
            proxy_cache_background_update on;
            proxy_cache_use_stale error timeout updating http_500 http_502 http_503 http_504;
            add_header X-Cache-Status $upstream_cache_status always;
        }}
    }}
}}
"""


def find_nginx() -> str | None:
    """The nginx binary (PATH, else Debian's /usr/sbin/nginx), or None."""
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


class NginxEdge:
    """`NginxEdge("http://127.0.0.1:8001", cache_dir, port).start()`; `.url`; `.stop()`."""

    def __init__(
        self,
        origin_url: str,
        cache_dir: Path | str,
        port: int,
        *,
        host: str = "127.0.0.1",
        max_size: str = "1g",
        nginx: str | None = None,
    ) -> None:
        self.origin = origin_url.split("://", 1)[-1].rstrip("/")
        if "/" in self.origin:
            raise ValueError(f"origin_url must be scheme://host:port without a path, got {origin_url!r}")
        self.cache_dir = Path(cache_dir).resolve()
        self.port = port
        self.host = host
        self.max_size = max_size
        self._nginx = nginx
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.cache_dir / "nginx.conf"

    def write_config(self) -> Path:
        for sub in ("cache", "logs", "tmp"):
            (self.cache_dir / sub).mkdir(parents=True, exist_ok=True)
        # As root, nginx's workers would switch to `nobody`, who cannot write a private temp dir.
        user = "user root root;\n" if os.geteuid() == 0 else ""
        self.config_path.write_text(
            _CONFIG.format(
                user=user,
                dir=self.cache_dir,
                zone_mb=10,
                max_size=self.max_size,
                origin=self.origin,
                host=self.host,
                port=self.port,
            )
        )
        return self.config_path

    def start(self, timeout: float = 10.0) -> NginxEdge:
        binary = self._nginx or find_nginx()
        if binary is None:
            raise EdgeUnavailable("nginx", self.url, "nginx is not installed", "run `make sysdeps` as root")
        conf = self.write_config()
        (self.cache_dir / "nginx.pid").unlink(missing_ok=True)
        log = self.cache_dir / "logs" / "error.log"
        self._proc = subprocess.Popen(
            [binary, "-p", str(self.cache_dir), "-c", str(conf), "-e", str(log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        pid_file = self.cache_dir / "nginx.pid"
        proc = self._proc
        # The pid file proves *our* nginx bound the port (another listener would also accept).
        if not wait_until(
            lambda: pid_file.exists() and proc.poll() is None and port_open(self.port, self.host),
            timeout=timeout,
            interval=0.02,
            alive=lambda: proc.poll() is None,
        ):
            tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
            self.stop()
            raise EdgeUnavailable("nginx", self.url, "did not start", f"see {log}: {tail.strip()}")
        return self

    def stop(self) -> None:
        """Fast shutdown (SIGTERM) of the nginx master this object started; kill after 5 s."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def __enter__(self) -> NginxEdge:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
