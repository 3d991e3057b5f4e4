"""Content-hashed object keys: the key changes whenever the bytes do, so a key can be cached forever.

Layout: `{h[:2]}/{h}-{name}.{ext}` with `h` the first 128 bits of SHA-256 in hex. The two-character
fan-out keeps directories small on a local disk and spreads S3 prefixes. A storage concept: the
storage writes under these keys, and the CDN reads from a key whether it may be cached forever.
"""

from __future__ import annotations

import hashlib
import re

from perflab.images.errors import InvalidKey

DIGEST_HEX = 32
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_EXT = re.compile(r"[a-z0-9]{1,8}")
_HASHED = re.compile(rf"(?:^|/)([0-9a-f]{{2}})/(([0-9a-f]{{{DIGEST_HEX}}})-[a-z0-9][a-z0-9_-]*\.[a-z0-9]+)$")


def content_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:DIGEST_HEX]


def object_key(data: bytes, name: str, ext: str) -> str:
    """The key for `data` stored as derivative `name` (e.g. `w640`) with extension `ext` (e.g. `jpg`)."""
    ext = ext.lower().lstrip(".")
    if not _NAME.fullmatch(name):
        raise InvalidKey(name, f"the derivative name must match {_NAME.pattern}")
    if not _EXT.fullmatch(ext):
        raise InvalidKey(ext, f"the extension must match {_EXT.pattern}")
    digest = content_digest(data)
    return f"{digest[:2]}/{digest}-{name}.{ext}"


def hashed_digest(key: str) -> str | None:
    """The content digest embedded in a hashed key (also under a prefix), or None for other keys."""
    found = _HASHED.search(key)
    if found is None or not found.group(3).startswith(found.group(1)):
        return None
    return found.group(3)


def is_hashed_key(key: str) -> bool:
    return hashed_digest(key) is not None
