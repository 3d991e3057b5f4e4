"""Everything one service process holds, built from the settings, closed on shutdown.

Each uvicorn worker builds its own (its own pools and clients); nothing here is created at import.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import dataclass, field

import redis
from psycopg_pool import ConnectionPool, PoolTimeout
from redis.cluster import RedisCluster

from perflab.cache import (
    CacheManager,
    EmbeddingCache,
    Invalidator,
    SearchCache,
    SessionStore,
    check_not_cluster_node,
    make_redis,
)
from perflab.cdn import UrlMinter, UrlSigner
from perflab.config import Settings
from perflab.db import QueryOptimizer, VectorSearch, make_pool
from perflab.embed import BatchingEmbedder, Embedder, make_embedder
from perflab.images import ImagePipeline
from perflab.images.storage import LocalStorage
from perflab.servers import endpoints
from perflab.service.auth import SessionAuth
from perflab.service.embedding import CachedEmbedder
from perflab.service.history import SearchHistoryWriter
from perflab.service.library import LibraryGuard
from perflab.service.metrics import ServiceMetrics, Totals
from perflab.service.render import ResultRenderer
from perflab.service.search import SearchService
from perflab.service.secrets import load_secret
from perflab.service.upload import UploadService

_log = logging.getLogger(__name__)


@dataclass
class ServiceContext:
    settings: Settings
    redis: redis.Redis | RedisCluster
    cache: CacheManager
    pool: ConnectionPool
    queries: QueryOptimizer
    embedder: Embedder
    embedding_cache: EmbeddingCache
    search_cache: SearchCache
    sessions: SessionStore
    auth: SessionAuth
    history: SearchHistoryWriter
    search: SearchService
    uploads: UploadService
    storage: LocalStorage
    render: ResultRenderer  # public records (signed CDN URLs) of search results and uploads
    metrics: ServiceMetrics
    _pool_check: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @classmethod
    def build(cls, settings: Settings, *, embedder: Embedder | None = None) -> ServiceContext:
        ep = endpoints(settings)
        client = make_redis(settings, ep.redis_url)
        check_not_cluster_node(client, ep.redis_url)
        cache = CacheManager(client, prefix=settings.key_prefix, default_ttl=settings.cache_ttl_s)
        pool = make_pool(settings, ep.database_url, open=False, name="perflab-service")
        pool.open(wait=False)
        if embedder is None:
            embedder = make_embedder(settings)
            if settings.embed_batch_wait_ms > 0:
                embedder = BatchingEmbedder(embedder, max_wait_ms=settings.embed_batch_wait_ms)
        embedding_cache = EmbeddingCache(
            cache, model=embedder.model_name, dim=settings.embedding_dim, ttl=settings.embedding_ttl_s
        )
        search_cache = SearchCache(cache, ttl=settings.search_ttl_s)
        sessions = SessionStore(cache, ttl=settings.session_ttl_s, absolute_ttl=settings.session_absolute_s)
        auth = SessionAuth(
            sessions,
            pool,
            load_secret(settings, "session", settings.session_secret),
            absolute_ttl=settings.session_absolute_s,
        )
        history = SearchHistoryWriter(pool, popularity=search_cache)
        cached_embedder = CachedEmbedder(embedder, embedding_cache)
        guard = LibraryGuard(pool, cached_embedder.model_name)
        queries = QueryOptimizer(pool)
        search = SearchService(
            vectors=VectorSearch(pool, dim=settings.embedding_dim),
            embedder=cached_embedder,
            search_cache=search_cache,
            history=history,
            guard=guard,
        )
        storage = LocalStorage(settings.media_dir)
        uploads = UploadService(
            pool=pool,
            pipeline=ImagePipeline(),
            storage=storage,
            embedder=cached_embedder,
            search_cache=search_cache,
            invalidator=Invalidator(cache),
            guard=guard,
        )
        render = ResultRenderer(
            UrlMinter(
                settings.cdn_base_url, UrlSigner(load_secret(settings, "cdn", settings.cdn_signing_key))
            )
        )
        return cls(
            settings, client, cache, pool, queries, embedder, embedding_cache, search_cache, sessions, auth, history,
            search, uploads, storage, render, ServiceMetrics(),
        )  # fmt: skip

    def recheck_pool(self) -> None:
        """A pooled connection turned out dead (PostgreSQL restarted): test the idle ones now, in the
        background, so each stale connection is replaced rather than found by a failing request.
        One check at a time; psycopg_pool reconnects what it discards, with backoff."""
        if not self._pool_check.acquire(blocking=False):
            return

        def run() -> None:
            try:
                self.pool.check()
            except Exception as exc:  # the pool is closing, or the server is still down
                _log.info("pool check failed: %s", exc)
            finally:
                self._pool_check.release()

        threading.Thread(target=run, name="pool-check", daemon=True).start()

    def start(self) -> None:
        """Load and warm what the first request would otherwise wait for, then report ready."""
        self.history.start()
        self.warm()
        # What start-up built (the model, the imports) lives as long as the process: out of the
        # collector's sight, so a full collection under load scans only what requests allocate.
        gc.collect()
        gc.freeze()
        self.metrics.start_sync(self.totals)
        self.metrics.mark_ready()

    def warm(self) -> None:
        """The embedder (a model load of seconds, then its first, slower calls) and the pool's
        connections. A failure is logged, not fatal: cached searches need neither."""
        t0 = time.perf_counter()
        try:
            self.embedder.warm()
        except Exception as exc:
            _log.warning("embedder warm-up failed (%s): the first searches will load it", exc)
        try:
            self.pool.wait(timeout=10)
        except PoolTimeout as exc:
            _log.warning("database pool not filled at start: %s", exc)
        _log.info("worker warm in %.2fs", time.perf_counter() - t0)

    def totals(self) -> Totals:
        """This worker's in-memory counts, for the metrics summed over workers."""
        return {
            "perflab_cache_events": self.cache.counts(),
            "perflab_search_history": {"written": self.history.written, "dropped": self.history.dropped},
        }

    def close(self) -> None:
        self.metrics.mark_gone()
        self.history.close()
        self.pool.close()
        self.redis.close()
