"""SearchCache on the real Redis: normalization, per-user isolation, O(1) invalidation, popularity, warming."""

from __future__ import annotations

import re
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from redis.crc import key_slot

from perflab.cache import CacheKeyError, CacheManager, CacheValueError, SearchCache, normalize_query

pytestmark = pytest.mark.both_redis  # each Redis test runs on a single server and on the cluster

NASTY_IDS = ["*", "u?", "[ab]", "{u:1}", "}", "a:b", "user 1", "", "\\*", "ü", "😀", "\ud800"]


@pytest.fixture()
def cache(cache_manager: CacheManager) -> SearchCache:
    return SearchCache(cache_manager, ttl=120, max_results=5, popularity_size=5)


def _results(n: int, tag: str = "r") -> list[dict[str, Any]]:
    return [{"id": f"{tag}{i}", "score": 1 - i / 100} for i in range(n)]


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("  Cats   AND\tdogs\n", "cats and dogs"),
        ("ＣＡＴＳ", "cats"),  # full-width (NFKC)
        ("Straße", "strasse"),  # case folding, not just lower()
        ("ﬁsh", "fish"),  # ligature
        ("a\u3000b", "a b"),  # ideographic space
        ("", ""),
    ],
)
def test_normalize_query(raw: str, normal: str) -> None:
    assert normalize_query(raw) == normal


def test_hit_on_the_same_normalized_query_and_canonical_filters(cache: SearchCache) -> None:
    assert cache.set("u1", "Sunset  Beach", {"type": "image", "year": 2024}, _results(3))
    assert cache.get("u1", "sunset beach", {"year": 2024, "type": "image"}) == _results(3)
    assert cache.get("u1", "sunset beach", {"type": "video", "year": 2024}) is None
    assert cache.get("u1", "sunset beach") is None
    assert cache.get("u1", "sunset") is None


def test_results_are_capped(cache: SearchCache) -> None:
    cache.set("u1", "q", None, _results(50))
    assert cache.get("u1", "q") == _results(5)


def test_bad_filters_and_results_raise_typed_errors(cache: SearchCache) -> None:
    with pytest.raises(CacheKeyError):
        cache.get("u1", "q", {1: "non-str key"})  # type: ignore[dict-item]
    with pytest.raises(CacheValueError):
        cache.set("u1", "q", None, [{"x": object()}])


def test_invalidation_is_one_write_and_leaves_other_users_alone(
    cache: SearchCache, cache_manager: CacheManager, redis_client: redis.Redis
) -> None:
    for q in ("a", "b", "c"):
        cache.set("alice", q, None, _results(1, "alice"))
        cache.set("bob", q, None, _results(1, "bob"))
    keys_before = sorted(redis_client.scan_iter(match=f"{cache_manager.prefix}:*", count=1000))
    first = cache.generation("alice")
    new = cache.invalidate_user("alice")
    assert new == first + 1
    assert sorted(redis_client.scan_iter(match=f"{cache_manager.prefix}:*", count=1000)) == keys_before
    assert [cache.get("alice", q) for q in "abc"] == [None] * 3
    assert [cache.get("bob", q) for q in "abc"] == [_results(1, "bob")] * 3
    cache.set("alice", "a", None, _results(2, "alice"))
    assert cache.get("alice", "a") == _results(2, "alice")


def test_results_computed_before_an_invalidation_are_not_stored(cache: SearchCache) -> None:
    before = cache.lookup("alice", "q")  # miss; remembers the generation
    assert before.results is None and before.generation == 0
    cache.invalidate_user("alice")  # an upload lands while the search runs
    assert not cache.set("alice", "q", None, _results(1), generation=before.generation)
    assert cache.get("alice", "q") is None
    now = cache.lookup("alice", "q")
    assert cache.set("alice", "q", None, _results(1), generation=now.generation)
    assert cache.get("alice", "q") == _results(1)


def test_a_lost_generation_key_never_revives_old_entries(
    cache: SearchCache, redis_client: redis.Redis
) -> None:
    cache.set("alice", "q", None, _results(1))
    gen_key, entry_key = cache.keys("alice", "q")
    cache.invalidate_user("alice")
    redis_client.delete(gen_key)  # evicted by LRU, say
    assert redis_client.exists(entry_key)
    assert cache.get("alice", "q") is None
    cache.set("alice", "q2", None, _results(2))  # a new counter starts at a random value
    assert cache.get("alice", "q") is None
    assert cache.get("alice", "q2") == _results(2)


@pytest.mark.parametrize("victim", NASTY_IDS)
def test_nasty_user_ids_cannot_read_or_evict_each_other(cache: SearchCache, victim: str) -> None:
    cache.set(victim, "secret query", None, _results(1, "victim"))
    for attacker in NASTY_IDS:
        if attacker == victim:
            continue
        assert cache.get(attacker, "secret query") is None
        cache.set(attacker, "secret query", None, _results(1, "attacker"))
        cache.invalidate_user(attacker)
    assert cache.get(victim, "secret query") == _results(1, "victim")


