"""The search service end to end with a Redis Cluster as its Redis: sign-in, search, upload,
invalidation, and `perflab loadtest` against it."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import httpx
import pytest
from conftest import raw_redis
from PIL import Image

from perflab.config import Settings
from perflab.lab.commands import loadtest
from perflab.lab.harness import ServiceProcess
from perflab.servers import Endpoints


def _photo() -> bytes:
    img = Image.radial_gradient("L").resize((512, 384)).convert("RGB")
    img.paste((30, 200, 90), (40, 40, 220, 160))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def test_sign_in_search_upload_and_invalidation_on_a_cluster(
    cluster_service: ServiceProcess, cluster_servers: Endpoints, svc_settings: Settings
) -> None:
    health = httpx.get(cluster_service.url + "/health", params={"detailed": "true"}, timeout=30).json()
    assert health["status"] == "ok"
    clients = []
    for user in (1, 2, 3, 4):  # four users: their session keys land on different masters
        c = httpx.Client(base_url=cluster_service.url, timeout=30)
        assert c.post("/sessions", json={"email": f"user{user}@example.com"}).status_code == 201
        clients.append(c)
    query = {"q": "teal lantern over a quiet harbour", "k": 5}
    for c in clients:
        assert c.get("/search", params=query).status_code == 200
    c = clients[2]
    assert c.get("/search", params=query).json()["cache_hit"] is True
    r = c.post(
        "/media",
        files={"file": ("lantern.jpg", _photo(), "image/jpeg")},
        data={"caption": "teal lantern over a quiet harbour", "tags": "lantern,harbour"},
    )
    assert r.status_code == 201, r.text
    after = c.get("/search", params=query).json()
    assert after["cache_hit"] is False  # the upload invalidated this user's results, on whichever master
    assert after["results"][0]["id"] == r.json()["id"]
    assert clients[0].get("/search", params=query).json()["cache_hit"] is True  # others' entries stay
    assert c.delete("/sessions").status_code == 204
    assert c.get("/search", params=query).status_code == 401
    raw = raw_redis(cluster_servers.redis_url)
    sessions = list(raw.scan_iter(match=f"{svc_settings.key_prefix}:*:sess:*", count=1000))
    raw.close()
    assert len(sessions) >= 3  # the other three users' sessions live in the cluster


def test_perflab_loadtest_on_a_service_whose_redis_is_the_cluster_named_in_config(
    svc_settings: Settings,
    cluster_servers: Endpoints,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`perflab loadtest` as a user runs it: its own local `perflab serve`, on settings that name the
    embedded cluster (PERFLAB_REDIS_CLUSTER=1); every Locust request must succeed."""
    on = svc_settings.replace(
        embedder="hashing",
        media_root=tmp_path / "media",
        redis_cluster=True,
        key_prefix="ltc" + uuid.uuid4().hex[:6],
    )
    argv = ["--users", "3", "--duration", "5s", "--seeded-users", "4", "--serve-workers", "1",
            "--p95-slo-ms", "10000", "--out", str(tmp_path / "run")]  # fmt: skip
    code = loadtest(on, argv)
    summary = json.loads((tmp_path / "run" / "locust_summary.json").read_text())
    assert code == 0, (tmp_path / "run" / "locust.log").read_text()[-2000:]
    assert summary["requests"] > 0 and summary["failures"] == 0 and summary["breaches"] == []
    assert all(row["requests"] > 0 for row in summary["scenarios"].values()), summary["scenarios"]
    assert "failures 0" in capsys.readouterr().out
    raw = raw_redis(cluster_servers.redis_url)
    try:  # the sign-ins were sessions in the cluster, spread over its masters by user
        sessions = list(raw.scan_iter(match=f"{on.key_prefix}:*:sess:*", count=1000))
        assert sessions
    finally:
        for key in raw.scan_iter(match=f"{on.key_prefix}:*", count=1000):
            raw.unlink(key)
        raw.close()
