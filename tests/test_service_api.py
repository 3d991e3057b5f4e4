"""The search service over real HTTP: uvicorn in a child process, httpx, the shared servers (and a
private Redis for the fail-open test)."""

from __future__ import annotations

import io
import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image
from support import client as _client

from perflab.config import Settings
from perflab.db import connect
from perflab.images.safety import DEFAULT_ALLOWED, describe_formats
from perflab.lab.harness import ServiceProcess
from perflab.servers import Endpoints, RedisServer
from perflab.service.auth import COOKIE_NAME


def _photo(seed: int = 0, size: tuple[int, int] = (640, 480)) -> bytes:
    img = Image.linear_gradient("L").resize(size).convert("RGB")
    img.paste((seed * 40 % 255, 120, 200), (10, 10, 200, 200))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _owner(servers: Endpoints, settings: Settings, media_id: str) -> str:
    with connect(settings, servers.database_url) as conn:
        row = conn.execute("SELECT user_id FROM media_files WHERE id = %s", (media_id,)).fetchone()
    return str(row[0]) if row else ""


def test_no_session_is_401(service: ServiceProcess) -> None:
    c = _client(service)
    assert c.get("/search", params={"q": "dog"}).status_code == 401
    assert c.get(f"/media/{uuid.uuid4()}").status_code == 401
    assert c.post("/media", files={"file": ("a.jpg", _photo())}).status_code == 401
    c.cookies.set(COOKIE_NAME, "v1~forged~cookie~1~99999999999999~sig")
    assert c.get("/search", params={"q": "dog"}).status_code == 401


def test_login_sets_a_safe_cookie_and_rotates(service: ServiceProcess) -> None:
    c = _client(service)
    assert c.post("/sessions", json={"email": "nobody@example.com"}).status_code == 401
    r = c.post("/sessions", json={"email": "user2@example.com"})
    assert r.status_code == 201
    header = r.headers["set-cookie"].lower()
    assert "httponly" in header and "samesite=lax" in header
    first = c.cookies[COOKIE_NAME]
    r = c.post("/sessions", json={"email": "user2@example.com"})
    second = c.cookies[COOKIE_NAME]
    assert second != first  # a new session id at every login
    stale = httpx.Client(base_url=service.url, cookies={COOKIE_NAME: first})
    assert stale.get("/search", params={"q": "dog"}).status_code == 401  # the old session ended
    assert c.get("/search", params={"q": "dog"}).status_code == 200
    assert c.delete("/sessions").status_code == 204
    again = httpx.Client(base_url=service.url, cookies={COOKIE_NAME: second})
    assert again.get("/search", params={"q": "dog"}).status_code == 401  # logged out


def test_search_is_scoped_timed_and_cached(
    service: ServiceProcess, servers: Endpoints, svc_settings: Settings
) -> None:
    c = _client(service, "user1@example.com")
    me = c.post("/sessions", json={"email": "user1@example.com"}).json()["user_id"]
    r = c.get("/search", params={"q": "a dog running on the beach", "k": 10})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["cache_hit"] is False and 0 < body["count"] <= 10
    assert "vector_search" in r.headers["server-timing"] and "total;dur=" in r.headers["server-timing"]
    assert {"search_cache", "embedding_cache", "vector_search", "hydrate"} <= set(body["timings_ms"])
    assert all(_owner(servers, svc_settings, x["id"]) == me for x in body["results"])
    sims = [x["similarity"] for x in body["results"]]
    assert sims == sorted(sims, reverse=True)
    again = c.get("/search", params={"q": "  A DOG running   on the beach ", "k": 10}).json()
    assert again["cache_hit"] is True  # normalized query: same entry
    assert [x["id"] for x in again["results"]] == [x["id"] for x in body["results"]]
    urls = ("url", "thumbnail_url", "srcset")  # re-signed when an expiry step passes between requests
    expected = [{k: v for k, v in x.items() if k not in urls} for x in again["results"]]
    for raw in ("a dog running on the beach", "A Dog Running On The Beach") * 2:  # then remembered hits
        hit = c.get("/search", params={"q": raw, "k": 10}).json()
        assert hit["cache_hit"] is True and hit["query"] == raw and hit["count"] == again["count"]
        assert [{k: v for k, v in x.items() if k not in urls} for x in hit["results"]] == expected
        assert [bool(x["url"]) for x in hit["results"]] == [bool(x["url"]) for x in again["results"]]


