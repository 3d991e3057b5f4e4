"""Security of the service as a whole, over real HTTP where a user would attack it: per-user isolation of
cached results and sessions whatever the characters, session fixation, revocation (also while Redis is
down and after it returns), the signed media URLs the service hands out, and SQL injection.

The cache layer's own isolation (user ids of any characters, key layout) is tested in test_cache_*.py;
here the same guarantees are checked end to end, and for sessions as a property.
"""

from __future__ import annotations

import io
import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx
import numpy as np
import psycopg
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from PIL import Image
from psycopg_pool import ConnectionPool
from support import client as _client

from perflab.cache import CacheManager, SessionStore, make_redis
from perflab.cache.keys import user_digest
from perflab.cdn import OriginServer, UrlSigner, make_origin_app
from perflab.config import Settings
from perflab.db import InvalidInput, SearchFilters, VectorSearch, connect
from perflab.lab.harness import ServiceProcess
from perflab.net import free_port, wait_until
from perflab.servers import Endpoints, RedisServer
from perflab.service.auth import COOKIE_NAME, SessionAuth
from perflab.service.secrets import load_secret

# Any code point, lone surrogates and the characters of Redis patterns, hash tags and SQL made likely.
ANY_CHAR = st.one_of(
    st.characters(),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
    st.sampled_from("*?[]{}:\\ '\";%_-\x00"),
)
ANY_TEXT = st.lists(ANY_CHAR, max_size=24).map("".join)
FIXED = hsettings(
    derandomize=True, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _search(client: httpx.Client, q: str, k: int = 5) -> httpx.Response:
    """GET /search with `q` percent-encoded as UTF-8 bytes, lone surrogates included."""
    return client.get(f"/search?q={quote(q.encode('utf-8', 'surrogatepass'), safe='')}&k={k}")


def _owners(settings: Settings, servers: Endpoints, ids: list[str]) -> set[str]:
    with connect(settings, servers.database_url) as conn:
        rows = conn.execute("SELECT DISTINCT user_id FROM media_files WHERE id = ANY(%s::uuid[])", (ids,))
        return {str(r[0]) for r in rows}


def _jpeg(seed: int) -> bytes:
    img = Image.new("RGB", (320, 240), (seed * 37 % 255, 90, 160))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


# -- cached results: any query, per user ----------------------------------------------------------


@pytest.fixture(scope="module")
def pair(service: ServiceProcess) -> Iterator[tuple[httpx.Client, str, httpx.Client, str]]:
    a, b = _client(service), _client(service)
    ua = a.post("/sessions", json={"email": "user1@example.com"}).json()["user_id"]
    ub = b.post("/sessions", json={"email": "user2@example.com"}).json()["user_id"]
    yield a, ua, b, ub
    a.close()
    b.close()


@FIXED
@given(q=ANY_TEXT)
def test_property_any_query_reads_writes_and_hits_only_its_users_results(
    pair: tuple[httpx.Client, str, httpx.Client, str], svc_settings: Settings, servers: Endpoints, q: str
) -> None:
    a, ua, b, ub = pair
    ra = _search(a, q)
    assert ra.status_code in (200, 422), ra.text  # never a 5xx, whatever the characters
    rb = _search(b, q)
    assert rb.status_code == ra.status_code
    if ra.status_code == 422:
        assert ra.json()["detail"]
        return
    ids_a = [x["id"] for x in ra.json()["results"]]
    ids_b = [x["id"] for x in rb.json()["results"]]
    assert _owners(svc_settings, servers, ids_a) <= {ua}
    assert _owners(svc_settings, servers, ids_b) <= {ub}
    again = _search(a, q).json()  # B's search of the same text neither evicted nor overwrote A's entry
    assert again["cache_hit"] is True and [x["id"] for x in again["results"]] == ids_a


def test_an_upload_evicts_only_its_owners_cached_results(
    pair: tuple[httpx.Client, str, httpx.Client, str],
) -> None:
    a, _, b, _ = pair
    queries = ["*", "{u:1}", "a:b", "\u00e9t\u00e9 \U0001f600", "' OR 1=1 --"]
    for q in queries:
        _search(a, q)
        _search(b, q)
    assert b.post("/media", files={"file": ("x.jpg", _jpeg(1), "image/jpeg")}).status_code == 201
    assert all(_search(a, q).json()["cache_hit"] for q in queries)
    assert not any(_search(b, q).json()["cache_hit"] for q in queries)


# -- sessions: any user id, any tampering ---------------------------------------------------------


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=ANY_TEXT, b=ANY_TEXT)
def test_property_sessions_of_any_user_ids_never_cross(cache_manager: CacheManager, a: str, b: str) -> None:
    if a == b:
        return
    store = SessionStore(cache_manager, ttl=60, absolute_ttl=600)
    sa = store.create(a, {"who": "a"})
    sb = store.create(b, {"who": "b"})
    # read: each id yields its own user and data; a forged id of a's digest with b's token is nothing
    got = store.get(sa.id)
    assert got is not None and got.user_id == a and got.data == {"who": "a"}
    assert store.get(f"{user_digest(a)}.{sb.id.split('.')[1]}") is None
    assert sa.id not in {s.id for s in store.list_user_sessions(b)}
    # poison: writing through b's session never changes a's
    store.update(sb.id, who="a")
    assert store.get(sa.id).data == {"who": "a"}  # type: ignore[union-attr]
    # evict: b's logout and revoke-all leave a's session alone
    store.delete(sb.id)
    store.revoke_all(b)
    assert store.get(sa.id) is not None
    store.revoke_all(a)


