"""The upload path: image pipeline → storage → rows + caption embedding → invalidate → publish.

The database commit is the acknowledgement: a 201 means the row is durable. Renditions are written
first under content-hashed keys (idempotent; a failed insert leaves only unreferenced blobs, never a
row without its files). When Redis cannot take the invalidation, it is retried in the background
until it lands, so a user never keeps seeing results from before their upload once Redis is back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from psycopg_pool import ConnectionPool

from perflab.cache import Invalidator, SearchCache
from perflab.db import NewMedia, insert_media
from perflab.images import ImagePipeline
from perflab.images.storage import Storage, derivative_record, store_processed
from perflab.service.embedding import CachedEmbedder
from perflab.service.errors import InvalidUpload
from perflab.service.library import LibraryGuard
from perflab.service.retry import RetryQueue
from perflab.timing import StageTimer

_log = logging.getLogger(__name__)
MAX_CAPTION_CHARS = 2000
MAX_TAGS = 50


@dataclass
class UploadResult:
    media_id: str
    derivatives: list[dict[str, Any]]
    width: int
    height: int
    blurhash: str
    dominant_colors: list[tuple[str, float]]
    timings_ms: dict[str, float]


class UploadService:
    def __init__(
        self,
        *,
        pool: ConnectionPool,
        pipeline: ImagePipeline,
        storage: Storage,
        embedder: CachedEmbedder,
        search_cache: SearchCache,
        invalidator: Invalidator,
        guard: LibraryGuard | None = None,
    ) -> None:
        self.pool = pool
        self.guard = guard
        self.pipeline = pipeline
        self.storage = storage
        self.embedder = embedder
        self.search_cache = search_cache
        self.invalidator = invalidator
        self.pending: RetryQueue[str] = RetryQueue(search_cache.invalidate_user, name="invalidation-retry")

    def upload(
        self,
        user_id: str,
        data: bytes,
        *,
        filename: str,
        caption: str | None = None,
        tags: list[str] | None = None,
    ) -> UploadResult:
        tags = [t.strip() for t in (tags or []) if t.strip()]
        if caption is not None and len(caption) > MAX_CAPTION_CHARS:
            raise InvalidUpload(f"caption is longer than {MAX_CAPTION_CHARS} characters")
        if len(tags) > MAX_TAGS or any(len(t) > 64 for t in tags):
            raise InvalidUpload(f"at most {MAX_TAGS} tags of at most 64 characters")
        for name, value in (("caption", caption or ""), ("tags", "".join(tags)), ("file name", filename)):
            if "\x00" in value:  # PostgreSQL text cannot hold NUL: refuse it here, not as a 500
                raise InvalidUpload(f"the {name} contains a NUL character")
        if self.guard is not None:  # before any work: a vector of another model would poison the library
            self.guard.check(user_id)
        timer = StageTimer()
        with timer.stage("pipeline"):
            image = self.pipeline.process(data, filename=filename)
        with timer.stage("storage"):
            keys = store_processed(self.storage, image)
        records = [derivative_record(d, keys[d.name]) for d in image.derivatives]
        text = (
            (caption or "").strip()
            or " ".join(tags)
            or PurePath(filename).stem.replace("_", " ").replace("-", " ")
        )
        vec = self.embedder.embed(text or "image", timer)
        media = NewMedia(
            filename=PurePath(filename).name[:255] or "upload",
            original_filename=filename[:1024],
            caption=caption,
            mime_type=image.master.mime_type,
            file_size_bytes=len(data),
            width=image.width,
            height=image.height,
            tags=tuple(tags),
            storage_key=keys[image.master.name],
            dominant_colors=[{"hex": h, "share": s} for h, s in image.dominant_colors],
            blurhash=image.blurhash,
            derivatives=records,
            status="completed",
        )
        with timer.stage("database"):
            media_id = insert_media(self.pool, user_id, media, vec, model_name=self.embedder.model_name)
        with timer.stage("invalidate"):
            if not self.search_cache.invalidate_user(user_id):
                self.pending.add(user_id)
            self.invalidator.publish_invalidation(user_id)
        return UploadResult(
            str(media_id),
            records,
            image.width,
            image.height,
            image.blurhash,
            image.dominant_colors,
            timer.as_dict(),
        )


def parse_tags(raw: str | None) -> list[str]:
    return [t for t in (raw or "").split(",") if t.strip()]
