"""Operating the service: its keys on staging, metrics summed over workers, readiness."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from support import client as _client

from perflab.config import Settings
from perflab.errors import ConfigError
from perflab.lab.harness import ServiceProcess
from perflab.service.metrics import Readiness, readiness_of, write_serve_info
from perflab.service.secrets import check_secrets, load_secret

PERFLAB = [sys.executable, "-m", "perflab.cli"]
STAGING = {"redis_url": "redis://127.0.0.1:1/0", "database_url": "postgresql://u:pw@127.0.0.1:1/x"}


def test_serve_on_staging_without_keys_refuses_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERFLAB_")}
    env.update(PERFLAB_REDIS_URL=STAGING["redis_url"], PERFLAB_DATABASE_URL=STAGING["database_url"])
    res = subprocess.run(
        [*PERFLAB, "serve"], env=env, capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert res.returncode == 2
    line = res.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert "PERFLAB_SESSION_SECRET" in line and "PERFLAB_CDN_SIGNING_KEY" in line
    assert not list(tmp_path.iterdir())  # nothing started, no key made up


def test_staging_keys_are_required_and_never_made_up(tmp_path: Path) -> None:
    staging = Settings(home=tmp_path, **STAGING)
    with pytest.raises(ConfigError, match="PERFLAB_SESSION_SECRET and PERFLAB_CDN_SIGNING_KEY"):
        check_secrets(staging)
    with pytest.raises(ConfigError, match="PERFLAB_CDN_SIGNING_KEY"):
        load_secret(staging, "cdn", None)
    short = staging.replace(session_secret="x" * 40, cdn_signing_key="short")
    with pytest.raises(ConfigError, match="make PERFLAB_CDN_SIGNING_KEY at least 16 bytes"):
        check_secrets(short)
    good = staging.replace(session_secret="s" * 32, cdn_signing_key="c" * 32)
    check_secrets(good)
    assert load_secret(good, "session", good.session_secret) == b"s" * 32
    assert not list(tmp_path.iterdir())


def test_embedded_keys_are_made_once_private_and_shared(tmp_path: Path) -> None:
    embedded = Settings(home=tmp_path)
    check_secrets(embedded)
    first = load_secret(embedded, "session", None)
    assert len(first) == 64 and load_secret(embedded, "session", None) == first
    assert load_secret(embedded, "cdn", None) != first
    assert stat.S_IMODE((tmp_path / "session.key").stat().st_mode) == 0o600


_WORKER = """
import sys
from perflab.service.metrics import ServiceMetrics
m = ServiceMetrics()
m.mark_ready()
print("ready", flush=True)
sys.stdin.read()
m.mark_gone()
"""


def _fake_worker(folder: Path) -> subprocess.Popen[str]:
    """A process that marks itself ready in `folder` as a worker does, and leaves on EOF."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _WORKER], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_ready_only_when_every_live_worker_is(tmp_path: Path) -> None:
    write_serve_info(tmp_path, 2)
    assert readiness_of(tmp_path) == Readiness(2, 0)
    first = _fake_worker(tmp_path)
    assert readiness_of(tmp_path) == Readiness(2, 1) and not readiness_of(tmp_path).ok
    second = _fake_worker(tmp_path)
    assert readiness_of(tmp_path).ok
    second.kill()  # a worker that dies without a word is not counted
    second.wait()
    assert readiness_of(tmp_path) == Readiness(2, 1)
    first.communicate("", timeout=30)  # a clean exit takes its mark away
    assert first.returncode == 0
    assert readiness_of(tmp_path) == Readiness(2, 0)
    assert not (tmp_path / f"gauge_liveall_{first.pid}.db").exists()


def test_health_and_metrics_sum_over_workers(svc_settings: Settings, tmp_path: Path) -> None:
    """2 workers: /health's counts are every worker's, whichever worker answers."""
    on = svc_settings.replace(embedder="hashing", media_root=tmp_path / "media")
    with ServiceProcess(on, workers=2, log=tmp_path / "serve.log") as svc:
        first = httpx.get(svc.url + "/health").json()
        assert first["status"] == "ok" and first["workers"] == {"expected": 2, "ready": 2}
        user = _client(svc, "user2@example.com")
        cookie = user.cookies
        searches, pids = 0, set()
        while (len(pids) < 2 or searches < 12) and searches < 400:  # until both workers have searched
            with httpx.Client(base_url=svc.url, cookies=cookie, timeout=30) as c:
                assert c.get("/search", params={"q": f"red fox {searches % 3}", "k": 5}).status_code == 200
                searches += 1
            with httpx.Client(base_url=svc.url, timeout=30) as c:
                own = c.get("/health", params={"detailed": "true"}).json()["worker"]
                if own["cache"]["hits"] + own["cache"]["misses"] > 0:  # it looked up a session
                    pids.add(own["pid"])
        assert len(pids) == 2, "one worker served everything: nothing to sum"
        h = httpx.get(svc.url + "/health", params={"detailed": "true"}).json()
        assert sum(h["search_cache"].values()) == searches  # counted at once, in shared files
        assert h["search_cache"]["hit"] == searches - 3  # 3 distinct queries, each missed once
        assert h["worker"]["scope"] == "this worker only" and "breaker" in h["worker"]["cache"]
        for _ in range(100):  # the cache managers' counts arrive within a sync interval
            h = httpx.get(svc.url + "/health", params={"detailed": "true"}).json()
            if h["cache"]["hits"] >= searches - 3 and h["cache"]["hits"] > h["worker"]["cache"]["hits"]:
                break
            time.sleep(0.1)
        assert h["cache"]["hits"] >= searches - 3 and h["cache"]["hit_rate"] is not None
        assert h["cache"]["hits"] > h["worker"]["cache"]["hits"]  # more than the answering worker's
        text = httpx.get(svc.url + "/metrics").text
        assert f'perflab_search_cache_total{{result="hit"}} {float(searches - 3)}' in text
        assert "perflab_worker_ready" in text and 'perflab_cache_events_total{event="hits"}' in text


def test_check_and_read_reads_only_for_the_sessions_own_user(cache_manager) -> None:  # type: ignore[no-untyped-def]
    """The hot path's one round trip: session check + search-cache read. Another user's keys, a
    session of another user, or a dead session read nothing."""
    from perflab.cache import SearchCache, SessionStore

    sessions = SessionStore(cache_manager, ttl=60, absolute_ttl=600)
    cache = SearchCache(cache_manager, ttl=60)
    alice, bob = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"
    for user in (alice, bob):
        gen = cache.lookup(user, "cats").generation
        assert cache.set(user, "cats", None, [{"owner": user}], generation=gen)
    a = sessions.create(alice)
    keys_a, keys_b = list(cache.keys(alice, "cats")), list(cache.keys(bob, "cats"))
    values = sessions.check_and_read(a.id, alice, keys_a)
    assert values is not None and cache.decode(*values).results == [{"owner": alice}]
    assert sessions.check_and_read(a.id, bob, keys_b) is None  # alice's session claiming bob
    sessions.delete(a.id)
    assert sessions.check_and_read(a.id, alice, keys_a) is None
    assert sessions.check_and_read("not-a-session", alice, keys_a) is None