@pytest.fixture()
def auth(cache_manager: CacheManager, db_pool: ConnectionPool) -> SessionAuth:
    store = SessionStore(cache_manager, ttl=60, absolute_ttl=600)
    return SessionAuth(store, db_pool, secrets.token_bytes(32), absolute_ttl=600)


@pytest.fixture()
def db_user(db_conn: psycopg.Connection) -> Iterator[str]:
    row = db_conn.execute(
        "INSERT INTO users (email) VALUES (%s) RETURNING id", (f"sec-{uuid.uuid4().hex}@example.com",)
    ).fetchone()
    assert row is not None
    yield str(row[0])
    db_conn.execute("DELETE FROM users WHERE id = %s", (row[0],))


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_property_a_tampered_or_made_up_cookie_never_authenticates(
    auth: SessionAuth, db_user: str, data: st.DataObject
) -> None:
    cookie = auth.login(db_user, {})
    principal = auth.authenticate(cookie)
    assert principal is not None and principal.user_id == db_user
    # each example logs in anew, so the cookie differs between runs of one example: what is drawn must not
    # depend on it (a filter on cookie[i] made Hypothesis report a flaky strategy)
    i = data.draw(st.integers(0, 10_000)) % len(cookie)
    c = data.draw(ANY_CHAR)
    if c == cookie[i]:
        c = "!" if c != "!" else "?"
    assert auth.authenticate(cookie[:i] + c + cookie[i + 1 :]) is None
    assert auth.authenticate(cookie[:i]) is None
    assert auth.authenticate(data.draw(ANY_TEXT)) is None
    other = str(uuid.uuid4())  # the signed claims name the user: another id breaks the signature
    assert auth.authenticate(cookie.replace(db_user, other)) is None


# -- fixation and revocation -----------------------------------------------------------------------


