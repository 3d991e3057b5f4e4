"""The service's endpoints: one named, module-level function per route (`create_app` lists them).

Every data route is scoped to the session's user: no session is 401, another user's media is 404 (its
existence is not confirmed). Query validation is `SearchRequest`'s alone; errors become statuses by
`perflab.service.app.ERROR_STATUS`.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime
from typing import Annotated, Any

import orjson
import psycopg
import psycopg_pool
from fastapi import Depends, File, Form, HTTPException, Query, Request, Response, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams

from perflab.cache import CacheUnavailable
from perflab.db import MEDIA_TYPES
from perflab.db.users import record_login
from perflab.db.versions import server_versions
from perflab.images.errors import TooLarge
from perflab.images.safety import describe_formats
from perflab.service.auth import COOKIE_NAME, Principal
from perflab.service.context import ServiceContext
from perflab.service.errors import InvalidSearch
from perflab.service.middleware import MAX_UPLOAD_BYTES
from perflab.service.render import Rendered
from perflab.service.search import DEFAULT_K, MAX_K, MAX_QUERY_CHARS, SearchRequest
from perflab.service.upload import parse_tags
from perflab.timing import StageTimer


class LoginRequest(BaseModel):
    email: str = Field(
        min_length=3, max_length=320, description="a seeded user's email, e.g. user1@example.com"
    )


def context(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.ctx
    return ctx


def current_user(request: Request) -> Principal:
    principal = context(request).auth.authenticate(request.cookies.get(COOKIE_NAME))
    if principal is None:
        raise HTTPException(
            401, "not signed in: POST /sessions first", headers={"WWW-Authenticate": "Cookie"}
        )
    return principal


Ctx = Annotated[ServiceContext, Depends(context)]
User = Annotated[Principal, Depends(current_user)]


def login(body: LoginRequest, request: Request, response: Response, ctx: Ctx) -> dict[str, str]:
    if "\x00" in body.email:
        raise HTTPException(422, "the email contains a NUL character")
    found = record_login(ctx.pool, body.email)
    if found is None:
        raise HTTPException(401, "unknown user")
    user_id = str(found)
    cookie = ctx.auth.login(user_id, {"email": body.email}, previous_cookie=request.cookies.get(COOKIE_NAME))
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


def logout(request: Request, ctx: Ctx) -> Response:
    ctx.auth.logout(request.cookies.get(COOKIE_NAME))
    out = Response(status_code=204)
    out.delete_cookie(COOKIE_NAME, path="/")
    return out


# The bounds are documented from SearchRequest's constants; SearchRequest enforces them (422).
_Q = Query(json_schema_extra={"minLength": 1, "maxLength": MAX_QUERY_CHARS})
_K = Query(json_schema_extra={"minimum": 1, "maximum": MAX_K})
_TYPE = Query(json_schema_extra={"enum": list(MEDIA_TYPES)})


_NOT_SIGNED_IN = {"WWW-Authenticate": "Cookie"}


def _not_signed_in() -> HTTPException:
    return HTTPException(401, "not signed in: POST /sessions first", headers=_NOT_SIGNED_IN)


def search_parameters(
    q: Annotated[str, _Q],
    type: Annotated[str | None, _TYPE] = None,
    from_: Annotated[datetime | None, Query(alias="from", description="inclusive, with a time zone")] = None,
    to: Annotated[datetime | None, Query(description="inclusive, with a time zone")] = None,
    k: Annotated[int, _K] = DEFAULT_K,
) -> None:
    """Natural-language search over the signed-in user's media, nearest first."""
    raise NotImplementedError("documents GET /search's parameters; `search` serves it")


_INT = TypeAdapter(int)
_WHEN = TypeAdapter(datetime)


def _search_query(params: QueryParams) -> tuple[str, str | None, datetime | None, datetime | None, int]:
    """/search's parameters as FastAPI parses `search_parameters`' (the same types, the same 422
    body), without FastAPI's per-request dependency solving: ~45 us of a ~0.6 ms warm search."""
    errors: list[Any] = []

    def parse(name: str, adapter: TypeAdapter[Any], default: Any) -> Any:
        raw = params.get(name)
        if raw is None:
            return default
        try:
            return adapter.validate_python(raw)
        except ValidationError as exc:
            errors.extend({**e, "loc": ("query", name, *e["loc"])} for e in exc.errors(include_url=False))
            return default

    q = params.get("q")
    if q is None:
        errors.append({"type": "missing", "loc": ("query", "q"), "msg": "Field required", "input": None})
    from_, to, k = parse("from", _WHEN, None), parse("to", _WHEN, None), parse("k", _INT, DEFAULT_K)
    if errors:
        raise RequestValidationError(errors)
    assert q is not None
    return q, params.get("type"), from_, to, k


