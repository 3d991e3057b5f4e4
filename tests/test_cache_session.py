"""SessionStore on the real Redis: ids, sliding and absolute expiry, rotation, per-user index, races."""

from __future__ import annotations

import re
import secrets
import threading
import time

import pytest
import redis

from perflab.cache import CacheManager, CacheValueError, SessionNotFound, SessionStore
from perflab.cache.keys import user_digest

pytestmark = pytest.mark.both_redis  # each Redis test runs on a single server and on the cluster


class Clock:
    """Wall time plus an offset we can move forward, so absolute lifetimes need no sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def store(cache_manager: CacheManager, clock: Clock) -> SessionStore:
    return SessionStore(cache_manager, ttl=60, absolute_ttl=600, clock=clock)


def _session_key(store: SessionStore, session_id: str) -> str:
    digest, token = session_id.split(".")
    return store.manager.key(f"{{u:{digest}}}:sess:{token}")


def test_create_and_get_round_trip_with_a_256_bit_id(store: SessionStore) -> None:
    session = store.create("alice", {"role": "admin", "prefs": {"theme": "dark"}})
    digest, token = session.id.split(".")
    assert digest == user_digest("alice")
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)  # 32 random bytes, url-safe base64
    got = store.get(session.id)
    assert got is not None
    assert (got.id, got.user_id, got.data) == (
        session.id,
        "alice",
        {"role": "admin", "prefs": {"theme": "dark"}},
    )
    assert got.created_at == session.created_at
    assert store.create("alice", {}).id != session.id


def test_sliding_expiry_is_refreshed_by_get_and_touch(
    cache_manager: CacheManager, redis_client: redis.Redis
) -> None:
    store = SessionStore(cache_manager, ttl=2, absolute_ttl=600)
    session = store.create("alice")
    key = _session_key(store, session.id)
    time.sleep(0.6)
    assert redis_client.pttl(key) <= 1500
    assert store.get(session.id) is not None
    assert redis_client.pttl(key) > 1500
    time.sleep(0.6)
    assert store.touch(session.id)
    assert redis_client.pttl(key) > 1500


def test_an_idle_session_expires(cache_manager: CacheManager) -> None:
    store = SessionStore(cache_manager, ttl=0.2, absolute_ttl=600)
    session = store.create("alice")
    time.sleep(0.4)
    assert store.get(session.id) is None
    assert not store.touch(session.id)
    assert store.list_user_sessions("alice") == []


def test_the_absolute_lifetime_caps_sliding(
    store: SessionStore, clock: Clock, redis_client: redis.Redis
) -> None:
    session = store.create("alice")
    clock.offset = 599  # active all along, but nearly at the hard limit
    assert store.get(session.id) is not None
    assert redis_client.pttl(_session_key(store, session.id)) <= 1000  # expiry never passes created + 600 s
    clock.offset = 600
    assert store.get(session.id) is None
    assert not redis_client.exists(_session_key(store, session.id))
    assert store.list_user_sessions("alice") == []


def test_update_merges_fields_and_concurrent_updates_lose_nothing(store: SessionStore) -> None:
    session = store.create("alice", {"a": 1})
    updated = store.update(session.id, b=2, a=10)
    assert updated.data == {"a": 10, "b": 2}

    def writer(i: int) -> None:
        store.update(session.id, **{f"k{i}": i})

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    data = store.get(session.id).data  # type: ignore[union-attr]
    assert data == {"a": 10, "b": 2, **{f"k{i}": i for i in range(40)}}
    with pytest.raises(CacheValueError):
        store.update(session.id, bad=object())
    with pytest.raises(SessionNotFound):
        store.update("not-a-session", x=1)


def test_rotate_replaces_the_id_and_keeps_data_and_deadline(store: SessionStore, clock: Clock) -> None:
    old = store.create("alice", {"cart": [1, 2]})
    clock.offset = 30
    new = store.rotate(old.id)
    assert new.id != old.id and new.id.split(".")[0] == old.id.split(".")[0]
    assert store.get(old.id) is None
    assert new.data == {"cart": [1, 2]} and new.created_at == old.created_at
    assert [s.id for s in store.list_user_sessions("alice")] == [new.id]
    clock.offset = 600  # rotation does not extend the absolute lifetime
    assert store.get(new.id) is None
    with pytest.raises(SessionNotFound):
        store.rotate(old.id)


def test_list_and_revoke_all_are_per_user(store: SessionStore) -> None:
    alice = [store.create("alice", {"n": i}) for i in range(3)]
    bob = store.create("bob")
    listed = store.list_user_sessions("alice")
    assert {s.id for s in listed} == {s.id for s in alice}
    assert {s.data["n"] for s in listed} == {0, 1, 2}
    assert [s.created_at for s in listed] == sorted(s.created_at for s in listed)
    assert store.revoke_all("alice") == 3
    assert all(store.get(s.id) is None for s in alice)
    assert store.list_user_sessions("alice") == []
    assert store.get(bob.id) is not None
    assert store.revoke_all("nobody") == 0


def test_delete_logs_out_one_session(store: SessionStore) -> None:
    a, b = store.create("alice"), store.create("alice")
    assert store.delete(a.id) and not store.delete(a.id)
    assert store.get(a.id) is None
    assert [s.id for s in store.list_user_sessions("alice")] == [b.id]


@pytest.mark.parametrize(
    "bad", ["", "garbage", "*", "a" * 32 + ".*", "{u:x}.abc", "A" * 32 + "." + "a" * 43, None, 42]
)
def test_malformed_ids_are_no_session(store: SessionStore, bad: object) -> None:
    assert store.get(bad) is None  # type: ignore[arg-type]
    assert not store.touch(bad)  # type: ignore[arg-type]
    assert not store.delete(bad)  # type: ignore[arg-type]
    with pytest.raises(SessionNotFound):
        store.rotate(bad)  # type: ignore[arg-type]


def test_a_forged_id_with_another_users_digest_is_no_session(store: SessionStore) -> None:
    victim = store.create("victim")
    forged = f"{user_digest('victim')}.{secrets.token_urlsafe(32)}"
    assert store.get(forged) is None
    assert not store.delete(forged)
    assert store.get(victim.id) is not None


@pytest.mark.parametrize("user", ["*", "u:1", "{u:1}", "[a]", "a b", "\ud800", "😀"])
def test_nasty_user_ids_keep_their_sessions_apart(store: SessionStore, user: str) -> None:
    mine = store.create(user, {"who": "me"})
    other = store.create(user + "x", {"who": "other"})
    assert store.get(mine.id).user_id == user  # type: ignore[union-attr]
    assert store.revoke_all(user) == 1
    assert store.get(other.id) is not None
