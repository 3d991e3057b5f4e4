"""Value encoding: a one-byte tag, then orjson (structured values) or the raw bytes.

The tag lets a reader reject a foreign or corrupt value (a miss, not a crash) and carries the XFetch
metadata of values written by `get_or_set` (how long the value took to compute, when it expires).
"""

from __future__ import annotations

import math
import struct
from typing import Any

import orjson

from perflab.cache.errors import CacheValueError

_JSON = 0x01
_BYTES = 0x02
_ENTRY = 0x03  # XFetch envelope: <delta seconds, expiry epoch seconds> then a tagged inner value
_ENTRY_HEAD = struct.Struct("<dd")
_JSON_TAG = bytes([_JSON])
_BYTES_TAG = bytes([_BYTES])
_ENTRY_TAG = bytes([_ENTRY])
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


class CorruptValue(Exception):
    """Internal: the stored bytes are not a value this module wrote. Callers turn it into a miss."""


def dumps(value: Any) -> bytes:
    """Encode a JSON-like value (dicts, lists, str, numbers, numpy arrays, dataclasses) or raw bytes."""
    if isinstance(value, bytes | bytearray | memoryview):
        return _BYTES_TAG + bytes(value)
    try:
        return _JSON_TAG + orjson.dumps(value, option=_OPTIONS)
    except (orjson.JSONEncodeError, TypeError) as exc:
        raise CacheValueError(f"cannot cache a {type(value).__name__}: {exc}") from exc


def loads(data: bytes) -> Any:
    """Decode what `dumps` or `dumps_entry` wrote; raise CorruptValue for anything else."""
    if not data:
        raise CorruptValue("empty value")
    tag = data[0]
    if tag == _JSON:
        try:  # a bytes slice: orjson parses bytes faster than a memoryview, even counting the copy
            return orjson.loads(data[1:])
        except orjson.JSONDecodeError as exc:
            raise CorruptValue(str(exc)) from exc
    if tag == _BYTES:
        return data[1:]
    if tag == _ENTRY:
        return loads_entry(data)[0]
    raise CorruptValue(f"unknown tag {tag:#x}")


def dumps_entry(value: Any, delta: float, expiry: float) -> bytes:
    """Encode `value` with its recompute time `delta` (s) and absolute `expiry` (epoch s) for XFetch."""
    return _ENTRY_TAG + _ENTRY_HEAD.pack(delta, expiry) + dumps(value)


def loads_entry(data: bytes) -> tuple[Any, float, float]:
    """(value, delta, expiry); a value written by plain `dumps` has delta 0 and expiry +inf."""
    if data and data[0] == _ENTRY:
        if len(data) < 1 + _ENTRY_HEAD.size + 1:
            raise CorruptValue("truncated entry")
        delta, expiry = _ENTRY_HEAD.unpack_from(data, 1)
        if not (0 <= delta < math.inf and math.isfinite(expiry)):
            raise CorruptValue("bad XFetch metadata")
        inner = data[1 + _ENTRY_HEAD.size :]
        if inner[0] == _ENTRY:
            raise CorruptValue("nested entry")
        return loads(inner), delta, expiry
    return loads(data), 0.0, float("inf")
