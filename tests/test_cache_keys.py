"""Key building: hash tags, sibling keys in the same slot, glob escaping, and user isolation."""

from __future__ import annotations

import re
import uuid

import pytest
import redis
from redis.crc import key_slot

from perflab.cache import CacheKeyError, CacheManager, SearchCache, SessionStore, user_tag
from perflab.cache.keys import check_prefix, check_segment, glob_escape, hash_tag, sibling

NASTY = [
    "*",
    "?",
    "[a-z]",
    "{",
    "}",
    "{u:x}",
    ":",
    "a:b:c",
    "u 1",
    "",
    "\\",
    "\u00e9",
    "\U0001f600",
    "\ud800",
]


def test_user_tag_is_hex_and_distinct_for_nasty_ids() -> None:
    tags = {user_tag(u) for u in NASTY}
    assert len(tags) == len(NASTY)
    for tag in tags:
        assert re.fullmatch(r"\{u:[0-9a-f]{32}\}", tag)


@pytest.mark.parametrize("bad", [42, 1, True, uuid.UUID(int=1), None, b"1", 1.0])
def test_a_user_id_is_a_str_and_nothing_else(bad: object) -> None:
    """An int (or UUID) id and its string form would otherwise be one user: refused, not coerced."""
    with pytest.raises(CacheKeyError, match="user id must be a str"):
        user_tag(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [1, uuid.UUID(int=1)])
def test_every_cache_api_refuses_a_non_str_user_id_without_writing(
    cache_manager: CacheManager, redis_client: redis.Redis, bad: object
) -> None:
    search = SearchCache(cache_manager, ttl=60)
    store = SessionStore(cache_manager, ttl=60, absolute_ttl=600)
    calls = [
        lambda: search.set(bad, "q", None, [{"id": 1}]),  # type: ignore[arg-type]
        lambda: search.get(bad, "q"),  # type: ignore[arg-type]
        lambda: search.invalidate_user(bad),  # type: ignore[arg-type]
        lambda: store.create(bad),  # type: ignore[arg-type]
        lambda: store.list_user_sessions(bad),  # type: ignore[arg-type]
        lambda: store.revoke_all(bad),  # type: ignore[arg-type]
    ]
    for call in calls:
        with pytest.raises(CacheKeyError):
            call()
    assert list(redis_client.scan_iter(match=f"{cache_manager.prefix}:*")) == []


def test_hash_tag_follows_the_cluster_rule() -> None:
    assert hash_tag("pl:{u:ab}:x") == "u:ab"
    assert hash_tag("pl:{}:x") is None
    assert hash_tag("pl:x") is None
    assert hash_tag("a{b}c{d}") == "b"


@pytest.mark.parametrize("key", ["pl:plain", "pl:{u:abc}:search:gen", "{a", "pl:{x}y}"])
def test_sibling_shares_the_slot_and_the_namespace(key: str) -> None:
    lock = sibling(key, "lock", "pl:")
    assert lock != key
    assert key_slot(lock.encode()) == key_slot(key.encode())
    assert lock.startswith("pl:") or lock.startswith(key)


@pytest.mark.parametrize("key", ["pl:a}b", "pl:{}:empty"])
def test_sibling_refuses_a_key_no_sibling_can_share_a_slot_with(key: str) -> None:
    with pytest.raises(CacheKeyError):
        sibling(key, "lock")


def test_prefix_and_segment_validation() -> None:
    assert check_prefix("pl") == "pl"
    for bad in ["", "p{l", "p}l", "p*", "p l", "p?", "p[1]"]:
        with pytest.raises(CacheKeyError):
            check_prefix(bad)
    assert (
        check_segment("model", "sentence-transformers/all-MiniLM-L6-v2")
        == "sentence-transformers/all-MiniLM-L6-v2"
    )
    for bad in ["", "a*", "a:b", "a b", "x" * 129]:
        with pytest.raises(CacheKeyError):
            check_segment("model", bad)


def test_glob_escape_matches_only_the_literal(redis_client: redis.Redis, settings) -> None:
    p = settings.key_prefix
    literal = "a*b?[c]\\d"
    for suffix in [literal, "aXb?[c]\\d", "a*bX[c]\\d", "a*b?c\\d", "a*b?[c]d"]:
        redis_client.set(f"{p}:{suffix}", 1, ex=60)
    found = {k.decode() for k in redis_client.scan_iter(match=f"{p}:{glob_escape(literal)}", count=1000)}
    assert found == {f"{p}:{literal}"}
