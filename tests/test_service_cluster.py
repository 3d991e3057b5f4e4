"""The search service end to end with a Redis Cluster as its Redis: sign-in, search, upload, invalidation."""

from __future__ import annotations

import io

import httpx
from conftest import raw_redis
from PIL import Image

from perflab.config import Settings
from perflab.servers import Endpoints
from perflab.service.server import ServiceProcess


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