def test_session_fixation_a_planted_cookie_never_gains_the_victims_identity(service: ServiceProcess) -> None:
    attacker = _client(service, "user3@example.com")
    planted = attacker.cookies[COOKIE_NAME]
    victim = httpx.Client(base_url=service.url, timeout=30)
    r = victim.post(
        "/sessions", json={"email": "user4@example.com"}, headers={"cookie": f"{COOKIE_NAME}={planted}"}
    )
    issued = r.cookies[COOKIE_NAME]
    assert issued.split("~")[1] != planted.split("~")[1]  # a new session id at login
    replay = httpx.Client(base_url=service.url, cookies={COOKIE_NAME: planted}, timeout=30)
    assert replay.get("/search", params={"q": "dog"}).status_code == 401  # and the planted one ended
    mine = victim.get("/search", params={"q": "dog", "k": 3}).json()["results"]
    assert mine and all(replay.get(f"/media/{x['id']}").status_code == 401 for x in mine)
    r = httpx.post(
        service.url + "/sessions",
        json={"email": "user4@example.com"},
        headers={"cookie": f"{COOKIE_NAME}=v1~fixed-id~x~1~2~sig"},  # a made-up id, planted
    )
    assert r.status_code == 201 and r.cookies[COOKIE_NAME].split("~")[1] != "fixed-id"


