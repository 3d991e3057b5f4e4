"""HMAC-signed, expiring URLs for private media.

`sign("/media/ab/ab...-w640.jpg")` appends `exp=<unix time>&sig=<HMAC-SHA256, base64url>` computed over
everything before `&sig=`: the path, any query the caller had, and the expiry. Changing any byte of
that (a path, a parameter, the expiry) breaks the signature. Only path and query are signed, not the
host, so one URL works through the edge and straight at the origin.

Verification compares MACs with `hmac.compare_digest` (time independent of where they differ) and
checks the MAC before the expiry, so an attacker learns nothing from timing about a forged URL.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import time
from urllib.parse import parse_qsl, urlsplit

from perflab.cdn.errors import SignatureExpired, SignatureInvalid, SignatureMissing
from perflab.errors import ConfigError

MIN_SECRET_BYTES = 16
_SIG = "&sig="


def _b64(mac: bytes) -> str:
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


class UrlSigner:
    """Signs and verifies URLs with one secret (at least 16 bytes; use 32 random bytes)."""

    def __init__(self, secret: bytes) -> None:
        if not isinstance(secret, bytes) or len(secret) < MIN_SECRET_BYTES:
            raise ConfigError(f"the URL signing secret must be at least {MIN_SECRET_BYTES} bytes")
        self._secret = secret
        self._keyed = hmac.new(secret, digestmod=hashlib.sha256)  # copied per MAC: no key set-up each

    def __repr__(self) -> str:
        return "UrlSigner(<secret>)"

    def _mac(self, message: str) -> str:
        mac = self._keyed.copy()
        mac.update(message.encode("utf-8"))
        return _b64(mac.digest())

    def sign(self, path: str, expires_in: int = 3600, now: float | None = None) -> str:
        """`path` (starting with `/`, may carry a query) with `exp` and `sig` appended."""
        if expires_in <= 0:
            raise ValueError("expires_in must be positive")
        return self.sign_until(path, int(now if now is not None else time.time()) + int(expires_in))

    def sign_until(self, path: str, expires: int) -> str:
        """`path` signed to expire at unix time `expires`. The same (path, expiry) gives the same URL:
        with a stable expiry (`stable_expiry`) a browser or CDN cache keeps it until the expiry moves,
        and the service mints each item's URLs once per step (`UrlMinter`)."""
        if not path.startswith("/"):
            raise ValueError(f"sign a path starting with '/', got {path[:40]!r}")
        if "?" in path:
            query = urlsplit(path).query
            if any(k in ("exp", "sig") for k, _ in parse_qsl(query, keep_blank_values=True)):
                raise ValueError("the path already carries exp/sig parameters")
        base = f"{path}{'&' if '?' in path else '?'}exp={expires}"
        return f"{base}{_SIG}{self._mac(base)}"

    def check(self, url_or_path_query: str, now: float | None = None) -> int:
        """Verify; return the expiry (unix time) or raise SignatureMissing/Invalid/Expired."""
        target = url_or_path_query
        if "://" in target[:12]:
            parts = urlsplit(target)
            target = parts.path + (f"?{parts.query}" if parts.query else "")
        base, sep, sig = target.rpartition(_SIG)
        if not sep or "?" not in base or "&" in sig or "#" in sig:
            raise SignatureMissing()
        last = re.split(r"[?&]", base)[-1]
        if not last.startswith("exp=") or not last[4:].isdigit():
            raise SignatureMissing()
        if not hmac.compare_digest(self._mac(base).encode("ascii"), sig.encode("ascii", "replace")):
            raise SignatureInvalid()
        expires = int(last[4:])
        current = int(now if now is not None else time.time())
        if expires < current:
            raise SignatureExpired(expires, current)
        return expires

    def verify(self, url_or_path_query: str, now: float | None = None) -> bool:
        """True when the URL is intact and not expired."""
        try:
            self.check(url_or_path_query, now)
        except (SignatureMissing, SignatureInvalid, SignatureExpired):
            return False
        return True


def cdn_url(
    base_url: str,
    key: str,
    signer: UrlSigner | None = None,
    *,
    expires_in: int = 3600,
    now: float | None = None,
    expires_at: int | None = None,
) -> str:
    """`{base}/{key}`, signed (with a `signer`) over the whole path the CDN sees, the base URL's path
    included: the origin checks the signature over the path it was asked for. `expires_at` (unix
    time, e.g. from `stable_expiry`) instead of `expires_in` from `now`."""
    host, prefix = _split_base(base_url)
    path = f"{prefix}/{key}"
    if signer is None:
        return host + path
    if expires_at is not None:
        return host + signer.sign_until(path, expires_at)
    return host + signer.sign(path, expires_in=expires_in, now=now)


def stable_expiry(expires_in: int, step_s: int, now: float | None = None) -> int:
    """An expiry at least `expires_in` from now, rounded up to a multiple of `step_s`: every URL minted
    within one step gets the same expiry, so the same URL (cacheable by the browser and the CDN, and
    memoized by `UrlSigner.sign_until`); each stays valid between `expires_in` and
    `expires_in + step_s` seconds."""
    t = int(now if now is not None else time.time()) + int(expires_in)
    return -(-t // step_s) * step_s


@functools.lru_cache(maxsize=16)
def _split_base(base_url: str) -> tuple[str, str]:
    """(scheme://host, path) of a CDN base URL: parsed once, not per URL."""
    parts = urlsplit(base_url.rstrip("/"))
    return (f"{parts.scheme}://{parts.netloc}" if parts.netloc else ""), parts.path
