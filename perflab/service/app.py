"""The search service's HTTP API (FastAPI on uvicorn).

Every data route is scoped to the session's user: no session is 401, another user's media is 404
(its existence is not confirmed), malformed input is 422, oversized input 413/414, a database outage
503. Redis outages are invisible to searchers: caches miss, sessions fall back to the signed cookie.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from types import SimpleNamespace
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import psycopg
import psycopg_pool
from fastapi import Depends, FastAPI, File, Form, HTTPException, Query, Request, Response, UploadFile
from fastapi.responses import JSONResponse, ORJSONResponse, PlainTextResponse
from psycopg.rows import dict_row
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from perflab.cache import CacheUnavailable
from perflab.cdn import srcset
from perflab.config import Settings
from perflab.db.errors import InvalidInput
from perflab.images import ImageError
from perflab.images.derivatives import MASTER, THUMBNAIL
from perflab.images.errors import DecompressionBomb, TooLarge, UnsupportedFormat
from perflab.service.auth import COOKIE_NAME, Principal
from perflab.service.context import ServiceContext
from perflab.service.middleware import MAX_UPLOAD_BYTES, LimitsAndMetrics
from perflab.service.search import MAX_QUERY_CHARS, InvalidSearch, SearchRequest
from perflab.service.upload import InvalidUpload, parse_tags

_log = logging.getLogger(__name__)

URL_TTL_S = 3600

MediaType = Literal["image", "video", "audio", "document"]


class LoginRequest(BaseModel):
    email: str = Field(
        min_length=3, max_length=320, description="a seeded user's email, e.g. user1@example.com"
    )


def _ctx(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.ctx
    return ctx


def current_user(request: Request) -> Principal:
    principal = _ctx(request).auth.authenticate(request.cookies.get(COOKIE_NAME))
    if principal is None:
        raise HTTPException(
            401, "not signed in: POST /sessions first", headers={"WWW-Authenticate": "Cookie"}
        )
    return principal


User = Annotated[Principal, Depends(current_user)]


def _with_urls(ctx: ServiceContext, record: dict[str, Any]) -> dict[str, Any]:
    """A result as the client sees it: signed CDN URLs and a srcset instead of storage keys."""
    out = {k: v for k, v in record.items() if k not in ("storage_key", "derivatives")}
    base = ctx.settings.cdn_base_url.rstrip("/")
    derivs = [SimpleNamespace(**d) for d in record.get("derivatives") or []]
    keys = {d.name: d.key for d in derivs}
    # Sign the whole path the CDN sees (the base URL's path included, as srcset does), or the origin
    # refuses the URL: it checks the signature over the path it was asked for.
    parts = urlsplit(base)
    host = f"{parts.scheme}://{parts.netloc}" if parts.netloc else ""
    urls = {d.name: host + ctx.signer.sign(f"{parts.path}/{d.key}", expires_in=URL_TTL_S) for d in derivs}
    out["url"] = urls.get(MASTER)
    out["thumbnail_url"] = urls.get(THUMBNAIL)
    out["srcset"] = (
        srcset(derivs, base, keys=keys, signer=ctx.signer, expires_in=URL_TTL_S) if derivs else None
    )
    return out


def create_app(settings: Settings, *, context: ServiceContext | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx: ServiceContext = (
            context if context is not None else await run_in_threadpool(ServiceContext.build, settings)
        )
        app.state.ctx = ctx
        ctx.start()
        try:
            yield
        finally:
            if context is None:
                await run_in_threadpool(ctx.close)

    app = FastAPI(
        title="perflab search service",
        version="0.1.0",
        description="Natural-language search over each user's media library.",
        lifespan=lifespan,
    )

    app.add_middleware(LimitsAndMetrics)

    @app.exception_handler(psycopg.OperationalError)
    @app.exception_handler(psycopg_pool.PoolTimeout)
    async def database_down(request: Request, exc: Exception) -> JSONResponse:
        _log.warning("database unavailable: %s", exc)
        if isinstance(exc, psycopg.OperationalError):
            _ctx(request).recheck_pool()
        return JSONResponse(
            {"detail": "database unavailable, retry shortly"}, 503, headers={"Retry-After": "1"}
        )

    @app.exception_handler(psycopg.DataError)
    async def bad_data(request: Request, exc: psycopg.DataError) -> JSONResponse:
        # SQLSTATE class 22 (or psycopg refusing to send a value, e.g. a NUL in text): the input is at
        # fault, not the server. The routes validate first; this keeps anything they miss from a 500.
        _log.warning("data error on %s: %s", request.url.path, exc)
        return JSONResponse({"detail": f"invalid input: {' '.join(str(exc).split())[:200]}"}, 422)

    @app.exception_handler(CacheUnavailable)
    async def sessions_down(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(
            {"detail": "session store unavailable, retry shortly"}, 503, headers={"Retry-After": "1"}
        )

    @app.exception_handler(InvalidInput)
    @app.exception_handler(InvalidSearch)
    @app.exception_handler(InvalidUpload)
    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 422)

    @app.exception_handler(ImageError)
    async def bad_image(request: Request, exc: ImageError) -> JSONResponse:
        status = 422
        if isinstance(exc, TooLarge | DecompressionBomb):
            status = 413
        elif isinstance(exc, UnsupportedFormat):
            status = 415
        return JSONResponse({"detail": str(exc), "error": type(exc).__name__}, status)

    @app.post("/sessions", status_code=201, summary="sign in as a seeded user (sets the session cookie)")
    def login(body: LoginRequest, request: Request, response: Response) -> dict[str, str]:
        ctx = _ctx(request)
        if "\x00" in body.email:
            raise HTTPException(422, "the email contains a NUL character")
        with ctx.pool.connection() as conn:
            row = conn.execute(
                "UPDATE users SET last_login_at = now() WHERE email = %s RETURNING id",
                (body.email.strip().lower(),),
            ).fetchone()
        if row is None:
            raise HTTPException(401, "unknown user")
        user_id = str(row[0])
        cookie = ctx.auth.login(
            user_id, {"email": body.email}, previous_cookie=request.cookies.get(COOKIE_NAME)
        )
        response.set_cookie(
            COOKIE_NAME,
            cookie,
            max_age=ctx.settings.session_absolute_s,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            path="/",
        )
        return {"user_id": user_id}

    @app.delete("/sessions", status_code=204, summary="sign out")
    def logout(request: Request, response: Response) -> Response:
        _ctx(request).auth.logout(request.cookies.get(COOKIE_NAME))
        out = Response(status_code=204)
        out.delete_cookie(COOKIE_NAME, path="/")
        return out

    @app.get("/search", summary="natural-language search over the signed-in user's media")
    def search(
        request: Request,
        user: User,
        q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS)],
        type: Annotated[MediaType | None, Query()] = None,
        from_: Annotated[datetime | None, Query(alias="from")] = None,
        to: Annotated[datetime | None, Query()] = None,
        k: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> JSONResponse:
        ctx = _ctx(request)
        for value, name in ((from_, "from"), (to, "to")):
            if value is not None and value.tzinfo is None:
                raise InvalidSearch(f"'{name}' needs a time zone, e.g. 2024-01-01T00:00:00Z")
        outcome = ctx.search.search(SearchRequest(user.user_id, q, k, type, from_, to))
        ctx.metrics.search_cache.labels("hit" if outcome.cache_hit else "miss").inc()
        for stage, ms in outcome.timings_ms.items():
            ctx.metrics.stage.labels(stage).observe(ms / 1000)
        body = {
            "query": q,
            "count": len(outcome.results),
            "cache_hit": outcome.cache_hit,
            "timings_ms": outcome.timings_ms,
            "results": [_with_urls(ctx, r) for r in outcome.results],
        }
        return ORJSONResponse(body, headers={"Server-Timing": outcome.timer.server_timing()})

    @app.post("/media", status_code=201, summary="upload an image with an optional caption and tags")
    def upload(
        request: Request,
        user: User,
        file: Annotated[UploadFile, File(description="JPEG, PNG, WebP, GIF, AVIF or TIFF")],
        caption: Annotated[str | None, Form(max_length=2000)] = None,
        tags: Annotated[str | None, Form(max_length=4000, description="comma-separated")] = None,
    ) -> JSONResponse:
        ctx = _ctx(request)
        data = file.file.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise TooLarge(len(data), MAX_UPLOAD_BYTES)
        try:
            result = ctx.uploads.upload(
                user.user_id, data, filename=file.filename or "upload", caption=caption, tags=parse_tags(tags)
            )
        except Exception:
            ctx.metrics.uploads.labels("rejected").inc()
            raise
        ctx.metrics.uploads.labels("stored").inc()
        media = _load_media(ctx, user.user_id, result.media_id)
        return JSONResponse(media, 201, headers={"Location": f"/media/{result.media_id}"})

    @app.get("/media/{media_id}", summary="one of the signed-in user's media, with CDN URLs and srcset")
    def get_media(request: Request, user: User, media_id: uuid.UUID) -> dict[str, Any]:
        return _load_media(_ctx(request), user.user_id, str(media_id))

    @app.get("/health", summary="liveness; ?detailed=true adds servers, pools and cache hit rates")
    def health(request: Request, detailed: bool = False) -> JSONResponse:
        ctx = _ctx(request)
        checks: dict[str, Any] = {}
        try:
            with ctx.pool.connection(timeout=2) as conn:
                row = conn.execute(
                    "SELECT current_setting('server_version'),"
                    " (SELECT extversion FROM pg_extension WHERE extname = 'vector')"
                ).fetchone()
            checks["postgres"] = {"ok": True, "version": row[0] if row else None}
            checks["pgvector"] = {"ok": bool(row and row[1]), "version": row[1] if row else None}
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            checks["postgres"] = {"ok": False, "error": " ".join(str(exc).split())[:200]}
        checks["redis"] = {"ok": ctx.cache.healthy()}
        ready = ctx.metrics.readiness()
        status = (
            "ok"
            if checks["postgres"]["ok"] and checks["redis"]["ok"]
            else ("degraded" if checks["postgres"]["ok"] else "down")
        )
        if not ready.ok:  # some worker still loads its embedder: not ready for traffic
            status = "starting"
        body: dict[str, Any] = {
            "status": status,
            "workers": {"expected": ready.expected, "ready": ready.ready},
        }
        if detailed:
            body["checks"] = checks
            body["embedder"] = ctx.embedder.model_name
            body.update(ctx.metrics.health_summary())  # cache, history, search_cache: all workers
            body["worker"] = {
                "scope": "this worker only",
                "pid": os.getpid(),
                "pool": ctx.pool.get_stats(),
                "cache": ctx.cache.stats().as_dict(),  # breaker and latency percentiles are per worker
                "history": {"written": ctx.history.written, "dropped": ctx.history.dropped},
                "pending_invalidations": len(ctx.uploads.pending),
            }
        return JSONResponse(body, 200 if status in ("ok", "degraded") else 503)

    @app.get("/metrics", summary="Prometheus exposition", response_class=PlainTextResponse)
    def metrics(request: Request) -> Response:
        return Response(_ctx(request).metrics.exposition(), media_type="text/plain; version=0.0.4")

    return app


def _load_media(ctx: ServiceContext, user_id: str, media_id: str) -> dict[str, Any]:
    with ctx.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        record = cur.execute(
            "SELECT id, filename, caption, media_type, mime_type, uploaded_at, width, height, file_size_bytes,"
            " tags, blurhash, dominant_colors, status, derivatives"
            " FROM media_files WHERE id = %s AND user_id = %s",
            (media_id, user_id),
            prepare=True,
        ).fetchone()
    if record is None:
        raise HTTPException(404, "no such media")
    record["id"] = str(record["id"])
    record["uploaded_at"] = record["uploaded_at"].isoformat()
    return _with_urls(ctx, record)


def create_app_from_env() -> FastAPI:
    """uvicorn's factory (`perflab serve`): each worker builds its app from the environment."""
    return create_app(Settings.from_env())
