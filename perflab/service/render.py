"""The `results` of a search response as JSON bytes: each result's public record, with signed CDN URLs
instead of storage keys.

A cached entry's rendering is remembered by the entry's stored bytes for the current URL expiry
(`UrlMinter.expiry`): the URLs in it are the ones the minter would mint again until the expiry moves
on, so a repeated hit of one entry neither parses it, nor mints, nor serializes. The key is the
entry itself, compared byte for byte (an entry names its user's media only, and equal entries render
equally), so no user is ever answered from another's entry. The memo holds at most `memo_bytes`
of entries and renderings, and starts over when full or when the expiry moves.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from perflab.cdn import UrlMinter

_PRIVATE = ("storage_key", "derivatives")


@dataclass(frozen=True)
class Rendered:
    count: int
    json: bytes  # the results array, serialized


class ResultRenderer:
    """Public records and their JSON, remembered per cached entry. Shared by the event loop and
    worker threads: plain dict operations only, each atomic (a lost race renders twice)."""

    def __init__(self, urls: UrlMinter, *, memo_bytes: int = 32 * 1024 * 1024) -> None:
        self.urls = urls
        self._memo_bytes = memo_bytes
        self._memo: dict[bytes, Rendered] = {}
        self._held = 0
        self._expires_at = 0

    def public(self, record: Mapping[str, Any], now: float | None = None) -> dict[str, Any]:
        """A media record as the client sees it: signed CDN URLs and a srcset instead of storage keys."""
        out = {k: v for k, v in record.items() if k not in _PRIVATE}
        urls = self.urls.urls(record.get("derivatives") or (), now=now)
        out["url"] = urls.url
        out["thumbnail_url"] = urls.thumbnail_url
        out["srcset"] = urls.srcset
        return out

    def render(self, results: Sequence[Mapping[str, Any]], now: float | None = None) -> Rendered:
        now = time.time() if now is None else now  # one clock for every URL of the response
        return Rendered(len(results), orjson.dumps([self.public(r, now) for r in results]))

    def remembered(self, entry: bytes, now: float | None = None) -> Rendered | None:
        """The rendering of this cached entry, if it was rendered under the current URL expiry."""
        self._roll(time.time() if now is None else now)
        return self._memo.get(entry)

    def remember(
        self, entry: bytes, results: Sequence[Mapping[str, Any]], now: float | None = None
    ) -> Rendered:
        """Render the results parsed from `entry` and remember the rendering by the entry's bytes."""
        now = time.time() if now is None else now
        self._roll(now)
        rendered = self.render(results, now)
        if self._expires_at != self.urls.expiry(now):  # another thread rolled on meanwhile
            return rendered
        size = len(entry) + len(rendered.json)
        if self._held + size > self._memo_bytes:
            self._memo = {}
            self._held = 0
        if size <= self._memo_bytes:
            self._memo[entry] = rendered
            self._held += size
        return rendered

    def _roll(self, now: float) -> None:
        expires_at = self.urls.expiry(now)
        if expires_at != self._expires_at:
            self._memo = {}
            self._held = 0
            self._expires_at = expires_at
