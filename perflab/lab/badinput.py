"""Bad input against the running service: the bad-file corpus through POST /media, and malformed,
oversized and hostile searches, uploads, sign-ins and media ids.

Each case states what a correct service answers (a set of statuses) and is judged on four things: the
status is one of them, a 4xx carries a non-empty `detail` (a message a client can show), nothing is
written for a request that was refused (media rows and stored files are counted around it through
`probe`), and no worker died (the caller compares worker pids). A 5xx or no answer is always wrong.
"""

from __future__ import annotations

import functools
import json
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from perflab.lab.corpus import BAD_FILES

_REFUSED_FILE = {"EmptyFile": 422, "CorruptImage": 422, "UnsupportedFormat": 415, "DecompressionBomb": 413}
REFUSED = (400, 404, 405, 413, 414, 415, 422)


@dataclass(frozen=True)
class BadInputCase:
    category: str  # file | upload | search | session | media
    name: str
    allowed: tuple[int, ...]  # what a correct service may answer
    status: int  # what it answered; 0 = no answer
    detail: str  # the message (or error) it gave
    written: int = 0  # media rows + stored files added by a refused request (must be 0)

    @property
    def refused(self) -> bool:
        return 400 <= self.status < 500

    @property
    def ok(self) -> bool:
        if self.status not in self.allowed:
            return False
        return not (self.refused and (not self.detail or self.written))


@dataclass
class BadInputReport:
    cases: list[BadInputCase]
    workers_before: list[int] = field(default_factory=list)
    workers_after: list[int] = field(default_factory=list)
    rows_written: int = 0  # by the whole suite, for the signed-in user (must equal accepted_uploads)

    @property
    def tried(self) -> int:
        return len(self.cases)

    @property
    def server_errors(self) -> int:
        """5xx answers and requests that got no answer at all."""
        return sum(1 for c in self.cases if c.status == 0 or c.status >= 500)

    @property
    def failed(self) -> list[BadInputCase]:
        return [c for c in self.cases if not c.ok]

    @property
    def refused_writes(self) -> int:
        return sum(c.written for c in self.cases if c.refused)

    @property
    def accepted_uploads(self) -> int:
        """Uploads answered 201 (corpus files that are valid, odd but harmless metadata)."""
        return sum(1 for c in self.cases if c.status == 201)

    @property
    def workers_survived(self) -> bool:
        return bool(self.workers_before) and set(self.workers_before) == set(self.workers_after)

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "category": c.category,
                "case": c.name,
                "status": c.status,
                "allowed": "/".join(map(str, c.allowed)),
                "ok": c.ok,
                "detail": c.detail[:120],
            }
            for c in self.cases
        ]


def _detail(r: httpx.Response) -> str:
    try:
        body = r.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return r.text[:200]
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):  # FastAPI validation errors: one message per field
        return "; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail)[:300]
    return str(detail or "")[:300]


def _raw(client: httpx.Client, head: bytes) -> httpx.Response:
    """Send request bytes as they are (httpx refuses a Content-Length that does not match the body)
    and read the answer; the service must answer before reading a body it will refuse."""
    url = client.base_url
    with socket.create_connection((url.host, url.port or 80), timeout=10) as sock:
        sock.sendall(head)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head_bytes, _, body = data.partition(b"\r\n\r\n")
    if not head_bytes:
        raise httpx.RemoteProtocolError("no answer")
    status = int(head_bytes.split(b" ", 2)[1])
    return httpx.Response(status, content=body)


