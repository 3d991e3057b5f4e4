"""The media origin over real HTTP: content types, ETag/304, HEAD, bad keys, signed private media."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from perflab.cdn import IMMUTABLE, OriginServer, UrlSigner, make_origin_app
from perflab.images import object_key
from perflab.images.storage import LocalStorage
from perflab.servers.ports import free_port

SECRET = b"origin-test-secret-0123456789abc"
BODY = b"\xff\xd8\xff" + b"fake jpeg body" * 100


@pytest.fixture()
def media(tmp_path: Path) -> tuple[Path, str]:
    key = object_key(BODY, "w640", "jpg")
    store = LocalStorage(tmp_path / "media")
    store.put(key, BODY, "image/jpeg")
    store.put("users/7/avatar.webp", b"RIFF0000WEBP", "image/webp")
    return tmp_path / "media", key


@pytest.fixture()
def public(media: tuple[Path, str]) -> Iterator[httpx.Client]:
    with (
        OriginServer(make_origin_app(media[0]), free_port()) as origin,
        httpx.Client(base_url=origin.url) as c,
    ):
        yield c


def test_serves_hashed_objects_immutable_with_etag(public: httpx.Client, media: tuple[Path, str]) -> None:
    key = media[1]
    r = public.get(f"/media/{key}")
    assert r.status_code == 200 and r.content == BODY
    assert r.headers["content-type"] == "image/jpeg"
    assert r.headers["cache-control"] == IMMUTABLE
    assert r.headers["x-content-type-options"] == "nosniff"
    etag = r.headers["etag"]
    again = public.get(f"/media/{key}", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert public.get(f"/media/{key}", headers={"If-None-Match": '"stale"'}).status_code == 200
    head = public.head(f"/media/{key}")
    assert (
        head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) == len(BODY)
    )


def test_mutable_objects_and_errors(public: httpx.Client) -> None:
    r = public.get("/media/users/7/avatar.webp")
    assert r.status_code == 200 and r.headers["content-type"] == "image/webp"
    assert r.headers["cache-control"] == "public, max-age=60"
    missing = public.get("/media/ab/missing.jpg")
    assert missing.status_code == 404 and missing.headers["cache-control"] == "no-store"
    hidden = public.get("/media/ab/.tmp-123.part")
    assert hidden.status_code == 400
    encoded = public.get("/media/%2e%2e/secret.jpg")
    assert encoded.status_code == 400
    assert public.post("/media/users/7/avatar.webp").status_code == 405
    assert public.get("/healthz").text == "ok"


def test_signed_origin_requires_a_valid_signature(media: tuple[Path, str]) -> None:
    root, key = media
    signer = UrlSigner(SECRET)
    with (
        OriginServer(make_origin_app(root, signer), free_port()) as origin,
        httpx.Client(base_url=origin.url) as c,
    ):
        path = f"/media/{key}"
        assert c.get(path).status_code == 403
        url = signer.sign(path, expires_in=120)
        ok = c.get(url)
        assert ok.status_code == 200 and ok.content == BODY
        max_age = int(ok.headers["cache-control"].removeprefix("private, max-age="))
        assert 100 <= max_age <= 120  # never cached past the signature's expiry, never by a shared cache
        tampered = url.replace("-w640", "-w320")
        assert c.get(tampered).status_code == 403
        expired = signer.sign(path, expires_in=10, now=time.time() - 3600)
        denied = c.get(expired)
        assert denied.status_code == 403 and "expired" in denied.text
        assert denied.headers["cache-control"] == "no-store"