# Any code point, with lone surrogates and glob / hash-tag characters made likely (st.text drops surrogates).
ANY_CHAR = st.one_of(
    st.characters(), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), st.sampled_from("*?[]{}:\\ ")
)
ANY_TEXT = st.lists(ANY_CHAR, max_size=20).map("".join)


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=ANY_TEXT, b=ANY_TEXT, query=ANY_TEXT, n=st.integers(1, 3))
def test_property_one_users_entries_are_invisible_to_any_other(
    cache: SearchCache, a: str, b: str, query: str, n: int
) -> None:
    if a == b:
        return
    cache.invalidate_user(a)
    cache.invalidate_user(b)
    cache.set(a, query, {"q": query}, _results(n, "a"))
    assert cache.get(b, query, {"q": query}) is None
    cache.set(b, query, {"q": query}, _results(n, "b"))
    cache.invalidate_user(b)
    assert cache.get(a, query, {"q": query}) == _results(n, "a")


def test_popularity_counts_normalized_queries_and_stays_bounded(
    cache: SearchCache, redis_client: redis.Redis, cache_manager: CacheManager
) -> None:
    for q in ["Cats", "cats ", "CATS", "dogs", "dogs", "birds", "\ud800*"]:
        assert cache.track(q)
    assert not cache.track("   ") and not cache.track("x" * 300)
    assert cache.popular(2) == [("cats", 3.0), ("dogs", 2.0)]
    assert ("\ud800*", 1.0) in cache.popular(5)
    for i in range(100):
        cache.track(f"rare query {i}")
    size = redis_client.zcard(cache_manager.key("search:popular"))
    assert size <= 2 * cache.popularity_size
    assert cache.popular(2) == [("cats", 3.0), ("dogs", 2.0)]
    assert len(cache.popular(100)) == cache.popularity_size


def test_warm_replays_popular_queries_it_has_not_cached(cache: SearchCache) -> None:
    for q in ["cats"] * 3 + ["dogs"] * 2 + ["boom"]:
        cache.track(q)
    cache.set("alice", "dogs", None, _results(1, "cached"))
    seen: list[str] = []

    def search_fn(query: str) -> list[dict[str, Any]]:
        seen.append(query)
        if query == "boom":
            raise RuntimeError("search failed")
        return _results(2, query)

    assert cache.warm("alice", search_fn, top_n=3) == 1
    assert sorted(seen) == ["boom", "cats"]
    assert cache.get("alice", "cats") == _results(2, "cats")
    assert cache.get("alice", "dogs") == _results(1, "cached")
    assert cache.get("bob", "cats") is None


# Building keys does no I/O: a client on a closed port is never contacted.
KEY_ONLY = SearchCache(CacheManager(redis.Redis(port=1), prefix="pl", default_ttl=60))


@hsettings(max_examples=200, deadline=None)
@given(a=ANY_TEXT, b=ANY_TEXT, q=ANY_TEXT)
def test_distinct_users_never_share_keys_and_each_user_has_one_slot(a: str, b: str, q: str) -> None:
    gen_a, entry_a = KEY_ONLY.keys(a, q, {"k": q})
    gen_b, entry_b = KEY_ONLY.keys(b, q, {"k": q})
    assert key_slot(gen_a.encode()) == key_slot(entry_a.encode())
    if a != b:
        assert {gen_a, entry_a}.isdisjoint({gen_b, entry_b})
    for key in (gen_a, entry_a):
        assert re.fullmatch(r"pl:\{u:[0-9a-f]{32}\}:search:(gen|r:[0-9a-f]{32})", key)


def test_remembered_answers_only_for_the_current_entry_and_counts_a_hit(cache: SearchCache) -> None:
    cache.set("u1", "q", None, _results(2))
    gen_key, entry_key = cache.keys("u1", "q")
    client = cache.manager.client
    gen, entry = client.get(gen_key), client.get(entry_key)
    assert entry is not None
    memo = {entry: "rendered"}
    hits = cache.manager.stats().hits
    assert cache.remembered(gen, entry, memo.get) == "rendered"
    assert cache.manager.stats().hits == hits + 1
    assert cache.remembered(gen, entry, {}.get) is None  # not remembered: decode it
    assert cache.manager.stats().hits == hits + 1
    cache.invalidate_user("u1")
    assert cache.remembered(client.get(gen_key), entry, memo.get) is None  # an older generation's entry
    assert cache.remembered(None, entry, memo.get) is None  # no generation: nothing is current
    assert cache.remembered(gen, None, memo.get) is None
    assert cache.decode(client.get(gen_key), entry).results is None  # the same rule as decode
