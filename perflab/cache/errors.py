"""Typed errors of the cache layer.

Cache *reads* never raise these for a dead or slow Redis (they fail open); they are raised for bad input
(a value that cannot be serialized, a malformed key) and by the session store, which must not guess.
"""

from __future__ import annotations

from perflab.errors import PerflabError


class CacheError(PerflabError):
    """Base of every error the cache layer raises on purpose."""


class CacheUnavailable(CacheError):
    """Redis could not answer (down, slow, or the circuit breaker is open).

    Only the session store raises it: a session lookup that cannot reach Redis must not grant access.
    """


class CacheKeyError(CacheError, ValueError):
    """A key, prefix or namespace segment is malformed (e.g. braces that would break a hash tag)."""


class CacheValueError(CacheError, TypeError):
    """A value cannot be cached: not serializable, wrong shape, non-finite floats."""


class SessionNotFound(CacheError, KeyError):
    """The session id is unknown, malformed, expired or revoked."""

    def __str__(self) -> str:  # KeyError would print the repr of its argument
        return str(self.args[0]) if self.args else "session not found"


class FactoryFailed(CacheError):
    """get_or_set's factory for this key raised moments ago (within its failure_ttl), in this process
    or another: raised instead of calling it again, so a failing backend is not hit by every waiter."""
