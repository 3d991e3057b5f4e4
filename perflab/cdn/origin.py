"""The media origin: a small ASGI app serving stored derivatives with ETag/304 and cache headers, and
a runner that serves it on a loopback port (for the nginx edge, the tests and the benchmarks).

Routes: `GET|HEAD /media/{key}` and `GET /healthz`. With a signer, every media request needs a valid
signature (403 otherwise, never cached) and is answered `private`, so the shared edge cannot keep it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import anyio.to_thread
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from perflab.cdn.errors import SignatureError
from perflab.cdn.headers import cache_control_for, etag_for, etag_matches, private_cache_control
from perflab.cdn.signing import UrlSigner
from perflab.errors import ServiceUnavailable
from perflab.images.errors import InvalidKey, ObjectNotFound
from perflab.images.storage import LocalStorage, content_type_for_key
from perflab.net import wait_until

MOUNT = "/media"
_NO_STORE = {"Cache-Control": "no-store"}


def _raw_target(request: Request) -> str:
    """Path and query exactly as the client sent them (what was signed), not percent-decoded."""
    raw: bytes = request.scope.get("raw_path") or request.url.path.encode()
    query: bytes = request.scope.get("query_string", b"")
    return raw.decode("latin-1") + (f"?{query.decode('latin-1')}" if query else "")


def make_origin_app(root: Path, signer: UrlSigner | None = None) -> Starlette:
    """Serve the objects of `LocalStorage(root)` under /media/{key}."""
    storage = LocalStorage(root)

    async def media(request: Request) -> Response:
        key = request.path_params["key"]
        try:
            storage.path(key)
        except InvalidKey as exc:
            return PlainTextResponse(str(exc), status_code=400, headers=_NO_STORE)
        if signer is not None:
            try:
                expires = signer.check(_raw_target(request))
            except SignatureError as exc:
                return PlainTextResponse(str(exc), status_code=403, headers=_NO_STORE)
            cache_control = private_cache_control(expires, int(time.time()))
        else:
            cache_control = cache_control_for(key)
        try:
            data = await anyio.to_thread.run_sync(storage.get, key)
        except ObjectNotFound:
            return PlainTextResponse("not found", status_code=404, headers=_NO_STORE)
        headers = {
            "ETag": etag_for(key, data),
            "Cache-Control": cache_control,
            "X-Content-Type-Options": "nosniff",
        }
        if etag_matches(request.headers.get("if-none-match"), headers["ETag"]):
            return Response(status_code=304, headers=headers)
        return Response(data, media_type=content_type_for_key(key), headers=headers)

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok", headers=_NO_STORE)

    return Starlette(
        routes=[
            Route(MOUNT + "/{key:path}", media, methods=["GET", "HEAD"]),
            Route("/healthz", health, methods=["GET"]),
        ]
    )


class OriginServer:
    """Runs an ASGI app with uvicorn in a background thread on a loopback port."""

    def __init__(self, app: Starlette, port: int, host: str = "127.0.0.1") -> None:
        self.app = app
        self.host = host
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> OriginServer:
        config = uvicorn.Config(
            self.app, host=self.host, port=self.port, log_level="warning", lifespan="off", access_log=False
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name=f"origin-{self.port}", daemon=True)
        thread.start()
        if not wait_until(lambda: server.started, timeout=timeout, interval=0.01, alive=thread.is_alive):
            server.should_exit = True
            raise ServiceUnavailable("origin", self.url, "did not start", "is the port already taken?")
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> OriginServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
