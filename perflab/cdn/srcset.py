"""`srcset` attribute values for responsive images.

Only full-frame derivatives go in (the master and the responsive widths): the square cover thumbnail
shows a crop, and a browser picking it from a srcset would show a different picture.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from perflab.cdn.signing import UrlSigner, cdn_url
from perflab.images.derivatives import THUMBNAIL
from perflab.images.keys import object_key


class _DerivativeLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def width(self) -> int: ...
    @property
    def data(self) -> bytes: ...
    @property
    def extension(self) -> str: ...


def srcset(
    derivatives: Iterable[_DerivativeLike],
    base_url: str,
    *,
    keys: Mapping[str, str] | None = None,
    signer: UrlSigner | None = None,
    expires_in: int = 3600,
    now: float | None = None,
    expires_at: int | None = None,
    urls: Mapping[str, str] | None = None,
) -> str:
    """`"{base}/{key} 320w, {base}/{key} 640w, ..."`, narrowest first, one candidate per width.

    `keys` maps derivative name to its stored key (from `store_processed`); without it the
    content-hashed key is computed. With a `signer`, each URL is signed (private media). `urls`:
    derivative name -> its URL already minted (`media_urls` signs each once, not again here).
    """
    by_width: dict[int, str] = {}
    for d in derivatives:
        if d.name == THUMBNAIL or d.width in by_width:
            continue
        url = urls.get(d.name) if urls is not None else None
        if url is None:
            key = keys[d.name] if keys is not None else object_key(d.data, d.name, d.extension)
            url = cdn_url(base_url, key, signer, expires_in=expires_in, now=now, expires_at=expires_at)
        by_width[d.width] = f"{url} {d.width}w"
    return ", ".join(by_width[w] for w in sorted(by_width))
