"""ResultRenderer: public records of search results, and the memo a repeated hit is answered from."""

from __future__ import annotations

from typing import Any

import orjson

from perflab.cdn import UrlMinter, UrlSigner
from perflab.service.render import ResultRenderer

NOW = 1_700_000_000
BASE = "https://cdn.example.com/media"


def _record(n: int) -> dict[str, Any]:
    derivs = [{"name": name, "width": w, "key": f"media/{n:02d}/{n}-{name}.webp"}
              for name, w in (("master", 2000), ("thumb", 200), ("w320", 320))]  # fmt: skip
    return {"id": f"m{n}", "caption": f"item {n}", "storage_key": f"secret/{n}", "derivatives": derivs}


def _renderer(memo_bytes: int = 1 << 20) -> tuple[ResultRenderer, UrlSigner]:
    signer = UrlSigner(b"s" * 32)
    return ResultRenderer(UrlMinter(BASE, signer, expires_in=3600), memo_bytes=memo_bytes), signer


def test_public_records_carry_signed_urls_and_no_storage_keys() -> None:
    render, signer = _renderer()
    out = orjson.loads(render.render([_record(1), _record(2)], now=NOW).json)
    assert [r["id"] for r in out] == ["m1", "m2"]
    assert all("storage_key" not in r and "derivatives" not in r for r in out)
    assert signer.verify(out[0]["url"], now=NOW + 3599) and "1-thumb" in out[0]["thumbnail_url"]
    assert out[0]["srcset"].count("w,") == 1  # w320 and the master, the thumbnail left out


def test_an_entry_is_remembered_by_its_bytes_for_the_current_expiry_only() -> None:
    render, _ = _renderer()
    entry = b"7|" + orjson.dumps([_record(1)])
    assert render.remembered(entry, now=NOW) is None
    first = render.remember(entry, [_record(1)], now=NOW)
    assert first.count == 1 and first.json == render.render([_record(1)], now=NOW).json
    assert render.remembered(bytes(entry), now=NOW + 1) is first  # equal bytes, another object
    assert render.remembered(b"8|" + entry[2:], now=NOW + 1) is None  # another generation's entry
    later = NOW + 3600  # a later expiry step: URLs signed anew, the memo starts over
    assert render.remembered(entry, now=later) is None
    assert render.remember(entry, [_record(1)], now=later).json != first.json


def test_the_memo_is_bounded_in_bytes() -> None:
    render, _ = _renderer(memo_bytes=4096)
    entries = [b"1|" + orjson.dumps([_record(n)]) for n in range(40)]
    for n, entry in enumerate(entries):
        render.remember(entry, [_record(n)], now=NOW)
    assert render._held <= 4096 and len(render._memo) < 40
    assert render.remembered(entries[-1], now=NOW) is not None  # the newest survives a start-over
    huge = b"1|" + b" " * 8192
    render.remember(huge, [_record(1)], now=NOW)
    assert render.remembered(huge, now=NOW) is None  # larger than the whole budget: never held
