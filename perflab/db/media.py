"""Writing media: one media_files row plus its primary media_embeddings row, atomically.

media_embeddings repeats user_id, media_type, status and uploaded_at so the filtered vector search
reads one table; this module (and bulk.py) copy them on insert, and migration 0002's trigger keeps
them in step when media_files changes later.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from perflab.db._validate import MEDIA_TYPES, STATUSES, as_uuid, as_vector, check_aware, check_choice
from perflab.db.errors import InvalidInput
from perflab.db.pool import PoolOrConn, borrow


@dataclass(frozen=True)
class NewMedia:
    """The columns of a media_files row a writer chooses; the rest take their defaults."""

    filename: str
    caption: str | None = None
    media_type: str = "image"
    mime_type: str = "image/jpeg"
    file_size_bytes: int = 0
    width: int | None = None
    height: int | None = None
    status: str = "completed"
    tags: tuple[str, ...] = ()
    storage_key: str | None = None
    original_filename: str | None = None
    dominant_colors: Any = None
    blurhash: str | None = None
    derivatives: list[dict[str, Any]] = field(default_factory=list)  # stored renditions (name, key, ...)
    uploaded_at: datetime | None = None  # None: the database's now()
    processed_at: datetime | None = None
    id: uuid.UUID | None = field(default=None)  # None: a fresh uuid4

    def validate(self) -> None:
        if not self.filename or len(self.filename) > 1024:
            raise InvalidInput("filename must be 1..1024 characters")
        check_choice(self.media_type, MEDIA_TYPES, "media_type")
        check_choice(self.status, STATUSES, "status")
        check_aware(self.uploaded_at, "uploaded_at")
        check_aware(self.processed_at, "processed_at")
        if self.file_size_bytes < 0:
            raise InvalidInput("file_size_bytes must be >= 0")


_INSERT = """
WITH m AS (
    INSERT INTO media_files (id, user_id, filename, original_filename, mime_type, media_type,
        file_size_bytes, width, height, status, caption, tags, storage_key, dominant_colors, blurhash,
        derivatives, uploaded_at, processed_at)
    VALUES (%(id)s, %(user_id)s, %(filename)s, %(original_filename)s, %(mime_type)s, %(media_type)s,
        %(file_size_bytes)s, %(width)s, %(height)s, %(status)s, %(caption)s, %(tags)s, %(storage_key)s,
        %(dominant_colors)s, %(blurhash)s, %(derivatives)s, coalesce(%(uploaded_at)s, now()), %(processed_at)s)
    RETURNING id, user_id, media_type, status, uploaded_at
)
INSERT INTO media_embeddings (media_file_id, user_id, media_type, status, uploaded_at, embedding,
    embedding_model, is_primary)
SELECT id, user_id, media_type, status, uploaded_at, %(embedding)s, %(model)s, true FROM m
RETURNING media_file_id
"""


def insert_media(
    source: PoolOrConn,
    user_id: uuid.UUID | str,
    media: NewMedia,
    embedding: np.ndarray | Sequence[float],
    *,
    model_name: str,
) -> uuid.UUID:
    """Insert `media` for `user_id` with its primary embedding in one statement and transaction;
    return the new media id. An unknown user or bad field is InvalidInput and nothing is written."""
    uid = as_uuid(user_id, "user_id")
    media.validate()
    vector = as_vector(embedding)
    params = {
        "id": media.id or uuid.uuid4(),
        "user_id": uid,
        "filename": media.filename,
        "original_filename": media.original_filename,
        "mime_type": media.mime_type,
        "media_type": media.media_type,
        "file_size_bytes": media.file_size_bytes,
        "width": media.width,
        "height": media.height,
        "status": media.status,
        "caption": media.caption,
        "tags": list(media.tags),
        "storage_key": media.storage_key,
        "dominant_colors": None if media.dominant_colors is None else Jsonb(media.dominant_colors),
        "blurhash": media.blurhash,
        "derivatives": Jsonb(list(media.derivatives)),
        "uploaded_at": media.uploaded_at,
        "processed_at": media.processed_at,
        "embedding": vector,
        "model": model_name,
    }
    with borrow(source) as conn:
        try:
            with conn.transaction():
                row = conn.execute(_INSERT, params, prepare=True).fetchone()
        except psycopg.errors.ForeignKeyViolation as exc:
            raise InvalidInput(f"user {uid} does not exist") from exc
        except psycopg.errors.UniqueViolation as exc:
            raise InvalidInput(f"media id {params['id']} already exists") from exc
        except psycopg.errors.DataException as exc:
            raise InvalidInput(f"rejected by the database: {exc.diag.message_primary}") from exc
    assert row is not None
    media_id: uuid.UUID = row[0]
    return media_id


def count_media(source: PoolOrConn, ids: Sequence[uuid.UUID | str] | None = None) -> int:
    """How many media rows there are (of `ids` only, when given): a durability or no-write check."""
    wanted = None if ids is None else [as_uuid(i, "media id") for i in ids]
    with borrow(source) as conn:
        if wanted is None:
            row = conn.execute("SELECT count(*) FROM media_files").fetchone()
        else:
            row = conn.execute("SELECT count(*) FROM media_files WHERE id = ANY(%s)", (wanted,)).fetchone()
    return int(row[0]) if row else 0


def count_user_media(source: PoolOrConn, email: str) -> int:
    """How many media rows the user with this email owns (0 for no such user)."""
    with borrow(source) as conn:
        row = conn.execute(
            "SELECT count(*) FROM media_files m JOIN users u ON u.id = m.user_id WHERE u.email = %s", (email,)
        ).fetchone()
    return int(row[0]) if row else 0
