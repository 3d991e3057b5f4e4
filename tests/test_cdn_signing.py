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
