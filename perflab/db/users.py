"""Users and their sessions' revocations: what sign-in, sign-out and the cookie fallback read and write.

Redis holds the sessions; PostgreSQL holds what must survive Redis being down: single logouts (by the
session id's hash, never the id, until the session's absolute expiry) and each user's revoke-all time.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from perflab.db._validate import as_uuid
from perflab.db.pool import PoolOrConn, borrow


def record_login(source: PoolOrConn, email: str) -> uuid.UUID | None:
    """Stamp the sign-in of the user with this email (trimmed, lower-cased); None for no such user."""
    with borrow(source) as conn:
        row = conn.execute(
            "UPDATE users SET last_login_at = now() WHERE email = %s RETURNING id", (email.strip().lower(),)
        ).fetchone()
    return row[0] if row else None


def session_revoked(
    source: PoolOrConn, session_hash: bytes, user_id: uuid.UUID | str
) -> tuple[bool, datetime | None]:
    """Whether this session was logged out, and the user's revoke-all time (None: never). An unknown
    user reads as revoked."""
    uid = as_uuid(user_id, "user_id")
    with borrow(source) as conn:
        row = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM revoked_sessions WHERE session_hash = %s),"
            " (SELECT sessions_valid_after FROM users WHERE id = %s)",
            (session_hash, uid),
        ).fetchone()
    return (bool(row[0]), row[1]) if row else (True, None)


def revoke_session(
    source: PoolOrConn, session_hash: bytes, user_id: uuid.UUID | str, expires_at: datetime
) -> None:
    """Remember one logout until the session would have expired anyway; forget those past it."""
    uid = as_uuid(user_id, "user_id")
    with borrow(source) as conn:
        conn.execute(
            "INSERT INTO revoked_sessions (session_hash, user_id, expires_at) VALUES (%s, %s, %s)"
            " ON CONFLICT (session_hash) DO NOTHING",
            (session_hash, uid, expires_at),
        )
        conn.execute("DELETE FROM revoked_sessions WHERE expires_at < now()")


def revoke_all_sessions(source: PoolOrConn, user_id: uuid.UUID | str) -> None:
    """Refuse every session of the user issued before now."""
    uid = as_uuid(user_id, "user_id")
    with borrow(source) as conn:
        conn.execute("UPDATE users SET sessions_valid_after = now() WHERE id = %s", (uid,))
