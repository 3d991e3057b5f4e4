"""Corrupt values written by a raw client into every cache: each is a miss or "no session", never an
exception, never access to anything, and the next write repairs what it can."""

from __future__ import annotations

import logging
import re
import struct
from typing import Any

import numpy as np
import pytest
import redis

from perflab.cache import (
    CacheManager,
    EmbeddingCache,
    SearchCache,
    SessionNotFound,
    SessionStore,
    user_tag,
)

BAD_GENERATIONS = [b"abc", b"", b"1.5", b"-3", b"0", b"007", b"9" * 19, b"\xff\xfe", b"1 "]
RESULTS = [{"id": "m1", "score": 0.9}]


# -- search cache ----------------------------------------------------------------------------------


@pytest.fixture()
def search(cache_manager: CacheManager) -> SearchCache:
    return SearchCache(cache_manager, ttl=120)


def _gen_key(search: SearchCache, user: str) -> str:
    return search.keys(user, "q")[0]


@pytest.mark.parametrize("bad", BAD_GENERATIONS, ids=repr)
def test_a_corrupt_generation_counter_is_a_miss_and_is_repaired(
    search: SearchCache, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture, bad: bytes
) -> None:
    gen_key, entry_key = search.keys("alice", "q")
    redis_client.set(gen_key, bad)
    redis_client.set(entry_key, bad + b"|" + b'[{"id": "planted"}]')  # would match the bad counter
    found = search.lookup("alice", "q")
    assert found == type(found)(None, 0)  # a miss, with "no generation yet"
    assert search.get("alice", "q") is None
    assert search.generation("alice") == 0
    # set stores only what a lookup can read back: it replaces the counter first
    assert search.set("alice", "q", None, RESULTS, generation=found.generation)
    assert search.get("alice", "q") == RESULTS
    assert re.fullmatch(rb"[1-9][0-9]*", redis_client.get(gen_key) or b"")

    redis_client.set(gen_key, bad)
    with caplog.at_level(logging.WARNING, logger="perflab.cache.search"):
        new = search.invalidate_user("alice")
    assert new >= 1 and "did not reach redis" not in caplog.text  # Redis answered
    assert redis_client.get(gen_key) == str(new).encode()
    assert search.generation("alice") == new
    assert search.get("alice", "q") is None


def test_a_generation_key_of_another_type_is_a_miss_and_is_replaced(
    search: SearchCache, redis_client: redis.Redis
) -> None:
    gen_key = _gen_key(search, "alice")
    redis_client.hset(gen_key, "x", "1")
    assert search.lookup("alice", "q").results is None
    assert search.generation("alice") == 0
    assert search.set("alice", "q", None, RESULTS)
    assert search.get("alice", "q") == RESULTS
    redis_client.delete(gen_key)
    redis_client.rpush(gen_key, "1")
    assert search.invalidate_user("alice") >= 1


@pytest.mark.parametrize(
    "payload", [b"not json", b"{}", b'{"id": 1}', b"[1, 2]", b'["x"]', b"", b"\xff"], ids=repr
)
def test_a_corrupt_entry_is_a_counted_miss(
    search: SearchCache, cache_manager: CacheManager, redis_client: redis.Redis, payload: bytes
) -> None:
    assert search.set("alice", "q", None, RESULTS)
    gen_key, entry_key = search.keys("alice", "q")
    redis_client.set(entry_key, (redis_client.get(gen_key) or b"") + b"|" + payload, px=60_000)
    assert search.get("alice", "q") is None
    assert cache_manager.stats().corrupt == 1


def test_corrupt_popularity_members_are_skipped_and_a_foreign_set_is_replaced(
    search: SearchCache, cache_manager: CacheManager, redis_client: redis.Redis
) -> None:
    key = cache_manager.key("search:popular")
    redis_client.zadd(key, {b"\xff\xfe not utf-8": 10, "cats": 5})
    assert search.popular() == [("cats", 5.0)]
    redis_client.delete(key)
    redis_client.set(key, "not a sorted set")
    assert search.popular() == []
    assert search.track("dogs")
    assert search.popular() == [("dogs", 1.0)]


# -- sessions --------------------------------------------------------------------------------------


@pytest.fixture()
def store(cache_manager: CacheManager) -> SessionStore:
    return SessionStore(cache_manager, ttl=60, absolute_ttl=600)


def _key(store: SessionStore, session_id: str) -> str:
    digest, token = session_id.split(".")
    return store.manager.key(f"{{u:{digest}}}:sess:{token}")


def _assert_no_session(store: SessionStore, session_id: str, user: str) -> None:
    assert store.get(session_id) is None
    assert store.touch(session_id) is False
    with pytest.raises(SessionNotFound):
        store.update(session_id, role="admin")
    with pytest.raises(SessionNotFound):
        store.rotate(session_id)
    assert session_id not in {s.id for s in store.list_user_sessions(user)}


