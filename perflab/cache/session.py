"""SessionStore: Redis sessions with sliding and absolute expiry, a per-user index, rotation.

A session id is `<user digest>.<token>`: 256 random bits from `secrets` plus the user's 128-bit key
digest, which puts the session next to its user's index in one cluster slot. That lets every
operation be one atomic Lua script over declared keys:

  `{prefix}:{u:<digest>}:sess:<token>`  hash: u=user id, c=created ms, l=last seen ms, d:<name>=orjson
  `{prefix}:{u:<digest>}:sessions`      sorted set: token -> expiry ms (pruned as it is read)

Each data field is its own hash field, so two concurrent `update`s of different fields both land
(no read-modify-write). Redis expires a session at min(last seen + ttl, created + absolute_ttl); the
scripts also check that bound against the caller's clock.

Unlike the caches, the store does not fail open: when Redis is down or slow every method raises
CacheUnavailable (typed, from PerflabError), so a caller can answer 503 and never grants access on a
lookup it could not make. A malformed or unknown id is simply no session (None / False /
SessionNotFound), never an error about Redis. So is a corrupt or foreign record (a non-numeric
timestamp, bad JSON, a missing or other user's `u`, a key of the wrong type): it is deleted, logged
(at most once a minute) and never grants access. An index of the wrong type is replaced by the next write.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import orjson
from redis.exceptions import ResponseError

from perflab.cache.errors import CacheValueError, SessionNotFound
from perflab.cache.keys import UserId, glob_escape, user_digest
from perflab.cache.manager import CacheManager, RedisClient

log = logging.getLogger(__name__)

_TOKEN_BYTES = 32  # 256 bits
_ID = re.compile(r"([0-9a-f]{32})\.([A-Za-z0-9_-]{43})")
_TOKEN = re.compile(rb"[A-Za-z0-9_-]{43}")
_MS = re.compile(rb"[0-9]{1,16}")
_DATA = "d:"
_CORRUPT = -1  # what the scripts return for a record they cannot read
_LOG_EVERY = 60.0  # seconds between two warnings about corrupt records

# Shared Lua: load a live session or clean it up. KEYS[1]=session, KEYS[2]=index; ARGV[1]=now ms,
# ARGV[2]=ttl ms, ARGV[3]=absolute ms, ARGV[4]=token.
# load() -> fields, deadline | nil (no session) | nil, true (a record we cannot read: deleted, no session).
_INDEX = """
local function fix_index(index)
  local t = redis.call('TYPE', index).ok
  if t ~= 'zset' and t ~= 'none' then redis.call('DEL', index) end
end
"""
_LOAD = (
    _INDEX
    + """
local function load()
  fix_index(KEYS[2])
  local h = redis.pcall('HGETALL', KEYS[1])
  if not h.err and #h == 0 then redis.call('ZREM', KEYS[2], ARGV[4]); return nil end
  local created, seen, user
  if not h.err then
    for i = 1, #h, 2 do
      local f = h[i]
      if f == 'c' then created = tonumber(h[i + 1]) elseif f == 'l' then seen = tonumber(h[i + 1])
      elseif f == 'u' then user = h[i + 1] end
    end
  end
  if not (created and seen and user) then
    redis.call('DEL', KEYS[1]); redis.call('ZREM', KEYS[2], ARGV[4]); return nil, true
  end
  local deadline = created + tonumber(ARGV[3])
  if tonumber(ARGV[1]) >= deadline then
    redis.call('DEL', KEYS[1]); redis.call('ZREM', KEYS[2], ARGV[4]); return nil
  end
  return h, deadline
end
local function slide(key, token, deadline)
  local now = tonumber(ARGV[1])
  local expiry = math.min(now + tonumber(ARGV[2]), deadline)
  redis.call('HSET', key, 'l', ARGV[1])
  redis.call('PEXPIRE', key, expiry - now)
  redis.call('ZADD', KEYS[2], expiry, token)
end
"""
)
# get / touch / update: set ARGV[5..] (field, value pairs; none for get and touch), slide the expiry,
# return the fields (or nil).
_UPDATE = (
    _LOAD
    + """
local h, deadline = load()
if not h then return deadline and -1 or nil end
if #ARGV > 4 then redis.call('HSET', KEYS[1], unpack(ARGV, 5)) end
slide(KEYS[1], ARGV[4], deadline)
return redis.call('HGETALL', KEYS[1])
"""
)
# rotate: KEYS[3]=new session; ARGV[5]=new token. RENAME keeps every field, created_at included.
_ROTATE = (
    _LOAD
    + """
