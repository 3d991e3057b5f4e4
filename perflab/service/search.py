"""The search path: search cache → embedding cache → embedder → vector search → hydrate → cache.

Every stage is timed. Redis stages fail open (a miss), so with Redis down a search still answers from
PostgreSQL. Cached results hold storage keys, never URLs: signed URLs are minted per response, so a
cached entry never outlives the URLs in it.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg_pool import ConnectionPool

from perflab.cache import EmbeddingCache, SearchCache, normalize_query
from perflab.db.vector import Hit, SearchFilters, VectorSearch
from perflab.embed import Embedder
from perflab.service.history import HistoryEntry, SearchHistoryWriter
from perflab.timing import StageTimer

MAX_QUERY_CHARS = 512
# C0/C1 control characters left after normalization (which turns tabs and newlines into spaces): no
# real query holds them, and PostgreSQL text cannot hold NUL (the search history would refuse them).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


# Lab-only knob (`perflab selftest`): every search sleeps this many ms when set. Off by default.
LAB_EXTRA_DELAY_ENV = "PERFLAB_LAB_EXTRA_DELAY_MS"


class InvalidSearch(ValueError):
    """A malformed search request (the API answers 422 with this message)."""


@dataclass(frozen=True)
class SearchRequest:
    user_id: str
    query: str
    k: int = 20
    media_type: str | None = None
    date_from: datetime | None = None
    date_to: datetime | None = None

    def normalized(self) -> str:
        q = normalize_query(self.query)
        if not q:
            raise InvalidSearch("query is empty")
        if len(q) > MAX_QUERY_CHARS:
            raise InvalidSearch(f"query is longer than {MAX_QUERY_CHARS} characters")
        if _CONTROL.search(q):
            raise InvalidSearch("query contains control characters")
        return q

    def filters(self) -> SearchFilters:
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise InvalidSearch("'from' is after 'to'")
        return SearchFilters(media_type=self.media_type, date_from=self.date_from, date_to=self.date_to)

    def cache_filters(self) -> dict[str, Any]:
        """What, besides the query, makes two searches the same: the canonical part of the cache key."""
        return {
            "k": self.k,
            "type": self.media_type,
            "from": self.date_from.isoformat() if self.date_from else None,
            "to": self.date_to.isoformat() if self.date_to else None,
        }


@dataclass
class SearchOutcome:
    results: list[dict[str, Any]]
    cache_hit: bool
    timings_ms: dict[str, float]
    total_ms: float
    timer: StageTimer = field(repr=False)


def hit_record(hit: Hit, derivatives: list[dict[str, Any]]) -> dict[str, Any]:
    """A result as cached and returned (JSON-ready; URLs are added per response)."""
    return {
        "id": str(hit.media_id),
        "filename": hit.filename,
        "caption": hit.caption,
        "media_type": hit.media_type,
        "mime_type": hit.mime_type,
        "uploaded_at": hit.uploaded_at.isoformat(),
        "width": hit.width,
        "height": hit.height,
        "file_size_bytes": hit.file_size_bytes,
        "tags": list(hit.tags or ()),
        "blurhash": hit.blurhash,
        "dominant_colors": hit.dominant_colors,
        "similarity": round(float(hit.similarity), 6),
        "distance": round(float(hit.distance), 6),
        "storage_key": hit.storage_key,
        "derivatives": derivatives,
    }


class SearchService:
    def __init__(
        self,
        *,
        pool: ConnectionPool,
        vectors: VectorSearch,
        embedder: Embedder,
        embedding_cache: EmbeddingCache,
        search_cache: SearchCache,
        history: SearchHistoryWriter | None = None,
    ) -> None:
        self.pool = pool
        self.vectors = vectors
        self.embedder = embedder
        self.embedding_cache = embedding_cache
        self.search_cache = search_cache
        self.history = history
        self.lab_delay_s = float(os.environ.get(LAB_EXTRA_DELAY_ENV) or 0) / 1000.0

    def embed_query(self, text: str, timer: StageTimer) -> Any:
        with timer.stage("embedding_cache"):
            vec = self.embedding_cache.get(text)
        if vec is None:
            with timer.stage("embed"):
                vec = self.embedder.embed([text])[0]
            with timer.stage("embedding_cache"):
                self.embedding_cache.set(text, vec)
        return vec

    def hydrate(self, user_id: str, hits: list[Hit]) -> list[dict[str, Any]]:
        """Batch-load what the vector query does not carry (stored renditions), in one round trip."""
        if not hits:
            return []
        ids = [h.media_id for h in hits]
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT id, derivatives FROM media_files WHERE id = ANY(%s) AND user_id = %s",
                (ids, uuid.UUID(str(user_id))),
                prepare=True,
            ).fetchall()
        derivatives = {r[0]: r[1] for r in rows}
        return [hit_record(h, derivatives.get(h.media_id) or []) for h in hits]

    def search(self, request: SearchRequest) -> SearchOutcome:
        timer = StageTimer()
        query = request.normalized()
        filters = request.filters()
        key_filters = request.cache_filters()
        with timer.stage("search_cache"):
            cached = self.search_cache.lookup(request.user_id, query, key_filters)
        if self.lab_delay_s > 0:
            with timer.stage("lab_extra_delay"):
                time.sleep(self.lab_delay_s)
        if cached.results is not None:
            results, hit = cached.results, True
        else:
            hit = False
            vec = self.embed_query(query, timer)
            with timer.stage("vector_search"):
                hits = self.vectors.search(request.user_id, vec, request.k, filters)
            with timer.stage("hydrate"):
                results = self.hydrate(request.user_id, hits)
            with timer.stage("cache_store"):
                self.search_cache.set(
                    request.user_id, query, key_filters, results, generation=cached.generation
                )
        total = timer.total_ms()
        if self.history is not None:
            self.history.record(
                HistoryEntry(request.user_id, query, key_filters, len(results), round(total, 3), hit)
            )
        return SearchOutcome(results, hit, timer.as_dict(), total, timer)
