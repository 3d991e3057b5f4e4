"""HTTP caching headers for media: immutable for content-hashed keys, revalidated otherwise.

A hashed key names one exact byte string, so browsers and the edge may keep it a year without asking
again. Anything else (a key whose bytes may change) is cached briefly and revalidated by ETag. Signed
(private) responses are `private`, so a shared cache (the nginx edge) never stores them and never
serves them to someone without a valid signature, and they expire no later than the signature.
"""

from __future__ import annotations

import hashlib

from perflab.images.keys import DIGEST_HEX, hashed_digest

IMMUTABLE = "public, max-age=31536000, immutable"
MUTABLE = "public, max-age=60"


def cache_control_for(key: str) -> str:
    return IMMUTABLE if hashed_digest(key) is not None else MUTABLE


def private_cache_control(expires_at: int, now: int) -> str:
    return f"private, max-age={max(0, expires_at - now)}"


def etag_for(key: str, data: bytes) -> str:
    """A strong ETag from the content: the digest already in a hashed key, else a hash of the bytes.
    Content-based (not mtime-based), so every origin replica answers the same ETag."""
    digest = hashed_digest(key) or hashlib.sha256(data).hexdigest()[:DIGEST_HEX]
    return f'"{digest}"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 If-None-Match: weak comparison against a list of tags, or `*`."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    bare = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == bare for tag in if_none_match.split(","))
