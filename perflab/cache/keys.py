"""Key building: `{prefix}:{tag}:...`, Redis Cluster safe, injection proof.

No user-supplied text ever reaches a key verbatim. A user id becomes the hash tag `{u:<digest>}`, so all
of one user's keys share a cluster slot (multi-key scripts and MGETs stay in one slot) and characters
such as `* ? [ ] { } :` in an id can neither match another user's keys in a SCAN pattern nor move a key
to another user's slot. Queries and texts are hashed the same way.
"""

from __future__ import annotations

import hashlib
import re

from perflab.cache.errors import CacheKeyError

# One type only: were ints (or UUIDs) accepted too, `1` and `"1"` would be the same user by accident.
UserId = str

_SEGMENT = re.compile(r"[A-Za-z0-9._/@+-]{1,128}")
_PREFIX_FORBIDDEN = re.compile(r"[{}*?\[\]\\\s]")
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


def digest(text: str | bytes, size: int = 32) -> str:
    """Hex SHA-256 of `text` (UTF-8, lone surrogates allowed), truncated to `size` hex digits."""
    data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()[:size]


def user_digest(user_id: UserId) -> str:
    """The 128-bit digest that stands for a user in every key (and in session ids)."""
    if not isinstance(user_id, str):
        raise CacheKeyError(f"user id must be a str, not {type(user_id).__name__}: convert it explicitly")
    return digest(user_id)


def user_tag(user_id: UserId) -> str:
    """`{u:<digest>}`: the hash tag that puts all of one user's keys in one cluster slot."""
    return "{u:" + user_digest(user_id) + "}"


def check_prefix(prefix: str) -> str:
    """A key prefix: non-empty, no braces (hash tags), glob characters or whitespace."""
    if not isinstance(prefix, str) or not prefix or _PREFIX_FORBIDDEN.search(prefix):
        raise CacheKeyError(
            f"key prefix {prefix!r} must be non-empty without braces, glob characters or spaces"
        )
    return prefix


def check_segment(kind: str, value: str) -> str:
    """A namespace segment such as a model name or version: 1-128 of `A-Z a-z 0-9 . _ / @ + -`."""
    if not isinstance(value, str) or not _SEGMENT.fullmatch(value):
        raise CacheKeyError(f"{kind} {value!r} must be 1-128 characters of A-Z a-z 0-9 . _ / @ + -")
    return value


def glob_escape(text: str) -> str:
    """Escape `* ? [ ] \\` so `text` matches only itself in a SCAN MATCH pattern."""
    return _GLOB_SPECIAL.sub(r"\\\1", text)


def hash_tag(key: str) -> str | None:
    """The part of `key` Redis Cluster hashes, when it has a non-empty `{...}` tag (the cluster rule)."""
    start = key.find("{")
    if start < 0:
        return None
    end = key.find("}", start + 1)
    if end <= start + 1:
        return None
    return key[start + 1 : end]


def sibling(key: str, suffix: str, namespace: str = "") -> str:
    """A key in the same cluster slot as `key` (e.g. its lock), whether or not `key` has a hash tag.

    Tagged: `key:suffix`. Untagged: `namespace + suffix:{key}`, whose tag is the whole of `key`, so it
    hashes exactly as Redis hashes the tag-less `key` itself, and it still starts with `namespace`.
    """
    if hash_tag(key) is not None:
        return f"{key}:{suffix}"
    if "}" in key:
        raise CacheKeyError(f"key {key!r} has a stray '}}': no sibling key can share its slot")
    return f"{namespace}{suffix}:{{{key}}}"