def test_a_logged_out_session_is_refused_on_every_route(
    service: ServiceProcess, svc_settings: Settings, servers: Endpoints
) -> None:
    c = _client(service, "user3@example.com")
    media_id = c.get("/search", params={"q": "dog", "k": 1}).json()["results"][0]["id"]
    cookie = c.cookies[COOKIE_NAME]
    assert c.delete("/sessions").status_code == 204
    replay = httpx.Client(base_url=service.url, cookies={COOKIE_NAME: cookie}, timeout=30)
    with connect(svc_settings, servers.database_url) as conn:
        before = conn.execute("SELECT count(*) FROM media_files").fetchone()
    assert replay.get("/search", params={"q": "dog"}).status_code == 401
    assert replay.get(f"/media/{media_id}").status_code == 401
    assert replay.post("/media", files={"file": ("x.jpg", _jpeg(2), "image/jpeg")}).status_code == 401
    with connect(svc_settings, servers.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM media_files").fetchone() == before


def test_revocations_hold_while_redis_is_down_and_after_it_returns(
    private_redis: RedisServer, settings: Settings, db_pool: ConnectionPool, db_user: str
) -> None:
    """A logout and a revoke-all made while Redis is down are recorded in PostgreSQL (the fallback
    refuses them) and reach Redis once it is back, so the sessions do not revive."""
    client = make_redis(settings, private_redis.url)
    store = SessionStore(
        CacheManager(client, prefix=settings.key_prefix, default_ttl=60), ttl=60, absolute_ttl=600
    )
    auth = SessionAuth(store, db_pool, secrets.token_bytes(32), absolute_ttl=600)
    logged_out, revoked, other = (auth.login(db_user, {}) for _ in range(3))
    try:
        private_redis.stop()
        assert auth.authenticate(other).degraded  # type: ignore[union-attr]
        assert auth.logout(logged_out)
        assert auth.authenticate(logged_out) is None
        assert auth.authenticate(revoked) is not None
        time.sleep(0.01)  # revoke-all refuses sessions issued before it, to the millisecond
        auth.revoke_all(db_user)
        assert auth.authenticate(revoked) is None and auth.authenticate(other) is None
        private_redis.start()  # with its data: sessions are persisted (AOF)
        refused = lambda: all(auth.authenticate(c) is None for c in (logged_out, revoked, other))  # noqa: E731
        # Once Redis answers again, authentication reads it rather than PostgreSQL: the revocations
        # must have reached it, or the sessions revive with it.
        back = lambda: store.manager.healthy() and refused()  # noqa: E731
        assert wait_until(back, timeout=10, interval=0.1)
        fresh = auth.login(db_user, {})
        assert auth.authenticate(fresh) is not None  # a sign-in after the revoke-all is fine
    finally:
        client.close()


# -- signed media URLs -----------------------------------------------------------------------------


def test_the_service_signs_urls_the_origin_accepts_and_tampering_is_refused(
    service: ServiceProcess, svc_settings: Settings
) -> None:
    c = _client(service, "user3@example.com")
    r = c.post("/media", files={"file": ("p.jpg", _jpeg(3), "image/jpeg")})
    assert r.status_code == 201, r.text
    media = r.json()
    signer = UrlSigner(load_secret(svc_settings, "cdn", svc_settings.cdn_signing_key))
    root = Path(service.env["PERFLAB_MEDIA_ROOT"])
    urls = [media["url"], media["thumbnail_url"]] + [p.split()[0] for p in media["srcset"].split(", ")]
    with OriginServer(make_origin_app(root, signer), free_port()) as origin:
        o = httpx.Client(base_url=origin.url, timeout=10)

        def at_origin(url: str) -> httpx.Response:
            parts = urlsplit(url)
            return o.get(f"{parts.path}?{parts.query}")

        for url in urls:
            ok = at_origin(url)
            assert ok.status_code == 200, (url, ok.text)
            assert (
                ok.headers["content-type"].startswith("image/") and "private" in ok.headers["cache-control"]
            )
        url = media["url"]
        exp = urlsplit(url).query.split("&")[0]
        expired = signer.sign(urlsplit(url).path, expires_in=1, now=time.time() - 60)
        for tampered in (
            url.replace(exp, f"exp={int(exp[4:]) + 3600}"),  # a longer life
            url.replace(urlsplit(url).path, urlsplit(media["thumbnail_url"]).path),  # another object
            url.split("&sig=")[0],  # no signature
            url[:-2] + ("AA" if not url.endswith("AA") else "BB"),  # a forged signature
            expired,
        ):
            refused = at_origin(tampered)
            assert refused.status_code == 403, (tampered, refused.status_code)
            assert refused.headers["cache-control"] == "no-store"


# -- SQL injection ---------------------------------------------------------------------------------

INJECTIONS = [
    "' OR '1'='1",
    "'; DROP TABLE media_files; --",
    "1; DELETE FROM users",
    "\\'; SELECT pg_sleep(10); --",
    "$$; TRUNCATE users; $$",
    "') UNION SELECT id, email FROM users --",
]


def test_sql_injection_through_queries_and_filters_fails_harmlessly(
    service: ServiceProcess, svc_settings: Settings, servers: Endpoints, db_pool: ConnectionPool
) -> None:
    def counts() -> tuple[object, ...]:
        with connect(svc_settings, servers.database_url) as conn:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM media_files),"
                " (SELECT count(*) FROM media_embeddings)"
            ).fetchone()
        return tuple(row or ())

    before = counts()
    c = _client(service, "user2@example.com")
    me = c.post("/sessions", json={"email": "user2@example.com"}).json()["user_id"]
    for payload in INJECTIONS:
        r = c.get("/search", params={"q": payload, "k": 50})
        assert r.status_code == 200  # a query is text to embed, never SQL
        ids = [x["id"] for x in r.json()["results"]]
        assert _owners(svc_settings, servers, ids) <= {me}
        for name in ("type", "from", "to", "k"):
            bad = c.get("/search", params={"q": "dog", name: payload})
            assert bad.status_code == 422 and bad.json()["detail"], (name, payload)
        assert c.get(f"/media/{quote(payload, safe='')}").status_code in (404, 422)
        assert _client(service).post("/sessions", json={"email": payload}).status_code == 401
    assert counts() == before
    # The database layer refuses the same payloads before any SQL is built.
    vs = VectorSearch(db_pool, dim=svc_settings.embedding_dim)
    vec = np.ones(svc_settings.embedding_dim, dtype=np.float32)
    for payload in INJECTIONS:
        with pytest.raises(InvalidInput):
            vs.search(me, vec, 5, SearchFilters(media_type=payload))
        with pytest.raises(InvalidInput):
            vs.search(payload, vec, 5)
