"""Signed CDN URLs for one stored media item: its master, its thumbnail and its srcset.

Everything the client sees as a URL is minted here, per response, from the stored keys, so a cached
search result never outlives the URLs in it. Their expiry is stable for `URL_EXPIRY_STEP_S`
(`stable_expiry`): within that window a response's URLs are the ones of the response before (the
browser and the CDN keep them cached). `UrlMinter` (one per service) remembers each item's URLs for
the current expiry, so a search with 20 results seen before does not pay ~100 HMACs (measured:
`perflab bench cdn`, key `url_minting`), and `media_urls` signs each of an item's URLs once (its
srcset reuses them).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from perflab.cdn.signing import UrlSigner, cdn_url, stable_expiry
from perflab.cdn.srcset import srcset
from perflab.images.derivatives import MASTER, THUMBNAIL

URL_TTL_S = 3600
URL_EXPIRY_STEP_S = 300  # a URL lives URL_TTL_S to URL_TTL_S + this


@dataclass(frozen=True)
class MediaUrls:
    url: str | None
    thumbnail_url: str | None
    srcset: str | None


def media_urls(
    derivatives: Iterable[Mapping[str, Any]],
    base_url: str,
    signer: UrlSigner | None = None,
    *,
    expires_in: int = URL_TTL_S,
    now: float | None = None,
) -> MediaUrls:
    """The URLs of one item from its stored derivative records (`name`, `width`, `key`, ...), valid
    for at least `expires_in` seconds from `now`."""
    derivs = [SimpleNamespace(**d) for d in derivatives]
    if not derivs:
        return MediaUrls(None, None, None)
    expires_at = stable_expiry(expires_in, URL_EXPIRY_STEP_S, now)
    keys = {d.name: d.key for d in derivs}
    urls = {name: cdn_url(base_url, key, signer, expires_at=expires_at) for name, key in keys.items()}
    return MediaUrls(
        urls.get(MASTER),
        urls.get(THUMBNAIL),
        srcset(derivs, base_url, keys=keys, signer=signer, expires_at=expires_at, urls=urls),
    )


class UrlMinter:
    """The service's URLs: `media_urls` with one base URL and signer, remembered per item (its
    derivatives' keys: content-hashed, each naming its rendition, so the same keys are the same
    renditions at the same widths) for the current stable expiry. When the expiry moves on, or
    the memo is full, it starts over. Shared by the event loop and worker threads: plain dict
    operations only, each atomic."""

    def __init__(
        self, base_url: str, signer: UrlSigner | None, *, expires_in: int = URL_TTL_S, memo_size: int = 20_000
    ) -> None:
        self.base_url = base_url
        self.signer = signer
        self.expires_in = expires_in
        self._memo_size = memo_size
        self._memo: dict[tuple[Any, ...], MediaUrls] = {}
        self._expires_at = 0

    def expiry(self, now: float) -> int:
        """The expiry of every URL minted at `now`: one value per URL_EXPIRY_STEP_S window."""
        return stable_expiry(self.expires_in, URL_EXPIRY_STEP_S, now)

    def urls(self, derivatives: Iterable[Mapping[str, Any]], now: float | None = None) -> MediaUrls:
        records = list(derivatives)
        if not records:
            return MediaUrls(None, None, None)
        now = time.time() if now is None else now  # one clock reading for the memo and the URLs
        expires_at = self.expiry(now)
        if expires_at != self._expires_at or len(self._memo) >= self._memo_size:
            self._memo = {}
            self._expires_at = expires_at
        key = tuple([d.get("key") for d in records])  # content-hashed, each naming its rendition
        found = self._memo.get(key)
        if found is None:
            found = media_urls(records, self.base_url, self.signer, expires_in=self.expires_in, now=now)
            self._memo[key] = found
        return found
