"""Everything one service process holds, built from the settings, closed on shutdown.

Each uvicorn worker builds its own (its own pools and clients); nothing here is created at import.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
from psycopg_pool import ConnectionPool

from perflab.cache import (
    CacheManager,
    EmbeddingCache,
    Invalidator,
    SearchCache,
    SessionStore,
    make_redis,
)
from perflab.cdn import UrlSigner
from perflab.config import Settings
from perflab.db import VectorSearch, make_pool
from perflab.embed import Embedder, make_embedder
from perflab.images import ImagePipeline
from perflab.images.storage import LocalStorage
from perflab.service.auth import SessionAuth
from perflab.service.history import SearchHistoryWriter
from perflab.service.metrics import ServiceMetrics
from perflab.service.search import SearchService
from perflab.service.secrets import load_secret
from perflab.service.upload import UploadService
from perflab.services import endpoints


@dataclass
class ServiceContext:
    settings: Settings
    redis: redis.Redis
    cache: CacheManager
    pool: ConnectionPool
    embedder: Embedder
    embedding_cache: EmbeddingCache
    search_cache: SearchCache
    sessions: SessionStore
    auth: SessionAuth
    history: SearchHistoryWriter
    search: SearchService
    uploads: UploadService
    storage: LocalStorage
    signer: UrlSigner
    metrics: ServiceMetrics

    @classmethod
    def build(cls, settings: Settings, *, embedder: Embedder | None = None) -> ServiceContext:
        ep = endpoints(settings)
        client = make_redis(settings, ep.redis_url)
        cache = CacheManager(client, prefix=settings.key_prefix, default_ttl=settings.cache_ttl_s)
        pool = make_pool(settings, ep.database_url, open=False, name="perflab-service")
        pool.open(wait=False)
        embedder = embedder or make_embedder(settings)
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
        history = SearchHistoryWriter(pool)
        search = SearchService(
            pool=pool,
            vectors=VectorSearch(pool, dim=settings.embedding_dim),
            embedder=embedder,
            embedding_cache=embedding_cache,
            search_cache=search_cache,
            history=history,
        )
        storage = LocalStorage(settings.media_dir)
        uploads = UploadService(
            pool=pool,
            pipeline=ImagePipeline(),
            storage=storage,
            search=search,
            search_cache=search_cache,
            invalidator=Invalidator(cache),
        )
        signer = UrlSigner(load_secret(settings, "cdn", settings.cdn_signing_key))
        return cls(
            settings, client, cache, pool, embedder, embedding_cache, search_cache, sessions, auth, history,
            search, uploads, storage, signer, ServiceMetrics(),
        )  # fmt: skip

    def start(self) -> None:
        self.history.start()

    def close(self) -> None:
        self.history.close()
        self.pool.close()
        self.redis.close()
