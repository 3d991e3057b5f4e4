"""SearchCache: per-user cached search results, invalidated in O(1) by a generation counter.

Keys (all of one user's share the hash tag, hence one cluster slot):
  `{prefix}:{u:<digest(user)>}:search:gen`               the user's current generation
  `{prefix}:{u:<digest(user)>}:search:r:<digest(q, f)>`  b"<generation>|<orjson results>"
  `{prefix}:search:popular`                              sorted set: normalized query -> count

A read MGETs the generation and the entry together (one round trip) and treats an entry written under
another generation as a miss, so `invalidate_user` is one INCR, never a pattern scan. Entries of old
generations are overwritten or expire by TTL. A missing generation key (expired, evicted) makes every
entry of that user a miss; a new one starts at a random value so an evicted counter can never make old
entries valid again. A counter that is not a positive decimal integer (corrupted, written by someone
else) counts as missing: reads miss, and the next `set` or `invalidate_user` replaces it with a seed.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import orjson

from perflab.cache.errors import CacheKeyError, CacheValueError
from perflab.cache.keys import UserId, digest, user_tag
from perflab.cache.manager import CacheManager, RedisClient

log = logging.getLogger(__name__)
T = TypeVar("T")

_POPULAR_KEY = "search:popular"
_MAX_TRACKED_CHARS = 256
_GEN_SEED_BITS = 48
_GEN_DIGITS = 18  # INCR stays far from int64 overflow; seeds have at most 15 digits
_VALID_GEN = re.compile(rb"[1-9][0-9]{0,%d}" % (_GEN_DIGITS - 1))

# The generation at KEYS[1] when it is one we could have written, else nil (missing, corrupt, not a string).
_GEN = """
local function generation()
  local g = redis.pcall('GET', KEYS[1])
  if type(g) == 'string' and #g <= 18 and string.match(g, '^[1-9]%d*$') then return g end
  return nil
end
"""  # 18: _GEN_DIGITS
# KEYS: gen, entry. ARGV: payload, ttl_ms, expected generation ('' = any, '0' = none yet), seed.
_SET = (
    _GEN
    + """
local g = generation()
if ARGV[3] ~= '' and (g or '0') ~= ARGV[3] then return 0 end
if not g then g = ARGV[4]; redis.call('SET', KEYS[1], g) end
redis.call('SET', KEYS[2], g .. '|' .. ARGV[1], 'PX', ARGV[2])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""
)
# KEYS: gen. ARGV: seed, ttl_ms. Returns the new generation.
_BUMP = (
    _GEN
    + """
local g
if generation() then g = redis.call('INCR', KEYS[1])
else g = tonumber(ARGV[1]); redis.call('SET', KEYS[1], ARGV[1]) end
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return g
"""
)
# KEYS: popularity set. ARGV: member, size. Trims back to `size` once it holds twice as many, so a
# new query has room to gather counts before it competes with the established ones.
_TRACK = """
local t = redis.call('TYPE', KEYS[1]).ok
if t ~= 'zset' and t ~= 'none' then redis.call('DEL', KEYS[1]) end
redis.call('ZINCRBY', KEYS[1], tonumber(ARGV[3] or 1), ARGV[1])
local size = tonumber(ARGV[2])
if redis.call('ZCARD', KEYS[1]) > 2 * size then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(size + 1)) end
return 1
"""


def _generation(raw: bytes | None) -> int:
    """A stored generation counter as an int; 0 (none yet) when missing or not one we could have written."""
    if raw is None or not _VALID_GEN.fullmatch(raw):
        return 0
    return int(raw)


def _current(generation: int, gen: bytes | None, data: bytes) -> bool:
    """Whether an entry (b"<generation>|<results>") was written under the user's current generation
    (`gen`, which parsed as `generation`; 0: none)."""
    return generation > 0 and gen is not None and data[: len(gen) + 1] == gen + b"|"


def _utf8(text: str) -> bytes:
    """Any str, lone surrogates included (redis-py's strict encoding would raise on them)."""
    return text.encode("utf-8", "surrogatepass")


