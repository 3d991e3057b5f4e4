"""The search service's HTTP API (FastAPI on uvicorn): `create_app` assembles the endpoints, the
error table and the middleware; it holds no logic of its own.

Malformed input is 422, oversized input 413/414, a database outage 503. Redis outages are invisible to
searchers: caches miss, sessions fall back to the signed cookie.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import psycopg_pool
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.routing import request_response

from perflab.cache import CacheUnavailable
from perflab.config import Settings
from perflab.db.errors import EmbedderMismatch, InvalidInput
from perflab.images.errors import DecompressionBomb, ImageError, TooLarge, UnsupportedFormat
from perflab.service import endpoints
from perflab.service.context import ServiceContext
from perflab.service.errors import InvalidSearch, InvalidUpload
from perflab.service.middleware import LimitsAndMetrics

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ErrorRule:
    """How one error type is answered: its status, a fixed detail (else the error's message), a
    Retry-After for outages, and whether the body names the error type."""

    status: int
    detail: str | None = None
    retry: bool = False
    named: bool = False


_DB_DOWN = ErrorRule(503, "database unavailable, retry shortly", retry=True)

# Error -> status: the nearest class along the raised error's MRO wins (TooLarge before ImageError).
ERROR_STATUS: dict[type[Exception], ErrorRule] = {
    psycopg_pool.PoolTimeout: _DB_DOWN,
    psycopg.OperationalError: _DB_DOWN,
    # SQLSTATE class 22 (or psycopg refusing to send a value, e.g. a NUL in text): the input is at
    # fault, not the server. The routes validate first; this keeps anything they miss from a 500.
    psycopg.DataError: ErrorRule(422),
    CacheUnavailable: ErrorRule(503, "session store unavailable, retry shortly", retry=True),
    InvalidInput: ErrorRule(422),
    InvalidSearch: ErrorRule(422),
    EmbedderMismatch: ErrorRule(409, named=True),
    InvalidUpload: ErrorRule(422),
    TooLarge: ErrorRule(413, named=True),
    DecompressionBomb: ErrorRule(413, named=True),
    UnsupportedFormat: ErrorRule(415, named=True),
    ImageError: ErrorRule(422, named=True),
}


def rule_for(exc: BaseException) -> ErrorRule | None:
    for cls in type(exc).__mro__:
        rule = ERROR_STATUS.get(cls)
        if rule is not None:
            return rule
    return None


async def error_response(request: Request, exc: Exception) -> JSONResponse:
    """The one exception handler: the status and body from ERROR_STATUS."""
    rule = rule_for(exc)
    if rule is None:  # only registered for the table's types
        raise exc
    if isinstance(exc, psycopg.OperationalError):
        _log.warning("database unavailable: %s", exc)
        endpoints.context(request).recheck_pool()
    elif isinstance(exc, psycopg.DataError):
        _log.warning("data error on %s: %s", request.url.path, exc)
    if rule.detail is not None:
        detail = rule.detail
    elif isinstance(exc, psycopg.DataError):
        detail = f"invalid input: {' '.join(str(exc).split())[:200]}"
    else:
        detail = str(exc)
    body: dict[str, Any] = {"detail": detail}
    if rule.named:
        body["error"] = type(exc).__name__
    return JSONResponse(body, rule.status, headers={"Retry-After": "1"} if rule.retry else None)


@dataclass(frozen=True)
class RouteSpec:
    """One route. With `serve`, `endpoint` only documents it (its signature is the OpenAPI
    parameters) and `serve(request)` answers it, past FastAPI's parameter handling."""

    method: str
    path: str
    endpoint: Callable[..., Any]
    summary: str
    status_code: int | None = None
    response_class: type[Any] | None = None
    serve: Callable[[Request], Awaitable[Response]] | None = None


ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec(
        "POST", "/sessions", endpoints.login, "sign in as a seeded user (sets the session cookie)", 201
    ),
    RouteSpec("DELETE", "/sessions", endpoints.logout, "sign out", 204),
    RouteSpec(
        "GET",
        "/search",
        endpoints.search_parameters,
        "natural-language search over the signed-in user's media",
        serve=endpoints.search,
    ),
    RouteSpec("POST", "/media", endpoints.upload, "upload an image with an optional caption and tags", 201),
    RouteSpec(
        "GET",
        "/media/{media_id}",
        endpoints.get_media,
        "one of the signed-in user's media, with CDN URLs and srcset",
    ),
    RouteSpec(
        "GET", "/health", endpoints.health, "liveness; ?detailed=true adds servers, pools and cache hit rates"
    ),
    RouteSpec(
        "GET", "/metrics", endpoints.metrics, "Prometheus exposition", response_class=PlainTextResponse
    ),
)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Build the process's context (pools, clients) at startup, unless one was given; close it after."""
    given: ServiceContext | None = app.state.given_context
    ctx = given if given is not None else await run_in_threadpool(ServiceContext.build, app.state.settings)
    app.state.ctx = ctx
    ctx.start()
    try:
        yield
    finally:
        if given is None:
            await run_in_threadpool(ctx.close)


def create_app(settings: Settings, *, context: ServiceContext | None = None) -> FastAPI:
    app = FastAPI(
        title="perflab search service",
        version="0.1.0",
        description="Natural-language search over each user's media library.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.given_context = context
    app.add_middleware(LimitsAndMetrics)
    for exc_type in ERROR_STATUS:
        app.add_exception_handler(exc_type, error_response)
    for route in ROUTES:
        extra: dict[str, Any] = {}
        if route.status_code is not None:
            extra["status_code"] = route.status_code
        if route.response_class is not None:
            extra["response_class"] = route.response_class
        if route.serve is not None:
            extra["name"] = route.serve.__name__  # the operationId names what serves it
        app.add_api_route(route.path, route.endpoint, methods=[route.method], summary=route.summary, **extra)
        if route.serve is not None:
            added = app.router.routes[-1]
            assert isinstance(added, APIRoute) and added.path == route.path
            added.app = request_response(route.serve)  # Starlette's: the app's error handlers still apply
    return app


def create_app_from_env() -> FastAPI:
    """uvicorn's factory (`perflab serve`): each worker builds its app from the environment."""
    return create_app(Settings.from_env())
