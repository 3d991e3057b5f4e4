"""A real nginx edge (Debian's) with proxy_cache in front of the origin, on free loopback ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from perflab.cdn import (
    EdgeUnavailable,
    NginxEdge,
    OriginServer,
    UrlSigner,
    find_nginx,
    make_origin_app,
    srcset,
)
from perflab.images import ImagePipeline
from perflab.images.storage import LocalStorage, store_processed
from perflab.servers.ports import free_port

pytestmark = pytest.mark.skipif(
    find_nginx() is None, reason="nginx is not installed (the Makefile's sysdeps target installs it as root)"
)
SECRET = b"edge-test-secret-0123456789abcdef"


@pytest.fixture()
def stack(tmp_path: Path, image_corpus: Path) -> Iterator[tuple[str, dict[str, str], Path]]:
    store = LocalStorage(tmp_path / "media")
    result = ImagePipeline().process((image_corpus / "photos" / "rocket.jpg").read_bytes())
    keys = store_processed(store, result)
    app = make_origin_app(tmp_path / "media")
    with (
        OriginServer(app, free_port()) as origin,
        NginxEdge(origin.url, tmp_path / "edge", free_port()) as edge,
    ):
        yield edge.url, keys, tmp_path


def test_repeated_request_is_a_hit(stack: tuple[str, dict[str, str], Path]) -> None:
    url, keys, _ = stack
    with httpx.Client(base_url=url) as c:
        first = c.get(f"/media/{keys['w320']}")
        second = c.get(f"/media/{keys['w320']}")
        assert first.status_code == second.status_code == 200
        assert first.headers["x-cache-status"] == "MISS"
        assert second.headers["x-cache-status"] == "HIT"
        assert second.content == first.content and second.headers["etag"] == first.headers["etag"]
        assert second.headers["cache-control"] == "public, max-age=31536000, immutable"
        revalidated = c.get(f"/media/{keys['w320']}", headers={"If-None-Match": first.headers["etag"]})
        assert revalidated.status_code == 304 and revalidated.headers["x-cache-status"] == "HIT"
        missing = [c.get("/media/ab/nothing-here.jpg").headers["x-cache-status"] for _ in range(2)]
        assert missing == ["MISS", "MISS"]  # 404s are no-store: never cached


def test_srcset_urls_are_served_by_the_edge(stack: tuple[str, dict[str, str], Path]) -> None:
    url, keys, _ = stack

    class _D:
        def __init__(self, name: str, width: int) -> None:
            self.name, self.width, self.data, self.extension = name, width, b"", "jpg"

    value = srcset([_D("w320", 320), _D("master", 640)], url + "/media", keys=keys)
    with httpx.Client() as c:
        for candidate in value.split(", "):
            assert c.get(candidate.split(" ")[0]).status_code == 200


def test_signed_private_media_is_never_cached_by_the_edge(tmp_path: Path, image_corpus: Path) -> None:
    store = LocalStorage(tmp_path / "media")
    result = ImagePipeline().process((image_corpus / "photos" / "rocket.jpg").read_bytes())
    key = store_processed(store, result)["thumb"]
    signer = UrlSigner(SECRET)
    app = make_origin_app(tmp_path / "media", signer)
    with (
        OriginServer(app, free_port()) as origin,
        NginxEdge(origin.url, tmp_path / "edge", free_port()) as edge,
        httpx.Client(base_url=edge.url) as c,
    ):
        signed = signer.sign(f"/media/{key}", expires_in=300)
        statuses = [(r.status_code, r.headers["x-cache-status"]) for r in (c.get(signed), c.get(signed))]
        assert statuses == [(200, "MISS"), (200, "MISS")]
        forged = [c.get(f"/media/{key}").status_code, c.get(signed.replace("exp=", "exp=9")).status_code]
        assert forged == [403, 403]


def test_edge_reports_a_failed_start(tmp_path: Path) -> None:
    busy = NginxEdge("http://127.0.0.1:9", tmp_path / "a", free_port())
    busy.start()
    try:
        clash = NginxEdge("http://127.0.0.1:9", tmp_path / "b", busy.port)
        with pytest.raises(EdgeUnavailable, match="did not start"):
            clash.start(timeout=5)
    finally:
        busy.stop()