def normalize_query(q: str) -> str:
    """Unicode NFKC, case-folded, whitespace collapsed: `"  Cats\u3000AND dogs "` -> `"cats and dogs"`."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", q).casefold())
    return " ".join(folded.split())


def canonical_filters(filters: Mapping[str, Any] | None) -> bytes:
    """Filters as canonical JSON (sorted keys), so equal filters give equal keys."""
    if not filters:
        return b"{}"
    try:
        return orjson.dumps(filters, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)
    except (orjson.JSONEncodeError, TypeError) as exc:
        if "surrogates" not in str(exc):
            raise CacheKeyError(f"search filters must be JSON-like with string keys: {exc}") from exc
    # Lone surrogates, which orjson refuses: ASCII-escaped JSON is still one text per value.
    return json.dumps(filters, sort_keys=True, ensure_ascii=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class CachedSearch:
    """A lookup: the results (None on a miss) and the generation they were read under.

    Pass `generation` back to `SearchCache.set` so results computed before a concurrent invalidation
    are not stored as fresh (None: Redis did not answer).
    """

    results: list[dict[str, Any]] | None
    generation: int | None


class SearchCache:
    """Per-user search results with O(1) invalidation, a bounded popularity set and warming."""

    def __init__(
        self,
        manager: CacheManager,
        *,
        ttl: float = 3600,
        max_results: int = 100,
        popularity_size: int = 1000,
    ) -> None:
        if max_results < 1 or popularity_size < 1 or ttl <= 0:
            raise CacheValueError("ttl, max_results and popularity_size must be positive")
        self.manager = manager
        self.ttl = ttl
        self.max_results = max_results
        self.popularity_size = popularity_size
        self._ttl_ms = max(1, int(ttl * 1000))
        self._set = manager.client.register_script(_SET)
        self._bump = manager.client.register_script(_BUMP)
        self._track = manager.client.register_script(_TRACK)

    def keys(self, user_id: UserId, query: str, filters: Mapping[str, Any] | None = None) -> tuple[str, str]:
        """Full keys (generation, entry) for this user, normalized query and canonical filters."""
        tag = user_tag(user_id)
        what = _utf8(normalize_query(query)) + b"\x00" + canonical_filters(filters)
        return self.manager.key(f"{tag}:search:gen"), self.manager.key(f"{tag}:search:r:{digest(what)}")

    def lookup(self, user_id: UserId, query: str, filters: Mapping[str, Any] | None = None) -> CachedSearch:
        gen_key, entry_key = self.keys(user_id, query, filters)
        reply = cast(
            list[bytes | None] | None,
            self.manager.call("search.get", lambda c: c.mget(gen_key, entry_key), None),
        )
        if reply is None:
            return CachedSearch(None, None)
        return self.decode(reply[0], reply[1])

    def decode(self, gen: bytes | None, data: bytes | None) -> CachedSearch:
        """A lookup from the two values at `keys()` (read here or in a caller's own round trip)."""
        generation = _generation(gen)
        if data is None or not _current(generation, gen, data):  # none, or invalidated since
            self.manager.count(misses=1)
            return CachedSearch(None, generation)
        try:
            results = orjson.loads(memoryview(data)[data.index(b"|") + 1 :])
        except orjson.JSONDecodeError:
            results = None
        if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
            self.manager.count(hits=1, corrupt=1)
            return CachedSearch(None, generation)
        self.manager.count(hits=1)
        return CachedSearch(results, generation)

    def remembered(
        self, gen: bytes | None, data: bytes | None, lookup: Callable[[bytes], T | None]
    ) -> T | None:
        """What the caller remembers of the entry read at `keys()` (`lookup` by its stored bytes),
        if that entry is current: counted as a hit, never parsed. None: `decode` it instead."""
        if data is None or not _current(_generation(gen), gen, data):
            return None
        found = lookup(data)
        if found is not None:
            self.manager.count(hits=1)
        return found

    def get(
        self, user_id: UserId, query: str, filters: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]] | None:
        """Cached results of this user's query, or None (miss, invalidated, or Redis unavailable)."""
        return self.lookup(user_id, query, filters).results

    def set(
        self,
        user_id: UserId,
        query: str,
        filters: Mapping[str, Any] | None,
        results: Sequence[Mapping[str, Any]],
        *,
        generation: int | None = None,
    ) -> bool:
        """Cache the first `max_results` results. With `generation` (from `lookup`), store only if the
        user was not invalidated since. Results round-trip through JSON (datetimes come back as strings).
        """
        gen_key, entry_key = self.keys(user_id, query, filters)
        try:
            payload = orjson.dumps(list(results[: self.max_results]), option=orjson.OPT_SERIALIZE_NUMPY)
        except (orjson.JSONEncodeError, TypeError) as exc:
            raise CacheValueError(f"search results are not JSON-serializable: {exc}") from exc
        expected = "" if generation is None else str(generation)
        seed = secrets.randbelow(2**_GEN_SEED_BITS) + 1
        stored = self.manager.call(
            "search.set",
            lambda c: self._set(
                keys=[gen_key, entry_key], args=[payload, self._ttl_ms, expected, seed], client=c
            ),
            0,
        )
        return bool(stored)

    def generation(self, user_id: UserId) -> int | None:
        """The user's current generation (0: none yet; None: Redis unavailable)."""
        gen_key = self.manager.key(f"{user_tag(user_id)}:search:gen")
        # MGET, not GET: a key of another type reads as nil instead of failing with WRONGTYPE.
        reply = cast(
            list[bytes | None] | None,
            self.manager.call("search.generation", lambda c: c.mget([gen_key]), None),
        )
        if reply is None:
            return None
        return _generation(reply[0])

    def invalidate_user(self, user_id: UserId) -> int:
        """Make every cached result of this user a miss, in O(1). Returns the new generation (>= 1),
        or 0 when Redis could not be reached (the invalidation did not happen: retry or let TTL expire).
        """
        gen_key = self.manager.key(f"{user_tag(user_id)}:search:gen")
        seed = secrets.randbelow(2**_GEN_SEED_BITS) + 1
        gen = self.manager.call(
            "search.invalidate",
            lambda c: self._bump(keys=[gen_key], args=[seed, self._ttl_ms], client=c),
            0,
        )
        if not gen:
            log.warning("search cache invalidation of a user did not reach redis")
        return int(gen)

    def track(self, query: str, count: int = 1) -> bool:
        """Count `count` searches of `query` in the popularity set (normalized; very long queries skipped)."""
        q = normalize_query(query)
        if not q or len(q) > _MAX_TRACKED_CHARS or count < 1:
            return False
        key = self.manager.key(_POPULAR_KEY)
        return bool(
            self.manager.call(
                "search.track",
                lambda c: self._track(
                    keys=[key], args=[_utf8(q), self.popularity_size, int(count)], client=c
                ),
                0,
            )
        )

    def track_many(self, counts: Mapping[str, int]) -> bool:
        """`track` for many queries in one round trip (a pipeline): the history writer's batch."""
        key = self.manager.key(_POPULAR_KEY)
        members = [(q, int(n)) for q, n in ((normalize_query(q), n) for q, n in counts.items())
                   if q and len(q) <= _MAX_TRACKED_CHARS and n >= 1]  # fmt: skip
        if not members:
            return False

        def run(c: RedisClient) -> list[Any]:
            pipe = c.pipeline(transaction=False)
            for q, n in members:
                self._track(keys=[key], args=[_utf8(q), self.popularity_size, n], client=pipe)
            return list(pipe.execute())

        return bool(self.manager.call("search.track_many", run, []))

    def popular(self, n: int = 20) -> list[tuple[str, float]]:
        """The `n` most searched normalized queries with their counts, most popular first."""
        n = min(n, self.popularity_size)
        if n < 1:
            return []
        key = self.manager.key(_POPULAR_KEY)

        def fetch(c: RedisClient) -> list[Any]:
            return list(c.zrevrange(key, 0, n - 1, withscores=True))

        rows: list[Any] = self.manager.call("search.popular", fetch, [])
        out = []
        for member, score in rows:
            try:
                out.append((member.decode("utf-8", "surrogatepass"), float(score)))
            except UnicodeDecodeError:  # not a query we tracked: skip it
                log.debug("search cache: skipping a popularity member that is not UTF-8")
        return out

    def warm(
        self, user_id: UserId, search_fn: Callable[[str], Sequence[Mapping[str, Any]]], top_n: int = 20
    ) -> int:
        """Run the `top_n` popular queries this user has no cached results for through `search_fn`
        and cache them. Returns how many were cached; a failing query is logged and skipped.
        """
        warmed = 0
        for query, _ in self.popular(top_n):
            found = self.lookup(user_id, query)
            if found.results is not None:
                continue
            try:
                results = search_fn(query)
            except Exception:
                log.warning("cache warming: search for a popular query failed", exc_info=True)
                continue
            if self.set(user_id, query, None, results, generation=found.generation):
                warmed += 1
        return warmed
