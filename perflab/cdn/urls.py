"""Signed CDN URLs for one stored media item: its master, its thumbnail and its srcset.

Everything the client sees as a URL is minted here, per response, from the stored keys, so a cached
search result never outlives the URLs in it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from perflab.cdn.signing import UrlSigner, cdn_url
from perflab.cdn.srcset import srcset
from perflab.images.derivatives import MASTER, THUMBNAIL

URL_TTL_S = 3600


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
) -> MediaUrls:
    """The URLs of one item from its stored derivative records (`name`, `width`, `key`, ...)."""
    derivs = [SimpleNamespace(**d) for d in derivatives]
    if not derivs:
        return MediaUrls(None, None, None)
    keys = {d.name: d.key for d in derivs}
    urls = {name: cdn_url(base_url, key, signer, expires_in=expires_in) for name, key in keys.items()}
    return MediaUrls(
        urls.get(MASTER),
        urls.get(THUMBNAIL),
        srcset(derivs, base_url, keys=keys, signer=signer, expires_in=expires_in),
    )