def test_other_users_media_is_404(service: ServiceProcess) -> None:
    one = _client(service, "user1@example.com")
    two = _client(service, "user2@example.com")
    mine = one.get("/search", params={"q": "cat", "k": 5}).json()["results"]
    assert mine
    media_id = mine[0]["id"]
    assert one.get(f"/media/{media_id}").status_code == 200
    assert two.get(f"/media/{media_id}").status_code == 404
    assert two.get(f"/media/{uuid.uuid4()}").status_code == 404
    theirs = {x["id"] for x in two.get("/search", params={"q": "cat", "k": 50}).json()["results"]}
    assert media_id not in theirs


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"q": "dog", "k": 0}, 422),
        ({"q": "dog", "k": 101}, 422),
        ({"q": "dog", "type": "hologram"}, 422),
        ({"q": ""}, 422),
        ({"q": "   "}, 422),
        ({"q": "x" * 513}, 422),
        ({"q": "dog", "from": "2025-01-02T00:00:00Z", "to": "2025-01-01T00:00:00Z"}, 422),
        ({"q": "dog", "from": "2025-01-01T00:00:00"}, 422),
        ({"q": "dog", "from": "yesterday"}, 422),
        ({"q": "dog", "type": "image", "from": "2020-01-01T00:00:00Z"}, 200),
        ({"q": "x" * 5000}, 414),
    ],
)
def test_validation(service: ServiceProcess, params: dict[str, object], status: int) -> None:
    c = _client(service, "user3@example.com")
    r = c.get("/search", params=params)
    assert r.status_code == status, r.text
    if status != 200:
        assert r.json()["detail"]


@pytest.mark.parametrize(
    ("params", "loc", "error"),
    [
        ({}, ["query", "q"], "missing"),
        ({"q": "dog", "k": "ten"}, ["query", "k"], "int_parsing"),
        ({"q": "dog", "k": "2.5"}, ["query", "k"], "int_parsing"),
        ({"q": "dog", "to": "soon"}, ["query", "to"], "datetime_from_date_parsing"),
    ],
)
def test_unparsable_parameters_get_fastapis_validation_body(
    service: ServiceProcess, params: dict[str, object], loc: list[str], error: str
) -> None:
    r = _client(service, "user3@example.com").get("/search", params=params)
    assert r.status_code == 422, r.text
    [detail] = r.json()["detail"]
    assert detail["loc"] == loc and detail["type"] == error and detail["msg"]


def test_upload_is_searchable_at_once_and_bad_files_write_nothing(
    service: ServiceProcess, servers: Endpoints, svc_settings: Settings
) -> None:
    c = _client(service, "user4@example.com")
    query = {"q": "violet zebra crossing a glacier", "k": 5}
    before = c.get("/search", params=query).json()
    c.get("/search", params=query)  # now cached
    r = c.post(
        "/media",
        files={"file": ("zebra.jpg", _photo(3), "image/jpeg")},
        data={"caption": "violet zebra crossing a glacier", "tags": "zebra,glacier"},
    )
    assert r.status_code == 201, r.text
    media = r.json()
    assert media["width"] == 640 and media["thumbnail_url"] and media["srcset"] is not None
    after = c.get("/search", params=query).json()
    assert after["cache_hit"] is False  # the upload invalidated this user's cached results
    assert after["results"][0]["id"] == media["id"]
    assert media["id"] not in {x["id"] for x in before["results"]}
    with connect(svc_settings, servers.database_url) as conn:
        count = conn.execute("SELECT count(*) FROM media_files").fetchone()
    for name, data in [
        ("empty.jpg", b""),
        ("notes.jpg", b"hello, not an image"),
        ("cut.jpg", _photo()[:600]),
    ]:
        bad = c.post("/media", files={"file": (name, data, "image/jpeg")})
        assert 400 <= bad.status_code < 500, (name, bad.status_code, bad.text)
        assert bad.json()["detail"]
    with connect(svc_settings, servers.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM media_files").fetchone() == count


def test_health_metrics_openapi(service: ServiceProcess) -> None:
    c = _client(service)
    h = c.get("/health", params={"detailed": "true"}).json()
    assert h["status"] == "ok" and h["checks"]["pgvector"]["version"]
    assert "hit_rate" in str(h["cache"]) or "hits" in str(h["cache"])
    _client(service, "user1@example.com").get("/search", params={"q": "dog"})
    assert "perflab_http_requests_total" in c.get("/metrics").text
    schema = c.get("/openapi.json").json()
    assert {"/search", "/media", "/sessions", "/health"} <= set(schema["paths"])


def test_upload_schema_names_exactly_the_accepted_formats(service: ServiceProcess) -> None:
    """The file field's description is what the safety checks allow: a TIFF it does not name is 415."""
    c = _client(service, "user4@example.com")
    schema = c.get("/openapi.json").json()
    described = schema["components"]["schemas"]["Body_upload_media_post"]["properties"]["file"]["description"]
    assert described == describe_formats(DEFAULT_ALLOWED) and "TIFF" not in described
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (90, 90, 90)).save(buf, "TIFF")
    r = c.post("/media", files={"file": ("scan.tif", buf.getvalue(), "image/tiff")})
    assert r.status_code == 415 and r.json()["error"] == "UnsupportedFormat"