def _search_cases() -> Iterator[tuple[str, dict[str, Any] | str, tuple[int, ...]]]:
    """(name, params or a raw query string, allowed statuses)."""
    ok_or_refused = (200, 422)
    yield "empty query", {"q": ""}, (422,)
    yield "blank query", {"q": " \t\u3000 "}, (422,)
    yield "query of 513 characters", {"q": "x" * 513}, (422,)
    yield "query string over 4 KiB", {"q": "x" * 5000}, (414,)
    yield "NUL in the query", {"q": "dog\x00cat"}, (422,)
    yield "control characters", {"q": "dog\x1b[31m\x07"}, (422,)
    yield "NFKC expands past the limit", {"q": "\ufdfa" * 100}, (422,)
    yield "combining marks", {"q": "e" + "\u0301" * 300}, ok_or_refused
    yield "right-to-left override", {"q": "\u202egpj.exe dog"}, ok_or_refused
    yield "zero-width only", {"q": "\u200b\u200d\ufeff"}, ok_or_refused
    yield "emoji and astral", {"q": "🐶 on the 🏖️ 𝔡𝔬𝔤"}, (200,)
    yield "lone surrogate (raw %ED%A0%80)", "q=dog%ED%A0%80", ok_or_refused
    yield "invalid UTF-8 (raw %FF%FE)", "q=%FF%FEdog", ok_or_refused
    yield "percent-encoded NUL (raw %00)", "q=dog%00", (422,)
    yield "SQL injection in q", {"q": "'; DROP TABLE media_files; --"}, (200,)
    yield "SQL injection in type", {"q": "dog", "type": "image' OR '1'='1"}, (422,)
    yield "SQL injection in from", {"q": "dog", "from": "2024-01-01'; DELETE FROM users; --"}, (422,)
    yield "k negative", {"q": "dog", "k": "-1"}, (422,)
    yield "k huge", {"q": "dog", "k": "1000000000000000000000"}, (422,)
    yield "k not a number", {"q": "dog", "k": "ten"}, (422,)
    yield "k float", {"q": "dog", "k": "1e3"}, (422,)
    yield "unknown type", {"q": "dog", "type": "hologram"}, (422,)
    yield "date not a date", {"q": "dog", "from": "yesterday"}, (422,)
    yield "date without zone", {"q": "dog", "from": "2024-01-01T00:00:00"}, (422,)
    yield "impossible date", {"q": "dog", "from": "2024-02-30T00:00:00Z"}, (422,)
    yield "from after to", {"q": "dog", "from": "2025-01-02T00:00:00Z", "to": "2025-01-01T00:00:00Z"}, (422,)
    yield "earliest date, +14:00", {"q": "dog", "from": "0001-01-01T00:00:00+14:00"}, ok_or_refused
    yield "latest date, -14:00", {"q": "dog", "to": "9999-12-31T23:59:59-14:00"}, ok_or_refused
    yield "offset out of range", {"q": "dog", "from": "2024-01-01T00:00:00+25:00"}, (422,)
    yield "repeated parameters", "q=dog&q=cat&k=3&k=4", (200,)
    yield "unknown parameters", {"q": "dog", "user_id": "someone-else", "limit": "999"}, (200,)


def _upload_cases(photo: bytes) -> Iterator[tuple[str, dict[str, Any], tuple[int, ...]]]:
    """(name, httpx request keyword arguments, allowed statuses)."""
    jpeg = ("photo.jpg", photo, "image/jpeg")
    yield "no file field", {"data": {"caption": "x"}}, (422,)
    yield "file sent as a text field", {"data": {"file": "not a file"}}, (422,)
    yield "JSON instead of multipart", {"json": {"file": "x"}}, (422,)
    yield "caption over 2,000 characters", {"files": {"file": jpeg}, "data": {"caption": "x" * 2001}}, (422,)
    yield "NUL in the caption", {"files": {"file": jpeg}, "data": {"caption": "a\x00b"}}, (422,)
    yield "caption not UTF-8", {"files": {"file": jpeg, "caption": (None, b"\xff\xfe\xfd")}}, (201, 422)
    yield "51 tags", {"files": {"file": jpeg}, "data": {"tags": ",".join(f"t{i}" for i in range(51))}}, (422,)
    yield "a tag of 65 characters", {"files": {"file": jpeg}, "data": {"tags": "x" * 65}}, (422,)
    yield "NUL in a tag", {"files": {"file": jpeg}, "data": {"tags": "ok,bad\x00tag"}}, (422,)
    yield "NUL in the file name", {"files": {"file": ("a\x00b.jpg", photo, "image/jpeg")}}, (201, 422)


def _session_cases() -> Iterator[tuple[str, dict[str, Any], tuple[int, ...]]]:
    yield "not JSON", {"content": b"{email:", "headers": {"content-type": "application/json"}}, (422,)
    yield "JSON array", {"json": ["user1@example.com"]}, (422,)
    yield "email missing", {"json": {}}, (422,)
    yield "email not a string", {"json": {"email": {"$ne": None}}}, (422,)
    yield "email of 321 characters", {"json": {"email": "a" * 309 + "@example.com"}}, (422,)
    yield "NUL in the email", {"json": {"email": "user1@example.com\x00"}}, (401, 422)
    yield "SQL injection in the email", {"json": {"email": "' OR '1'='1' --"}}, (401,)
    yield "body over 64 KiB", {"json": {"email": "x" * 70_000}}, (413,)