CORRUPTIONS: dict[str, Any] = {
    "created not numeric": lambda r, k: r.hset(k, "c", "yesterday"),
    "created empty": lambda r, k: r.hset(k, "c", ""),
    "created missing": lambda r, k: r.hdel(k, "c"),
    "created a float": lambda r, k: r.hset(k, "c", r.hget(k, "c") + b".5"),
    "created in hex": lambda r, k: r.hset(k, "c", hex(int(r.hget(k, "c")))),
    "last seen not numeric": lambda r, k: r.hset(k, "l", "x"),
    "data bad json": lambda r, k: r.hset(k, "d:role", b"{not json"),
    "data not utf-8": lambda r, k: r.hset(k, "d:role", b"\xff"),
    "field name not utf-8": lambda r, k: r.hset(k, b"d:\xff", b"1"),
    "user missing": lambda r, k: r.hdel(k, "u"),
    "user not utf-8": lambda r, k: r.hset(k, "u", b"\xff\xfe"),
    "another user": lambda r, k: r.hset(k, "u", "mallory"),
    "a string": lambda r, k: (r.delete(k), r.set(k, "x")),
    "a list": lambda r, k: (r.delete(k), r.rpush(k, "u", "alice")),
}


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_a_corrupt_or_foreign_session_record_is_no_session(
    store: SessionStore, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture, corrupt: Any
) -> None:
    session = store.create("alice", {"role": "user"})
    other = store.create("alice", {"role": "user"})
    corrupt(redis_client, _key(store, session.id))
    with caplog.at_level(logging.WARNING, logger="perflab.cache.session"):
        _assert_no_session(store, session.id, "alice")
    warnings = [r for r in caplog.records if r.name == "perflab.cache.session"]
    assert len(warnings) == 1  # logged once, not once per call
    assert session.id not in caplog.text and session.id.split(".")[1] not in caplog.text
    assert store.get(other.id) is not None  # the user's other session is untouched
    assert store.revoke_all("alice") >= 1
    assert store.get(other.id) is None


def test_a_foreign_record_copied_under_a_victims_id_grants_nothing(
    store: SessionStore, redis_client: redis.Redis
) -> None:
    mallory = store.create("mallory", {"role": "admin"})
    victim = store.create("victim")
    key = _key(store, victim.id)
    redis_client.restore(key, 0, redis_client.dump(_key(store, mallory.id)), replace=True)
    _assert_no_session(store, victim.id, "victim")
    assert store.get(mallory.id) is not None


def test_an_index_of_the_wrong_type_neither_raises_nor_hides_sessions_from_revoke_all(
    store: SessionStore, redis_client: redis.Redis
) -> None:
    first = store.create("alice")
    index = store.manager.key(f"{user_tag('alice')}:sessions")
    redis_client.delete(index)
    redis_client.set(index, "not a sorted set")
    assert [s.id for s in store.list_user_sessions("alice")] == [first.id]  # found by SCAN
    assert store.revoke_all("alice") == 1
    assert store.get(first.id) is None
    redis_client.set(index, "not a sorted set")
    second = store.create("alice")  # the write replaces the index
    assert store.get(second.id) is not None
    assert [s.id for s in store.list_user_sessions("alice")] == [second.id]
    assert store.delete(second.id)


# -- embedding cache and manager values ------------------------------------------------------------

DIM = 8


def test_an_embedding_blob_with_nan_or_inf_is_a_miss(
    cache_manager: CacheManager, redis_client: redis.Redis
) -> None:
    cache = EmbeddingCache(cache_manager, model="m", dim=DIM)
    good = np.ones(DIM, dtype=np.float32)
    head = cache.encode(good)[:8]
    for i, value in enumerate((np.nan, np.inf, -np.inf)):
        vec = good.copy()
        vec[3] = value
        redis_client.set(cache_manager.key(cache.key(f"t{i}")), head + vec.tobytes())
    redis_client.set(cache_manager.key(cache.key("wide")), head + np.ones(DIM, np.float64).tobytes())
    cache.set("ok", good)
    assert [cache.get(f"t{i}") for i in range(3)] == [None, None, None]
    got = cache.get_many(["t0", "t1", "t2", "wide", "ok"])
    assert got[:4] == [None] * 4 and np.array_equal(got[4], good)
    assert cache_manager.stats().corrupt == 7


_ENTRY_HEAD = struct.Struct("<dd")


@pytest.mark.parametrize(
    "head",
    [(float("nan"), 1e12), (0.1, float("nan")), (float("inf"), 1e12), (-1.0, 1e12), (0.1, float("inf"))],
    ids=repr,
)
def test_an_entry_with_bad_xfetch_metadata_is_a_miss_and_get_or_set_recomputes(
    cache_manager: CacheManager, redis_client: redis.Redis, head: tuple[float, float]
) -> None:
    redis_client.set(cache_manager.key("x"), b"\x03" + _ENTRY_HEAD.pack(*head) + b'\x01"stale"')
    assert cache_manager.get("x") is None
    assert cache_manager.get_or_set("x", lambda: "fresh") == "fresh"
    assert cache_manager.get("x") == "fresh"


@pytest.mark.parametrize(
    "raw", [b"", b"\x01", b"\x01{", b"\x01\xff", b"\x03", b"\x03" + b"\x00" * 17, b"\x03" * 40], ids=repr
)
def test_a_corrupt_value_never_raises_from_get_or_set(
    cache_manager: CacheManager, redis_client: redis.Redis, raw: bytes
) -> None:
    redis_client.set(cache_manager.key("v"), raw)
    assert cache_manager.get("v") is None
    assert cache_manager.get_many(["v"]) == [None]
    assert cache_manager.get_or_set("v", lambda: {"ok": 1}) == {"ok": 1}
    redis_client.delete(cache_manager.key("w"))
    redis_client.hset(cache_manager.key("w"), "a", "b")  # a key of another type
    assert cache_manager.get("w") is None
    assert cache_manager.get_or_set("w", lambda: 2) == 2
