"""The embedded servers: started once, shared across processes, stopped by `down`; errors are one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import redis

from perflab.config import Settings
from perflab.net import free_port, wait_until
from perflab.servers import Endpoints, endpoints, probe_postgres, probe_redis, shutdown

PERFLAB = [sys.executable, "-m", "perflab.cli"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERFLAB_")}
    env.update(extra)
    return env


def test_versions(servers: Endpoints) -> None:
    pg = probe_postgres(servers.database_url)
    assert int(pg.version.split(".")[0]) >= 16
    assert tuple(int(x) for x in pg.detail["pgvector"].split(".")[:2]) >= (0, 8)
    assert probe_redis(servers.redis_url).version.startswith(("6.", "7.", "8."))


def test_second_process_sees_the_same_servers(base_settings: Settings, servers: Endpoints) -> None:
    if not servers.embedded:
        pytest.skip("staging URLs are set: nothing embedded to share")
    env = _env(PERFLAB_HOME=str(base_settings.home))
    out = subprocess.run([*PERFLAB, "status", "--json"], env=env, capture_output=True, text=True, check=True)
    status = json.loads(out.stdout)
    assert status["redis"]["url"] == servers.redis_url
    assert status["postgres"]["url"] == servers.database_url
    assert status["embedded"] is True


def test_start_share_stop_in_a_fresh_home(tmp_path: Path) -> None:
    """A home of its own: two processes start concurrently and get one pair of servers; down stops it."""
    env = _env(PERFLAB_HOME=str(tmp_path / "home"))
    env.pop("XDG_RUNTIME_DIR", None)  # as on this kind of machine: pgserver's import warns about it
    procs = [
        subprocess.Popen([*PERFLAB, "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    done = [p.communicate(timeout=180) for p in procs]
    outs = [out for out, _ in done]
    assert all(p.returncode == 0 for p in procs), done
    assert [err for _, err in done] == ["", "", ""]  # nothing but the URLs reaches the user
    assert len(set(outs)) == 1, outs  # all three saw the same URLs
    settings = Settings.from_env(env)
    ep = endpoints(settings, start=False)
    assert redis.Redis.from_url(ep.redis_url).ping()
    with psycopg.connect(ep.database_url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert sorted(shutdown(settings)) == ["postgres", "redis"]
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(ep.redis_url, socket_connect_timeout=0.5).ping()
    res = subprocess.run([*PERFLAB, "status"], env=env, capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "unreachable" in res.stderr and "Traceback" not in res.stderr


def test_wrong_url_is_one_line(tmp_path: Path) -> None:
    env = _env(
        PERFLAB_REDIS_URL="redis://127.0.0.1:1/0", PERFLAB_DATABASE_URL="postgresql://u:pw@127.0.0.1:1/x"
    )
    res = subprocess.run([*PERFLAB, "status"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 2
    line = res.stderr.strip()
    assert "\n" not in line and "redis://127.0.0.1:1/0" in line and "PERFLAB_REDIS_URL" in line
    env["PERFLAB_REDIS_URL"] = "http://nope"
    res = subprocess.run([*PERFLAB, "status"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 2 and "must start with redis://" in res.stderr and "Traceback" not in res.stderr


def test_staging_urls_start_nothing(tmp_path: Path, servers: Endpoints) -> None:
    s = Settings.from_env(
        {"PERFLAB_REDIS_URL": servers.redis_url, "PERFLAB_DATABASE_URL": servers.database_url,
         "PERFLAB_HOME": str(tmp_path / "unused")}
    )  # fmt: skip
    ep = endpoints(s)
    assert ep == Endpoints(servers.redis_url, servers.database_url, embedded=False)
    assert not (tmp_path / "unused").exists()
    assert shutdown(s) == []


def test_private_redis_stops_and_restarts(private_redis) -> None:  # type: ignore[no-untyped-def]
    client = redis.Redis.from_url(private_redis.url, socket_connect_timeout=0.5)
    assert client.ping()
    private_redis.stop()
    with pytest.raises(redis.ConnectionError):
        client.ping()
    private_redis.start()
    assert client.ping()


def test_start_returns_once_the_append_only_file_is_loaded(tmp_path: Path) -> None:
    """A restarted Redis opens its port before it has loaded its AOF, and answers LOADING meanwhile:
    start() must wait for a real PONG, or the first client gets BusyLoadingError."""
    from perflab.servers.redis_server import RedisServer

    server = RedisServer(tmp_path / "redis", free_port(), daemonize=False)
    server.start()
    client = redis.Redis.from_url(server.url)
    with client.pipeline(transaction=False) as pipe:
        for i in range(2000):
            pipe.set(f"k{i}", "v")
        pipe.execute()
    client.bgrewriteaof()  # an RDB preamble: loading it honours key-load-delay
    assert wait_until(lambda: client.info("persistence")["aof_rewrite_in_progress"] == 0, timeout=30)
    client.close()
    server.stop()
    # Redis's own test knob: 0.5 ms per key loaded, so loading takes about a second.
    slow = RedisServer(server.directory, server.port, daemonize=False, extra_args=("--key-load-delay", "500"))
    slow.start()
    try:
        client = redis.Redis.from_url(slow.url)
        assert client.dbsize() == 2000  # BusyLoadingError if start() returned on an open port
        client.close()
        slow.start()  # already running and loaded: returns at once
        assert slow.is_ready()
    finally:
        slow.stop()
    assert not slow.is_ready()