local h, deadline = load()
if not h then return deadline and -1 or nil end
redis.call('RENAME', KEYS[1], KEYS[3])
redis.call('ZREM', KEYS[2], ARGV[4])
slide(KEYS[3], ARGV[5], deadline)
return redis.call('HGETALL', KEYS[3])
"""
)
# create: ARGV = now, ttl, absolute, token, user, then field/value pairs.
_CREATE = (
    _INDEX
    + """
fix_index(KEYS[2])
local now, ttl, absolute = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'u', ARGV[5], 'c', ARGV[1], 'l', ARGV[1], unpack(ARGV, 6))
local life = math.min(ttl, absolute)
redis.call('PEXPIRE', KEYS[1], life)
redis.call('ZADD', KEYS[2], now + life, ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('PTTL', KEYS[2]) < absolute then redis.call('PEXPIRE', KEYS[2], absolute) end
return 1
"""
)
# check-and-read: the session must be live and belong to ARGV[5]; then slide it and GET KEYS[3..]
# (keys of that user, in the same slot). -> {1, values...} | {0}.
_CHECK_AND_READ = (
    _LOAD
    + """
local h, deadline = load()
if not h then return {0} end
local owner
for i = 1, #h, 2 do if h[i] == 'u' then owner = h[i + 1] end end
if owner ~= ARGV[5] then return {0} end
slide(KEYS[1], ARGV[4], deadline)
local out = {1}
for i = 3, #KEYS do out[#out + 1] = redis.call('GET', KEYS[i]) end
return out
"""
)
# delete: KEYS = session, index; ARGV = token.
_DELETE = (
    _INDEX
    + """
fix_index(KEYS[2])
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('DEL', KEYS[1])
"""
)
# revoke: KEYS = index, sessions...; ARGV = their tokens.
_REVOKE = (
    _INDEX
    + """
fix_index(KEYS[1])
local n = 0
if #KEYS > 1 then n = redis.call('DEL', unpack(KEYS, 2)) end
if #ARGV > 0 then redis.call('ZREM', KEYS[1], unpack(ARGV)) end
return n
"""
)


@dataclass(frozen=True)
class Session:
    """A live session. `created_at` / `last_seen` are epoch seconds."""

    id: str
    user_id: str
    data: dict[str, Any]
    created_at: float
    last_seen: float


class SessionStore:
    """Sessions with sliding `ttl` and hard `absolute_ttl` lifetimes (seconds). Raises CacheUnavailable."""

    def __init__(
        self,
        manager: CacheManager,
        *,
        ttl: float,
        absolute_ttl: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl <= 0 or absolute_ttl <= 0:
            raise CacheValueError("session ttl and absolute_ttl must be positive")
        self.manager = manager
        self.ttl = ttl
        self.absolute_ttl = absolute_ttl
        self._clock = clock
        self._ttl_ms = max(1, int(ttl * 1000))
        self._abs_ms = max(1, int(absolute_ttl * 1000))
        self._corrupt_lock = threading.Lock()
        self._corrupt_seen = 0  # corrupt records met since the last warning
        self._corrupt_logged = -_LOG_EVERY
        register = manager.client.register_script
        self._create, self._update = register(_CREATE), register(_UPDATE)
        self._rotate, self._delete, self._revoke = register(_ROTATE), register(_DELETE), register(_REVOKE)
        self._check_and_read = register(_CHECK_AND_READ)

    # -- keys --------------------------------------------------------------------------------------

    def _index(self, user_digest_: str) -> str:
        return self.manager.key(f"{{u:{user_digest_}}}:sessions")

    def _session(self, user_digest_: str, token: str) -> str:
        return self.manager.key(f"{{u:{user_digest_}}}:sess:{token}")

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # -- operations --------------------------------------------------------------------------------

    def create(self, user_id: UserId, data: Mapping[str, Any] | None = None) -> Session:
        """A new session for `user_id` with `data` (JSON-like values, str keys)."""
        digest_ = user_digest(user_id)
        token = secrets.token_urlsafe(_TOKEN_BYTES)
        now = self._now_ms()
        fields = _encode_fields(data or {})
        keys = [self._session(digest_, token), self._index(digest_)]
        args: list[Any] = [now, self._ttl_ms, self._abs_ms, token, _utf8(user_id), *fields]
        self.manager.call(
            "session.create", lambda c: self._create(keys=keys, args=args, client=c), None, fail_open=False
        )
        session = _decode(
            f"{digest_}.{token}", [b"u", args[4], b"c", str(now).encode(), b"l", str(now).encode(), *fields]
        )
        assert session is not None  # built from what we just wrote
        return session

    def get(self, session_id: str) -> Session | None:
        """The session, its expiry slid forward; None if unknown, malformed, expired or revoked."""
        return self._run("session.get", self._update, session_id)

    def check_and_read(self, session_id: str, user_id: UserId, keys: list[str]) -> list[bytes | None] | None:
        """One round trip for a request's session check and its reads: if the session is live and
        belongs to `user_id`, slide it and return the values of `keys` (full keys of that user, so
        one cluster slot); else None, and nothing is read. Raises CacheUnavailable."""
        parsed = _parse(session_id)
        if parsed is None or not isinstance(user_id, str) or parsed[0] != user_digest(user_id):
            return None
        digest_, token = parsed
        all_keys = [self._session(digest_, token), self._index(digest_), *keys]
        args: list[Any] = [self._now_ms(), self._ttl_ms, self._abs_ms, token, _utf8(user_id)]
        reply = self.manager.call(
            "session.check_and_read",
            lambda c: self._check_and_read(keys=all_keys, args=args, client=c),
            None,
            fail_open=False,
        )
        if not reply or reply[0] != 1:
            return None
        return cast(list[bytes | None], list(reply[1:]))

    def touch(self, session_id: str) -> bool:
        """Slide the expiry without reading the data back; False if there is no such session."""
        return self._run("session.touch", self._update, session_id) is not None

    def update(self, session_id: str, **changes: Any) -> Session:
        """Set data fields atomically (concurrent updates of other fields are kept); slides the expiry."""
        session = self._run("session.update", self._update, session_id, extra=_encode_fields(changes))
        if session is None:
            raise SessionNotFound("session not found or expired")
        return session

    def rotate(self, session_id: str) -> Session:
        """Replace the id (after login or privilege change) keeping data and the absolute deadline."""
        parsed = _parse(session_id)
        if parsed is None:
            raise SessionNotFound("session not found or expired")
        digest_, token = parsed
        new_token = secrets.token_urlsafe(_TOKEN_BYTES)
        keys = [self._session(digest_, token), self._index(digest_), self._session(digest_, new_token)]
        args: list[Any] = [self._now_ms(), self._ttl_ms, self._abs_ms, token, new_token]
        reply = self.manager.call(
            "session.rotate", lambda c: self._rotate(keys=keys, args=args, client=c), None, fail_open=False
        )
        session = self._read(f"{digest_}.{new_token}", reply)
        if session is None:
            raise SessionNotFound("session not found or expired")
        return session

    def delete(self, session_id: str) -> bool:
        """Log out one session; False if there was none."""
        parsed = _parse(session_id)
        if parsed is None:
            return False
        digest_, token = parsed
        keys = [self._session(digest_, token), self._index(digest_)]
        n = self.manager.call(
            "session.delete", lambda c: self._delete(keys=keys, args=[token], client=c), 0, fail_open=False
        )
        return bool(n)

    def list_user_sessions(self, user_id: UserId) -> list[Session]:
        """The user's live sessions, oldest first (expired index entries are pruned)."""
        digest_ = user_digest(user_id)
        now = self._now_ms()

        def run(client: RedisClient) -> list[tuple[str, Any]]:
            tokens = self._tokens(client, digest_, prune_before=now)
            pipe = client.pipeline(transaction=False)
            for token in tokens:
                pipe.hgetall(self._session(digest_, token))
            return list(zip(tokens, pipe.execute(raise_on_error=False), strict=True))

        rows: list[tuple[str, Any]] = self.manager.call("session.list", run, [], fail_open=False)
        sessions = []
        for token, fields in rows:
            if not fields:
                continue
            session = self._read(f"{digest_}.{token}", fields)
            if session is not None and session.created_at * 1000 + self._abs_ms > now:
                sessions.append(session)
        return sorted(sessions, key=lambda s: (s.created_at, s.id))

    def revoke_all(self, user_id: UserId) -> int:
        """Delete every session of the user (e.g. after a password change); returns how many.

        Atomic per session; a session created while this runs may survive, as if created just after.
        """
        digest_ = user_digest(user_id)
        index = self._index(digest_)

        def run(client: RedisClient) -> int:
            tokens = self._tokens(client, digest_)
            keys = [index, *(self._session(digest_, t) for t in tokens)]
            return int(self._revoke(keys=keys, args=tokens, client=client))

        return self.manager.call("session.revoke_all", run, 0, fail_open=False)

    def _run(self, op: str, script: Any, session_id: str, extra: list[Any] | None = None) -> Session | None:
        parsed = _parse(session_id)
        if parsed is None:
            return None
        digest_, token = parsed
        keys = [self._session(digest_, token), self._index(digest_)]
        args: list[Any] = [self._now_ms(), self._ttl_ms, self._abs_ms, token, *(extra or ())]
        reply = self.manager.call(op, lambda c: script(keys=keys, args=args, client=c), None, fail_open=False)
        return self._read(session_id, reply)

    def _tokens(self, client: RedisClient, digest_: str, prune_before: int | None = None) -> list[str]:
        """The tokens in the user's index. An index of the wrong type is unreadable, so the user's
        session keys are found by SCAN instead (rare, and revoke_all must not miss one)."""
        index = self._index(digest_)
        try:
            if prune_before is not None:
                client.zremrangebyscore(index, "-inf", prune_before)
            members = cast(list[bytes], client.zrange(index, 0, -1))
        except ResponseError:  # WRONGTYPE
            self._corrupt("an index that is not a sorted set")
            head = self._session(digest_, "")
            pattern = glob_escape(head) + "*"
            members = [k[len(head) :] for k in cast(list[bytes], client.scan_iter(match=pattern, count=1000))]
        return [t.decode() for t in members if _TOKEN.fullmatch(t)]

    def _read(self, session_id: str, reply: Any) -> Session | None:
        """The session a script or HGETALL returned; None for none and for a corrupt or foreign record."""
        if not reply or isinstance(reply, Exception):
            if isinstance(reply, Exception):
                self._corrupt(f"a record redis cannot read ({reply})")
            return None
        if reply == _CORRUPT:
            self._corrupt("a record without a numeric created time or a user")
            return None
        session = _decode(session_id, reply)
        if session is None:
            self._corrupt("a malformed or foreign record")
            self._discard(session_id)
        return session

    def _discard(self, session_id: str) -> None:
        """Delete a record found corrupt, so no later write can make it look valid (best effort)."""
        digest_, _, token = session_id.partition(".")
        keys = [self._session(digest_, token), self._index(digest_)]
        self.manager.call("session.discard", lambda c: self._delete(keys=keys, args=[token], client=c), 0)

    def _corrupt(self, what: str) -> None:
        """Count a corrupt record; warn at most once every _LOG_EVERY seconds (ids are never logged)."""
        now = time.monotonic()
        with self._corrupt_lock:
            self._corrupt_seen += 1
            if now - self._corrupt_logged < _LOG_EVERY:
                return
            seen, self._corrupt_seen, self._corrupt_logged = self._corrupt_seen, 0, now
        log.warning("session store: %d corrupt record(s) treated as no session, e.g. %s", seen, what)


def _parse(session_id: object) -> tuple[str, str] | None:
    if not isinstance(session_id, str):
        return None
    m = _ID.fullmatch(session_id)
    return (m.group(1), m.group(2)) if m else None


def _utf8(text: str) -> bytes:
    """Any Python str, lone surrogates included, as bytes (redis-py's strict encoding would raise)."""
    return text.encode("utf-8", "surrogatepass")


def _encode_fields(data: Mapping[str, Any]) -> list[bytes]:
    """[name, json, name, json, ...] as bytes, names as `d:<name>`."""
    out: list[bytes] = []
    for name, value in data.items():
        if not isinstance(name, str):
            raise CacheValueError(f"session data keys must be str, not {type(name).__name__}")
        try:
            out += [_utf8(_DATA + name), orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)]
        except (orjson.JSONEncodeError, TypeError) as exc:
            raise CacheValueError(f"session data {name!r} is not JSON-serializable: {exc}") from exc
    return out


def _decode(session_id: str, reply: list[Any] | dict[bytes, bytes]) -> Session | None:
    """The session in a record's fields; None unless every field is one we wrote, for this id's user."""
    try:
        pairs = reply.items() if isinstance(reply, dict) else zip(reply[::2], reply[1::2], strict=True)
        fields = {k.decode("utf-8", "surrogatepass"): v for k, v in pairs}
        user_id = fields["u"].decode("utf-8", "surrogatepass")
        created, last_seen = fields["c"], fields["l"]
        if not (_MS.fullmatch(created) and _MS.fullmatch(last_seen)):
            return None
        if user_digest(user_id) != session_id.partition(".")[0]:  # another user's record under this id
            return None
        data = {k[len(_DATA) :]: orjson.loads(v) for k, v in fields.items() if k.startswith(_DATA)}
    except (KeyError, ValueError, TypeError, AttributeError):  # missing field, bad UTF-8 or JSON, odd reply
        return None
    return Session(
        id=session_id,
        user_id=user_id,
        data=data,
        created_at=int(created) / 1000,
        last_seen=int(last_seen) / 1000,
    )
