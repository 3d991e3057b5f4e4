"""Key building: hash tags, sibling keys in the same slot, glob escaping, and user isolation."""

from __future__ import annotations

import re
import uuid

import pytest
import redis
from redis.crc import key_slot

from perflab.cache import CacheKeyError, user_tag
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


def test_user_tag_accepts_int_and_uuid_but_not_other_types() -> None:
    u = uuid.uuid4()
    assert user_tag(u) == user_tag(str(u))
    assert user_tag(42) == user_tag("42")
    with pytest.raises(CacheKeyError):
        user_tag(None)  # type: ignore[arg-type]
    with pytest.raises(CacheKeyError):
        user_tag(True)


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