@pytest.fixture()
def own_redis_service(
    private_redis: RedisServer, svc_settings: Settings, servers: Endpoints, tmp_path: Path
) -> Iterator[tuple[ServiceProcess, RedisServer]]:
    """The service on the seeded schema, but with a Redis of this test's own to stop and restart."""
    on = svc_settings.replace(
        embedder="hashing",
        media_root=tmp_path / "media",
        redis_url=private_redis.url,
        database_url=servers.database_url,
        session_secret=secrets.token_hex(32),  # staging URLs: serve refuses to start without
        cdn_signing_key=secrets.token_hex(32),
    )
    with ServiceProcess(on, workers=1, log=tmp_path / "serve.log") as svc:
        yield svc, private_redis


def test_fail_open_when_redis_stops(own_redis_service: tuple[ServiceProcess, RedisServer]) -> None:
    """Redis dies mid-run: signed-in users keep searching (from PostgreSQL); Redis returns, caching resumes."""
    svc, redis_server = own_redis_service
    c = _client(svc, "user1@example.com")
    q = {"q": "mountain lake at sunset", "k": 5}
    assert c.get("/search", params=q).status_code == 200
    assert c.get("/search", params=q).json()["cache_hit"] is True
    redis_server.stop()
    for _ in range(5):
        r = c.get("/search", params=q)
        assert r.status_code == 200, r.text
        assert r.json()["cache_hit"] is False and r.json()["count"] > 0
    assert c.get("/health").json()["status"] == "degraded"
    assert _client(svc).post("/sessions", json={"email": "user2@example.com"}).status_code == 503
    redis_server.start()
    statuses = []
    for _ in range(100):
        r = c.get("/search", params=q)
        statuses.append(r.status_code)
        if r.status_code == 200 and r.json()["cache_hit"]:
            break
        time.sleep(0.1)
    assert set(statuses) == {200} and r.json()["cache_hit"] is True


def test_logout_holds_while_redis_is_down(own_redis_service: tuple[ServiceProcess, RedisServer]) -> None:
    svc, redis_server = own_redis_service
    c = _client(svc, "user2@example.com")
    cookie = c.cookies[COOKIE_NAME]
    assert c.delete("/sessions").status_code == 204
    redis_server.stop()
    replay = httpx.Client(base_url=svc.url, cookies={COOKIE_NAME: cookie})
    assert replay.get("/search", params={"q": "dog"}).status_code == 401


