"""Session authentication: Redis is the session store; a signed cookie keeps users signed in when it
is not there.

The cookie is `v1~<session id>~<user id>~<issued ms>~<expires ms>~<HMAC-SHA256>`. With Redis up, the session
must exist there and belong to that user (so logout and revoke-all take effect at once). With Redis
down (CacheUnavailable), the service falls back to the cookie's signed claims, checked against the
revocations kept in PostgreSQL, so search keeps answering for signed-in users and a revoked session is
still refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg_pool import ConnectionPool

from perflab.cache import CacheUnavailable, SessionStore
from perflab.db.users import revoke_all_sessions, revoke_session, session_revoked
from perflab.service.retry import RetryQueue

COOKIE_NAME = "perflab_session"


@dataclass(frozen=True)
class Principal:
    user_id: str
    session_id: str
    degraded: bool  # authenticated from the signed cookie alone (Redis unavailable)


@dataclass(frozen=True)
class Claims:
    session_id: str
    user_id: str
    issued: int
    expires: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def session_hash(session_id: str) -> bytes:
    """What PostgreSQL stores of a revoked session: never the id itself."""
    return hashlib.sha256(session_id.encode()).digest()


class SessionAuth:
    def __init__(
        self, sessions: SessionStore, pool: ConnectionPool, secret: bytes, *, absolute_ttl: int
    ) -> None:
        self._sessions = sessions
        self._pool = pool
        self._secret = secret
        self._absolute_ttl = absolute_ttl
        # Logouts and revoke-alls that could not reach Redis: recorded in PostgreSQL at once (the
        # fallback refuses them), deleted from Redis when it is back, or the sessions would revive.
        self.pending: RetryQueue[tuple[str, str]] = RetryQueue(
            self._revoke_in_redis, name="session-revoke-retry"
        )

    # -- cookie ---------------------------------------------------------------------------------
    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest())

    def cookie_for(self, session_id: str, user_id: str, issued: int | None = None) -> str:
        issued = int(time.time() * 1000) if issued is None else issued
        payload = f"v1~{session_id}~{user_id}~{issued}~{issued + self._absolute_ttl * 1000}"
        return f"{payload}~{self._sign(payload)}"

    def _claims(self, cookie: str | None, now: float | None = None) -> Claims | None:
        if not cookie or len(cookie) > 512 or not cookie.isascii():
            return None  # forged: we only issue ASCII (and compare_digest raises on non-ASCII str)
        parts = cookie.split("~")
        if len(parts) != 6 or parts[0] != "v1":
            return None
        payload, sig = "~".join(parts[:5]), parts[5]
        if not hmac.compare_digest(self._sign(payload), sig):
            return None
        try:
            uuid.UUID(parts[2])
            issued, expires = int(parts[3]), int(parts[4])
        except ValueError:
            return None
        if expires <= (time.time() if now is None else now) * 1000:
            return None
        return Claims(parts[1], parts[2], issued, expires)

    # -- operations -----------------------------------------------------------------------------
    def login(self, user_id: str, data: dict[str, Any], previous_cookie: str | None = None) -> str:
        """A fresh session (a new id at every login: fixation protection); the old one is ended."""
        old = self._claims(previous_cookie)
        if old is not None:
            self.logout(previous_cookie)
        session = self._sessions.create(user_id, data)
        return self.cookie_for(session.id, user_id)

    def authenticate(self, cookie: str | None) -> Principal | None:
        claims = self._claims(cookie)
        if claims is None:
            return None
        try:
            session = self._sessions.get(claims.session_id)
        except CacheUnavailable:
            return self.degraded(claims)
        if session is None or str(session.user_id) != claims.user_id:
            return None
        return Principal(claims.user_id, claims.session_id, degraded=False)

    def claims(self, cookie: str | None) -> Claims | None:
        """The cookie's signed claims (no Redis, no database): who it says it is, not yet whether
        that session is still live; check_and_read or degraded decide that."""
        return self._claims(cookie)

    def check_and_read(self, claims: Claims, keys: list[str]) -> tuple[Principal, list[bytes | None]] | None:
        """authenticate() and the reads of `keys` (that user's full keys) in one Redis round trip.
        None: no live session of that user (nothing was read). Raises CacheUnavailable: then
        `degraded(claims)` decides, off the event loop (it asks PostgreSQL)."""
        values = self._sessions.check_and_read(claims.session_id, claims.user_id, keys)
        if values is None:
            return None
        return Principal(claims.user_id, claims.session_id, degraded=False), values

    def degraded(self, claims: Claims) -> Principal | None:
        """Redis unavailable: the signed claims, unless PostgreSQL records them revoked."""
        with self._pool.connection(timeout=5) as conn:
            revoked, valid_after = session_revoked(conn, session_hash(claims.session_id), claims.user_id)
        if revoked:
            return None
        if valid_after is not None and claims.issued <= valid_after.timestamp() * 1000:
            return None
        return Principal(claims.user_id, claims.session_id, degraded=True)

    def logout(self, cookie: str | None) -> bool:
        claims = self._claims(cookie)
        if claims is None:
            return False
        self._record_revocation(claims)
        if not self._revoke_in_redis(("session", claims.session_id)):
            self.pending.add(("session", claims.session_id))
        return True

    def revoke_all(self, user_id: str) -> int:
        with self._pool.connection(timeout=5) as conn:
            revoke_all_sessions(conn, user_id)
        try:
            return self._sessions.revoke_all(user_id)
        except CacheUnavailable:
            self.pending.add(("user", user_id))
            return 0

    def _revoke_in_redis(self, item: tuple[str, str]) -> bool:
        """Delete one session or all of a user's; False while Redis cannot be reached."""
        kind, value = item
        try:
            if kind == "session":
                self._sessions.delete(value)
            else:
                self._sessions.revoke_all(value)
        except CacheUnavailable:
            return False
        return True

    def _record_revocation(self, claims: Claims) -> None:
        expires = datetime.fromtimestamp(claims.expires / 1000, UTC)
        with self._pool.connection(timeout=5) as conn:
            revoke_session(conn, session_hash(claims.session_id), claims.user_id, expires)
