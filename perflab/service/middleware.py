"""Request limits and HTTP metrics as plain ASGI middleware (no per-request task or body copy, unlike
Starlette's BaseHTTPMiddleware, which costs more than a cached search itself)."""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 64 * 1024
MAX_UPLOAD_BYTES = 25 * 1024 * 1024
MAX_QUERY_STRING = 4096
_UPLOAD_PATH = "/media"


class _BodyTooLarge(Exception):
    pass


async def _reply(send: Send, status: int, detail: str) -> None:
    body = orjson.dumps({"detail": detail})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class LimitsAndMetrics:
    """414 for a long query string, 413 for a body over the limit (declared or streamed), and a
    request counter + latency histogram per route template."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        if len(scope.get("query_string", b"")) > MAX_QUERY_STRING:
            await _reply(send, 414, f"query string longer than {MAX_QUERY_STRING} bytes")
            return
        limit = MAX_UPLOAD_BYTES + 64 * 1024 if scope["path"] == _UPLOAD_PATH else MAX_BODY_BYTES
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and (not value.isdigit() or int(value) > limit):
                await _reply(send, 413, f"request body larger than {limit} bytes")
                return
        seen = 0
        status = 500
        too_large = False
        replied = False

        async def limited_receive() -> Message:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    too_large = True
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            # Frameworks turn an error while reading the body into their own 4xx; answer 413 instead.
            nonlocal status, replied
            if too_large:
                if not replied:
                    replied = True
                    await _reply(send, 413, f"request body larger than {limit} bytes")
                return
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not replied:
                await _reply(send, 413, f"request body larger than {limit} bytes")
        finally:
            self._observe(scope, 413 if too_large else status, time.perf_counter() - started)

    @staticmethod
    def _observe(scope: Scope, status: int, seconds: float) -> None:
        app: Any = scope.get("app")
        ctx = getattr(getattr(app, "state", None), "ctx", None)
        if ctx is None:
            return
        route = getattr(scope.get("route"), "path", "unmatched")
        ctx.metrics.requests.labels(route, scope["method"], str(status)).inc()
        ctx.metrics.latency.labels(route).observe(seconds)
