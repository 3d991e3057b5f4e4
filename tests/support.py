"""Helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path

from perflab.config import Settings


def service_env(settings: Settings, media: Path, **extra: str) -> dict[str, str]:
    """Environment for a `perflab serve` child on `settings`' schema and key prefix (hashing embedder)."""
    return {
        "PERFLAB_HOME": str(settings.home),
        "PERFLAB_DB_SCHEMA": settings.db_schema,
        "PERFLAB_KEY_PREFIX": settings.key_prefix,
        "PERFLAB_EMBEDDER": "hashing",
        "PERFLAB_MEDIA_ROOT": str(media),
        **extra,
    }
