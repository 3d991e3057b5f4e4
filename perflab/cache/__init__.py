"""Redis caches for the search service: a fail-open cache manager, embedding and search-result caches,
sessions, and pub/sub invalidation. Build them from a client made by `make_redis`; nothing connects at
import time.
"""

from perflab.cache.breaker import CircuitBreaker, ShardBreakers
from perflab.cache.client import ShardedCluster, check_not_cluster_node, make_redis
from perflab.cache.embedding import EmbeddingCache
from perflab.cache.errors import (
    CacheError,
    CacheKeyError,
    CacheUnavailable,
    CacheValueError,
    SessionNotFound,
)
from perflab.cache.invalidation import Invalidator, Subscription
from perflab.cache.keys import UserId, user_tag
from perflab.cache.manager import CacheManager
from perflab.cache.search import CachedSearch, SearchCache, canonical_filters, normalize_query
from perflab.cache.session import Session, SessionStore
from perflab.cache.stats import CacheStats, LatencySummary

__all__ = [
    "CacheError",
    "CacheKeyError",
    "CacheManager",
    "CacheStats",
    "CacheUnavailable",
    "CacheValueError",
    "CachedSearch",
    "CircuitBreaker",
    "EmbeddingCache",
    "Invalidator",
    "LatencySummary",
    "SearchCache",
    "Session",
    "SessionNotFound",
    "SessionStore",
    "ShardBreakers",
    "ShardedCluster",
    "Subscription",
    "UserId",
    "canonical_filters",
    "check_not_cluster_node",
    "make_redis",
    "normalize_query",
    "user_tag",
]