def test_streamed_body_over_the_limit_is_413(service: ServiceProcess) -> None:
    def chunks():  # no Content-Length: the limit must hold on the bytes actually received
        for _ in range(40):
            yield b"x" * 4096

    r = httpx.post(service.url + "/sessions", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "larger than" in r.json()["detail"]
    r = httpx.post(service.url + "/sessions", content=b"x" * 70_000)  # declared: refused before reading
    assert r.status_code == 413


def test_history_and_popularity_are_written_off_the_request_path(
    service: ServiceProcess, servers: Endpoints, svc_settings: Settings
) -> None:
    from perflab.cache import CacheManager, SearchCache, make_redis

    c = _client(service, "user2@example.com")
    for _ in range(3):
        assert c.get("/search", params={"q": "quokka selfie on rottnest island"}).status_code == 200
    cache = SearchCache(
        CacheManager(
            make_redis(svc_settings, servers.redis_url), prefix=svc_settings.key_prefix, default_ttl=60
        )
    )
    deadline = time.monotonic() + 10
    popular, rows = [], 0
    while time.monotonic() < deadline:
        popular = dict(cache.popular(1000))
        with connect(svc_settings, servers.database_url) as conn:
            rows = conn.execute(
                "SELECT count(*) FROM search_history WHERE query = 'quokka selfie on rottnest island'"
            ).fetchone()[0]
        if popular.get("quokka selfie on rottnest island", 0) >= 3 and rows >= 3:
            break
        time.sleep(0.2)
    assert popular.get("quokka selfie on rottnest island") == 3.0
    assert rows == 3


def test_the_public_face_resolves_every_name() -> None:
    import perflab.service

    assert all(getattr(perflab.service, name) is not None for name in perflab.service.__all__)


def test_a_library_of_another_embedder_is_refused(
    svc_settings: Settings, servers: Endpoints, tmp_path: Path
) -> None:
    """The seeded library holds hashing vectors: a service embedding queries with MiniLM (ONNX) must
    refuse to search or upload into it (409, named), not rank by meaningless distances."""
    from perflab.embed.onnx import onnx_available

    if not onnx_available(svc_settings.home):
        pytest.skip("the ONNX embedder cannot run here (no runtime or weights)")
    on = svc_settings.replace(embedder="minilm-onnx-int8", media_root=tmp_path)
    with connect(svc_settings, servers.database_url) as conn:
        before = conn.execute("SELECT count(*) FROM media_files").fetchone()[0]
    with ServiceProcess(on, workers=1, log=tmp_path / "serve.log") as svc:
        c = _client(svc, "user3@example.com")
        assert c.post("/sessions", json={"email": "user3@example.com"}).status_code == 201
        r = c.get("/search", params={"q": f"a never seen query {secrets.token_hex(4)}"})
        assert r.status_code == 409, r.text
        assert r.json()["error"] == "EmbedderMismatch" and "perflab-hashing-v1-384" in r.json()["detail"]
        r = c.post("/media", files={"file": ("a.jpg", _photo(3))}, data={"caption": "a cat"})
        assert r.status_code == 409, r.text
    with connect(svc_settings, servers.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM media_files").fetchone()[0] == before  # nothing written


def test_a_started_service_runs_the_installed_perflab_not_the_working_directorys(
    svc_settings: Settings, servers: Endpoints, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python -P -m perflab.cli serve`: a `perflab` package in the working directory is not imported
    (else an A/B arm chosen by PYTHONPATH silently ran the checkout it was started from)."""
    decoy = tmp_path / "cwd" / "perflab"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text("raise SystemExit('the working directory was imported')\n")
    on = svc_settings.replace(embedder="hashing", media_root=tmp_path / "media")
    svc = ServiceProcess(on, workers=1, log=tmp_path / "serve.log")
    monkeypatch.chdir(decoy.parent)  # the child starts there
    with svc:
        assert httpx.get(svc.url + "/health").status_code == 200


def test_a_half_closed_client_still_gets_its_answer(service: ServiceProcess) -> None:
    """A client that sends its request and shuts its side (SHUT_WR) is answered before the service
    closes: an upload declared larger than the limit is refused with 413 without reading its body.
    50 times, since the answer races the connection's end of file."""
    from perflab.lab.badinput import _raw

    c = _client(service, "user3@example.com")
    cookie = "; ".join(f"{k}={v}" for k, v in c.cookies.items())
    head = f"POST /media HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\nContent-Length: 999999999\r\n\r\n"
    statuses = [_raw(c, head.encode()).status_code for _ in range(50)]
    assert statuses == [413] * 50