_COOKIES = {
    "garbage cookie": "garbage",
    "forged signature": "v1~s~00000000-0000-0000-0000-000000000000~1~99999999999999~AAAA",
    "cookie of 8 KiB": "v1~" + "a" * 8000,
    "non-ASCII cookie": "v1~\u00e9~\u00e9~1~2~\u00e9",
}


def run_bad_inputs(
    client: httpx.Client,
    bad_dir: Path,
    *,
    other: httpx.Client | None = None,
    photo: bytes | None = None,
    probe: Callable[[], int] | None = None,
) -> BadInputReport:
    """Every case through `client` (signed in). `other`, signed in as another user, owns the media
    used for the not-yours case. `probe` counts what is stored (rows + files) around refused writes."""
    cases: list[BadInputCase] = []

    def send(category: str, name: str, allowed: tuple[int, ...], request: Callable[[], httpx.Response],
             writes: bool = False) -> None:  # fmt: skip
        before = probe() if probe and writes else 0
        try:
            r = request()
            status, detail = r.status_code, _detail(r)
        except httpx.HTTPError as exc:
            status, detail = 0, f"{type(exc).__name__}: {exc}"
        written = (probe() - before) if probe and writes and 400 <= status < 500 else 0
        cases.append(BadInputCase(category, name, allowed, status, detail, written))

    for path in sorted(bad_dir.iterdir()):
        outcome = BAD_FILES.get(path.name)
        if outcome is None:
            continue
        allowed: tuple[int, ...] = (201,) if outcome == "ok" else (_REFUSED_FILE.get(outcome, 422),)
        data = path.read_bytes()
        files = {"file": (path.name, data, "application/octet-stream")}
        send(
            "file",
            f"{path.name} ({outcome})",
            allowed,
            functools.partial(client.post, "/media", files=files),
            True,
        )

    if photo is None:
        photo = next(p for p in sorted(bad_dir.iterdir()) if BAD_FILES.get(p.name) == "ok").read_bytes()
    for name, kwargs, allowed in _upload_cases(photo):
        send("upload", name, allowed, functools.partial(client.post, "/media", **kwargs), True)

    cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    for name, length in (
        ("declared length over the limit", "999999999"),
        ("declared length not a number", "12abc"),
    ):
        head = f"POST /media HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\nContent-Length: {length}\r\n\r\n"
        send("upload", name, (400, 413), functools.partial(_raw, client, head.encode()), True)

    for name, params, allowed in _search_cases():
        if isinstance(params, str):
            request = functools.partial(client.get, f"/search?{params}")
        else:
            request = functools.partial(client.get, "/search", params=params)
        send("search", name, allowed, request)

    anonymous = httpx.Client(base_url=str(client.base_url), timeout=client.timeout)
    with anonymous:
        for name, kwargs, allowed in _session_cases():
            send("session", name, allowed, functools.partial(anonymous.post, "/sessions", **kwargs))
        for name, cookie in _COOKIES.items():
            headers = {b"cookie": f"perflab_session={cookie}".encode()}
            send(
                "session",
                name,
                (401,),
                functools.partial(anonymous.get, "/search", params={"q": "dog"}, headers=headers),
            )

    send("media", "id not a UUID", (422,), lambda: client.get("/media/not-a-uuid"))
    send("media", "id with NUL", (404, 422), lambda: client.get("/media/%00"))
    send("media", "path traversal", (404,), lambda: client.get("/media/..%2F..%2Fetc%2Fpasswd"))
    send("media", "unknown id", (404,), lambda: client.get("/media/00000000-0000-0000-0000-000000000000"))
    if other is not None:
        theirs = other.get("/search", params={"q": "photo", "k": 1}).json().get("results") or []
        if theirs:
            media_id = theirs[0]["id"]
            send("media", "another user's media", (404,), lambda: client.get(f"/media/{media_id}"))
    send("media", "method not allowed", (405,), lambda: client.put("/search", content=b"x"))
    return BadInputReport(cases)
