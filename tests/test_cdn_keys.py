"""Content-hashed keys, cache headers and srcset."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from perflab.cdn import IMMUTABLE, UrlSigner, cache_control_for, etag_for, srcset
from perflab.cdn.headers import etag_matches, private_cache_control
from perflab.images import InvalidKey, is_hashed_key, object_key


def test_object_key_is_a_content_hash() -> None:
    a = object_key(b"one", "w640", "jpg")
    assert a == object_key(b"one", "w640", ".JPG")  # deterministic, normalised extension
    assert a != object_key(b"two", "w640", "jpg")  # new bytes, new key
    digest, _, tail = a.partition("/")[2].partition("-")
    assert a.startswith(digest[:2] + "/") and len(digest) == 32 and tail == "w640.jpg"
    assert is_hashed_key(a) and is_hashed_key("media/" + a)
    assert not is_hashed_key("users/7/avatar.jpg")
    wrong_fanout = "00" if not digest.startswith("00") else "11"
    assert not is_hashed_key(f"{wrong_fanout}/{digest}-w640.jpg")
    with pytest.raises(InvalidKey):
        object_key(b"x", "../etc", "jpg")
    with pytest.raises(InvalidKey):
        object_key(b"x", "w640", "j/pg")


def test_cache_control() -> None:
    key = object_key(b"bytes", "master", "webp")
    assert cache_control_for(key) == IMMUTABLE == "public, max-age=31536000, immutable"
    assert cache_control_for("users/7/avatar.jpg") == "public, max-age=60"
    assert private_cache_control(expires_at=1100, now=1000) == "private, max-age=100"
    assert private_cache_control(expires_at=900, now=1000) == "private, max-age=0"


def test_etags() -> None:
    key = object_key(b"bytes", "master", "jpg")
    etag = etag_for(key, b"bytes")
    assert etag == f'"{key.split("/")[1][:32]}"'
    assert etag_for("users/7/a.jpg", b"abc") != etag_for("users/7/a.jpg", b"abd")
    assert etag_matches(etag, etag) and etag_matches(f'"x", W/{etag}', etag) and etag_matches("*", etag)
    assert not etag_matches('"other"', etag) and not etag_matches(None, etag)


@dataclass
class _D:
    name: str
    width: int
    data: bytes
    extension: str = "jpg"


def test_srcset_orders_widths_and_skips_the_thumbnail() -> None:
    ds = [_D("master", 2048, b"m"), _D("w640", 640, b"b"), _D("w320", 320, b"a"), _D("thumb", 300, b"t")]
    value = srcset(ds, "https://cdn.example.com/media/")
    parts = [p.split(" ") for p in value.split(", ")]
    assert [w for _, w in parts] == ["320w", "640w", "2048w"]
    assert parts[0][0] == "https://cdn.example.com/media/" + object_key(b"a", "w320", "jpg")
    keys = {"master": "m.jpg", "w640": "b.jpg", "w320": "a.jpg"}
    assert srcset(ds[:3], "/media", keys=keys) == "/media/a.jpg 320w, /media/b.jpg 640w, /media/m.jpg 2048w"


def test_signed_srcset_urls_verify() -> None:
    signer = UrlSigner(b"k" * 32)
    value = srcset([_D("w320", 320, b"a")], "http://edge:8080/media", signer=signer, now=1000, expires_in=60)
    url = value.rsplit(" ", 1)[0]
    assert url.startswith("http://edge:8080/media/") and signer.verify(url, now=1000)