async def search(request: Request) -> Response:
    """The hot path, on the event loop: the session check and the search-cache read are one Redis
    round trip, and a hit is answered without a thread hop. Only a miss (embedding, PostgreSQL) or
    Redis unavailable (the PostgreSQL-checked fallback) goes to a worker thread."""
    q, type, from_, to, k = _search_query(request.query_params)
    ctx = context(request)
    cookie = request.cookies.get(COOKIE_NAME)
    claims = ctx.auth.claims(cookie)
    if claims is None:
        raise _not_signed_in()
    try:
        req = SearchRequest(claims.user_id, q, k, type, from_, to)
    except InvalidSearch:
        if await run_in_threadpool(ctx.auth.authenticate, cookie) is None:
            raise _not_signed_in() from None  # a dead session learns nothing about its input
        raise
    timer = StageTimer()
    keys = list(ctx.search_cache.keys(req.user_id, req.text, req.cache_filters()))
    rendered: Rendered | None = None
    try:
        with timer.stage("search_cache"):  # the session check included
            checked = ctx.auth.check_and_read(claims, keys)
    except CacheUnavailable:
        if await run_in_threadpool(ctx.auth.degraded, claims) is None:
            raise _not_signed_in() from None
        outcome = await run_in_threadpool(ctx.search.search, req, None, timer)
    else:
        if checked is None:
            raise _not_signed_in()
        gen, entry = checked[1]
        rendered = ctx.search_cache.remembered(gen, entry, ctx.render.remembered)
        if rendered is not None:  # a hit seen before: no parse, no URLs, no serialization
            outcome = ctx.search.remembered(req, rendered.count, timer)
        else:
            cached = ctx.search_cache.decode(gen, entry)
            if cached.results is not None:
                outcome = ctx.search.search(req, cached, timer)  # a hit does no blocking work
                assert entry is not None
                rendered = ctx.render.remember(entry, cached.results)
            else:
                outcome = await run_in_threadpool(ctx.search.search, req, cached, timer)
    if rendered is None:
        assert outcome.results is not None
        rendered = ctx.render.render(outcome.results)
    ctx.metrics.search_cache.labels("hit" if outcome.cache_hit else "miss").inc()
    for stage, ms in outcome.timings_ms.items():
        ctx.metrics.stage.labels(stage).observe(ms / 1000)
    head = {
        "query": q,
        "count": rendered.count,
        "cache_hit": outcome.cache_hit,
        "timings_ms": outcome.timings_ms,
    }
    return Response(
        orjson.dumps(head)[:-1] + b',"results":' + rendered.json + b"}",
        media_type="application/json",
        headers={"Server-Timing": outcome.timer.server_timing()},
    )


def upload(
    user: User,
    ctx: Ctx,
    file: Annotated[UploadFile, File(description=describe_formats())],
    caption: Annotated[str | None, Form(max_length=2000)] = None,
    tags: Annotated[str | None, Form(max_length=4000, description="comma-separated")] = None,
) -> JSONResponse:
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
    media = load_media(ctx, user.user_id, result.media_id)
    return JSONResponse(media, 201, headers={"Location": f"/media/{result.media_id}"})


def get_media(user: User, ctx: Ctx, media_id: uuid.UUID) -> dict[str, Any]:
    return load_media(ctx, user.user_id, str(media_id))


def health(ctx: Ctx, detailed: bool = False) -> JSONResponse:
    checks: dict[str, Any] = {}
    try:
        with ctx.pool.connection(timeout=2) as conn:
            versions = server_versions(conn)
        checks["postgres"] = {"ok": True, "version": versions.postgres}
        checks["pgvector"] = {"ok": bool(versions.pgvector), "version": versions.pgvector}
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
    body: dict[str, Any] = {"status": status, "workers": {"expected": ready.expected, "ready": ready.ready}}
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


def metrics(ctx: Ctx) -> Response:
    return Response(ctx.metrics.exposition(), media_type="text/plain; version=0.0.4")


def load_media(ctx: ServiceContext, user_id: str, media_id: str) -> dict[str, Any]:
    record = ctx.queries.user_media(user_id, media_id)
    if record is None:
        raise HTTPException(404, "no such media")
    record["id"] = str(record["id"])
    record["uploaded_at"] = record["uploaded_at"].isoformat()
    return ctx.render.public(record)
