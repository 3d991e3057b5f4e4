"""The search path: search cache → embedding cache → embedder → vector search → records → cache.

Every stage is timed. Redis stages fail open (a miss), so with Redis down a search still answers from
PostgreSQL. Cached results hold storage keys, never URLs: signed URLs are minted per response, so a
cached entry never outlives the URLs in it.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from perflab.cache import CachedSearch, SearchCache, normalize_query
from perflab.db import MEDIA_TYPES, Hit, SearchFilters, VectorSearch
from perflab.db.history import HistoryEntry
from perflab.service.embedding import CachedEmbedder
from perflab.service.errors import InvalidSearch
from perflab.service.history import SearchHistoryWriter
from perflab.service.library import LibraryGuard
from perflab.timing import StageTimer

MAX_QUERY_CHARS = 512
MAX_K = 100
DEFAULT_K = 20
# C0/C1 control characters left after normalization (which turns tabs and newlines into spaces): no
# real query holds them, and PostgreSQL text cannot hold NUL (the search history would refuse them).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


# Lab-only knob (`perflab selftest`): every search busy-waits this many ms when set. Off by default.
LAB_EXTRA_DELAY_ENV = "PERFLAB_LAB_EXTRA_DELAY_MS"


def filter_key(k: int, filters: SearchFilters) -> dict[str, Any]:
    """What, besides the query, makes two searches the same: the canonical part of the cache key,
    read from the very filters the database is given."""
    return {
        "k": k,
        "type": filters.media_type,
        "from": filters.date_from.isoformat() if filters.date_from else None,
        "to": filters.date_to.isoformat() if filters.date_to else None,
    }


@dataclass(frozen=True)
class SearchRequest:
    """One search, validated whole at construction (the API's only query validation): an invalid
    request raises InvalidSearch, a valid one carries its normalized text and its filters."""

    user_id: str
    query: str
    k: int = DEFAULT_K
    media_type: str | None = None
    date_from: datetime | None = None
    date_to: datetime | None = None
    text: str = field(init=False, repr=False, compare=False)
    filters: SearchFilters = field(init=False, repr=False, compare=False)
    _key_filters: dict[str, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.query) > MAX_QUERY_CHARS:
            raise InvalidSearch(f"query is longer than {MAX_QUERY_CHARS} characters")
        text = normalize_query(self.query)
        if not text:
            raise InvalidSearch("query is empty")
        if len(text) > MAX_QUERY_CHARS:
            raise InvalidSearch(f"query is longer than {MAX_QUERY_CHARS} characters")
        if _CONTROL.search(text):
            raise InvalidSearch("query contains control characters")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not 1 <= self.k <= MAX_K:
            raise InvalidSearch(f"k must be an integer from 1 to {MAX_K}")
        if self.media_type is not None and self.media_type not in MEDIA_TYPES:
            raise InvalidSearch(f"type must be one of {', '.join(MEDIA_TYPES)}")
        for value, name in ((self.date_from, "from"), (self.date_to, "to")):
            if value is not None and value.tzinfo is None:
                raise InvalidSearch(f"'{name}' needs a time zone, e.g. 2024-01-01T00:00:00Z")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise InvalidSearch("'from' is after 'to'")
        object.__setattr__(self, "text", text)
        filters = SearchFilters(media_type=self.media_type, date_from=self.date_from, date_to=self.date_to)
        object.__setattr__(self, "filters", filters)
        object.__setattr__(self, "_key_filters", filter_key(self.k, filters))

    def cache_filters(self) -> dict[str, Any]:
        """The filter part of the cache key, built once (the cache key, the store and the history
        all read it): do not mutate it."""
        return self._key_filters


@dataclass
class SearchOutcome:
    results: list[dict[str, Any]] | None  # None: a remembered hit (the caller holds its rendering)
    count: int
    cache_hit: bool
    timings_ms: dict[str, float]
    total_ms: float
    timer: StageTimer = field(repr=False)


def hit_record(hit: Hit, derivatives: list[dict[str, Any]]) -> dict[str, Any]:
    """A result as cached and returned (JSON-ready; URLs are added per response). Of each derivative
    only what its URLs need (name, width, key): the cached entry a warm search parses stays small."""
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
        "derivatives": [
            {"name": d.get("name"), "width": d.get("width"), "key": d.get("key")} for d in derivatives
        ],
    }


def _spin(seconds: float) -> None:
    """The lab knob's delay: a busy wait, so it costs exactly `seconds` of CPU on the thread already
    serving the request, like a real CPU regression. A sleep would round up to the event loop's
    millisecond timer or need a thread hop, and so add more than the knob says."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class SearchService:
    def __init__(
        self,
        *,
        vectors: VectorSearch,
        embedder: CachedEmbedder,
        search_cache: SearchCache,
        history: SearchHistoryWriter | None = None,
        guard: LibraryGuard | None = None,
    ) -> None:
        self.guard = guard
        self.vectors = vectors
        self.embedder = embedder
        self.search_cache = search_cache
        self.history = history
        self.lab_delay_s = float(os.environ.get(LAB_EXTRA_DELAY_ENV) or 0) / 1000.0

    @staticmethod
    def hydrate(hits: list[Hit]) -> list[dict[str, Any]]:
        """The hits as cached records. Their renditions came with the vector query: this was a second
        round trip to PostgreSQL on every cold search until 2026-12-03; the stage keeps its name."""
        return [hit_record(h, h.derivatives) for h in hits]

    def search(
        self, request: SearchRequest, cached: CachedSearch | None = None, timer: StageTimer | None = None
    ) -> SearchOutcome:
        """The whole path; `cached` is a lookup the caller already made (the API reads it in the same
        round trip as the session). A hit does no blocking work, so the API answers it on the event
        loop; a miss embeds and queries PostgreSQL, so the API runs it in a worker thread."""
        timer = timer if timer is not None else StageTimer()
        query = request.text
        key_filters = request.cache_filters()
        if cached is None:
            with timer.stage("search_cache"):
                cached = self.search_cache.lookup(request.user_id, query, key_filters)
        self._delay(timer)
        if cached.results is not None:
            results, hit = cached.results, True
        else:
            hit = False
            if self.guard is not None:
                self.guard.check(request.user_id)
            vec = self.embedder.embed(query, timer)
            with timer.stage("vector_search"):
                hits = self.vectors.search(request.user_id, vec, request.k, request.filters)
            with timer.stage("hydrate"):
                results = self.hydrate(hits)
            with timer.stage("cache_store"):
                self.search_cache.set(
                    request.user_id, query, key_filters, results, generation=cached.generation
                )
        return self._finish(request, results, len(results), hit, timer)

    def remembered(self, request: SearchRequest, count: int, timer: StageTimer) -> SearchOutcome:
        """A hit the caller answers from what it remembers of the entry (perflab.service.render):
        the same lab knob and history as any hit, with no results to hand back."""
        self._delay(timer)
        return self._finish(request, None, count, True, timer)

    def _delay(self, timer: StageTimer) -> None:
        if self.lab_delay_s > 0:
            with timer.stage("lab_extra_delay"):
                _spin(self.lab_delay_s)

    def _finish(
        self,
        request: SearchRequest,
        results: list[dict[str, Any]] | None,
        count: int,
        hit: bool,
        timer: StageTimer,
    ) -> SearchOutcome:
        total = timer.total_ms()
        if self.history is not None:
            filters = request.cache_filters()
            entry = HistoryEntry(request.user_id, request.text, filters, count, round(total, 3), hit)
            self.history.record(entry)
        return SearchOutcome(results, count, hit, timer.as_dict(), total, timer)
