"""Signed URLs: intact and unexpired verify; any tampering, another key, or expiry fails."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perflab.cdn import SignatureExpired, SignatureInvalid, SignatureMissing, UrlSigner
from perflab.errors import ConfigError

SECRET = b"s" * 32
NOW = 1_700_000_000
PATH = "/media/ab/ab0123456789abcdef0123456789abcd-w640.jpg"


def test_round_trip_and_expiry() -> None:
    signer = UrlSigner(SECRET)
    url = signer.sign(PATH, expires_in=60, now=NOW)
    assert url.startswith(PATH + "?exp=1700000060&sig=")
    assert signer.check(url, now=NOW) == NOW + 60
    assert signer.verify(url, now=NOW + 60)  # valid through its last second
    assert not signer.verify(url, now=NOW + 61)
    with pytest.raises(SignatureExpired, match="expired 1 s ago"):
        signer.check(url, now=NOW + 61)


def test_full_urls_and_existing_queries() -> None:
    signer = UrlSigner(SECRET)
    url = signer.sign(PATH + "?w=640", now=NOW)
    assert "?w=640&exp=" in url
    assert signer.verify("https://cdn.example.com" + url, now=NOW)
    assert signer.verify("http://127.0.0.1:8081" + url, now=NOW)  # host is not signed


@pytest.mark.parametrize(
    "tamper",
    [
        lambda u: u.replace("-w640", "-w320"),  # another object
        lambda u: u.replace("exp=1700003600", "exp=1900003600"),  # extended expiry
        lambda u: u.replace("?exp", "?w=1&exp"),  # an added parameter
        lambda u: u[:-1] + ("A" if u[-1] != "A" else "B"),  # a changed signature
        lambda u: u + "A",  # a longer signature
        lambda u: u.replace("/media/", "/media//"),
    ],
)
def test_tampering_is_detected(tamper) -> None:  # type: ignore[no-untyped-def]
    signer = UrlSigner(SECRET)
    url = signer.sign(PATH, now=NOW)
    assert signer.verify(url, now=NOW)
    bad = tamper(url)
    assert bad != url
    assert not signer.verify(bad, now=NOW)
    with pytest.raises(SignatureInvalid):
        signer.check(bad, now=NOW)


def test_another_secret_fails() -> None:
    url = UrlSigner(SECRET).sign(PATH, now=NOW)
    assert not UrlSigner(b"t" * 32).verify(url, now=NOW)


@pytest.mark.parametrize("url", [PATH, PATH + "?exp=123", PATH + "?sig=abc", PATH + "?exp=x&sig=abc", ""])
def test_missing_or_malformed_signature(url: str) -> None:
    with pytest.raises(SignatureMissing):
        UrlSigner(SECRET).check(url, now=NOW)


def test_expiry_is_checked_only_after_the_mac() -> None:
    """A forged URL with an old expiry says 'invalid', not 'expired': nothing about it is trusted."""
    signer = UrlSigner(SECRET)
    forged = PATH + "?exp=1&sig=" + "A" * 43
    with pytest.raises(SignatureInvalid):
        signer.check(forged, now=NOW)


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError):
        UrlSigner(b"short")
    signer = UrlSigner(SECRET)
    with pytest.raises(ValueError):
        signer.sign("media/no-leading-slash.jpg")
    with pytest.raises(ValueError):
        signer.sign(PATH + "?sig=1")
    with pytest.raises(ValueError):
        signer.sign(PATH, expires_in=0)
    assert "s" * 32 not in repr(signer)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_single_character_change_fails(data: st.DataObject) -> None:
    signer = UrlSigner(SECRET)
    url = signer.sign(PATH, now=NOW)
    i = data.draw(st.integers(0, len(url) - 1))
    c = data.draw(st.characters(min_codepoint=33, max_codepoint=126).filter(lambda ch: ch != url[i]))
    assert not signer.verify(url[:i] + c + url[i + 1 :], now=NOW)


def test_stable_expiry_keeps_urls_for_a_step_and_never_shortens_their_life() -> None:
    from perflab.cdn import stable_expiry

    for now in (NOW, NOW + 1, NOW + 299, NOW + 300, NOW + 301):
        exp = stable_expiry(3600, 300, now)
        assert exp % 300 == 0 and 3600 <= exp - now < 3600 + 300
    step = NOW - NOW % 300 + 300  # a step's start
    assert stable_expiry(3600, 300, step + 1) == stable_expiry(3600, 300, step + 299)  # one step: one URL
    assert stable_expiry(3600, 300, step) != stable_expiry(3600, 300, step + 1)
    signer = UrlSigner(SECRET)
    url = signer.sign_until(PATH, stable_expiry(3600, 300, step + 1))
    assert signer.sign_until(PATH, stable_expiry(3600, 300, step + 100)) == url
    assert signer.verify(url, now=step + 3600 + 299) and not signer.verify(url, now=step + 3600 + 301)


def test_sign_until_is_deterministic_and_checks_its_path() -> None:
    signer = UrlSigner(SECRET)
    urls = [signer.sign_until(f"/media/{i}.jpg", NOW) for i in range(10)]
    assert all(signer.verify(u, now=NOW) for u in urls)
    assert [signer.sign_until(f"/media/{i}.jpg", NOW) for i in range(10)] == urls
    with pytest.raises(ValueError):
        signer.sign_until("media/relative.jpg", NOW)
    with pytest.raises(ValueError):
        signer.sign_until(PATH + "?exp=1", NOW)


def test_media_urls_sign_each_url_once_and_the_srcset_reuses_them() -> None:
    from perflab.cdn import media_urls

    class Counting(UrlSigner):
        signed = 0

        def sign_until(self, path: str, expires: int) -> str:
            Counting.signed += 1
            return super().sign_until(path, expires)

    item = [
        {"name": n, "width": w, "key": f"media/{n}.webp"}
        for n, w in (("master", 2000), ("thumb", 200), ("w320", 320))
    ]
    out = media_urls(item, "https://cdn.example.com/media", Counting(SECRET), now=NOW)
    assert Counting.signed == 3  # one HMAC per rendition: the srcset's master and w320 are reused
    assert out.url is not None and out.srcset is not None and out.url + " 2000w" in out.srcset


def test_the_minter_gives_each_item_its_urls_once_per_expiry_step() -> None:
    from perflab.cdn import UrlMinter, media_urls

    def item(n: int) -> list[dict[str, object]]:
        return [{"name": name, "width": w, "key": f"media/{n:02d}/{n}-{name}.webp"}
                for name, w in (("master", 2000), ("thumb", 200), ("w320", 320), ("w640", 640))]  # fmt: skip

    signer = UrlSigner(SECRET)
    minter = UrlMinter("https://cdn.example.com/media", signer, expires_in=3600, memo_size=3)
    first = minter.urls(item(1), now=NOW)
    assert first == media_urls(item(1), "https://cdn.example.com/media", signer, now=NOW)
    assert first.url and first.thumbnail_url and first.srcset and signer.verify(first.url, now=NOW + 3599)
    assert minter.urls(item(1), now=NOW + 10) is first  # remembered within the step
    assert minter.urls(item(2), now=NOW + 10).url != first.url  # another item, other keys
    moved = item(1)
    moved[2] = {**moved[2], "key": "media/01/other-w320.webp"}  # a re-processed derivative: a new key
    assert "other-w320" in (minter.urls(moved, now=NOW + 10).srcset or "")
    later = minter.urls(item(1), now=NOW + 3600)  # a later step: a later expiry, newly signed
    assert later.url != first.url and signer.verify(later.url or "", now=NOW + 7199)
    for n in range(10):
        minter.urls(item(n), now=NOW + 3600)
    assert len(minter._memo) <= 3
    assert minter.urls([], now=NOW).url is None
