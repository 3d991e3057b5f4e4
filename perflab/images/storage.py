"""Where derivatives live: a `Storage` protocol (an S3-compatible store can fill it) and a local one.

Writes are atomic: the bytes go to a hidden temp file in the target directory, are fsynced, then
renamed over the key, so a reader (the origin, nginx) sees the old object or the new one, never half.
Keys are plain relative paths of safe characters; nothing outside the root can be named, and hidden
names (the temp files) cannot be read through a key.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from perflab.images.errors import InvalidKey, ObjectNotFound, StorageError
from perflab.images.formats import content_type_for_extension
from perflab.images.keys import object_key
from perflab.images.pipeline import Derivative, ProcessedImage

_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,254}")
MAX_KEY_LENGTH = 1024


@runtime_checkable
class Storage(Protocol):
    """An object store for media. `put` must be atomic: readers never see a partial object."""

    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    def get(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...


def validate_key(key: str) -> str:
    """Return `key` if it is a safe relative object key, else raise InvalidKey."""
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidKey(key[:80], f"length must be 1..{MAX_KEY_LENGTH}")
    for segment in key.split("/"):
        if not _SEGMENT.fullmatch(segment):
            raise InvalidKey(
                key, f"segment {segment!r} is empty, hidden, or has characters outside [A-Za-z0-9._-]"
            )
        if segment in (".", ".."):  # pragma: no cover - the pattern already refuses a leading dot
            raise InvalidKey(key, "dot segments are not allowed")
    return key


def content_type_for_key(key: str) -> str:
    """The MIME type an object is served with, from its key's extension."""
    name = key.rsplit("/", 1)[-1]
    return content_type_for_extension(name.rsplit(".", 1)[-1]) if "." in name else "application/octet-stream"


class LocalStorage:
    """Objects as files under `root` (created on first write)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def path(self, key: str) -> Path:
        """The file that holds `key` (validated, always inside root)."""
        return self.root / validate_key(key)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        target = self.path(key)
        expected = content_type_for_key(key)
        if content_type.split(";")[0].strip().lower() != expected.split(";")[0]:
            raise StorageError(
                f"content type {content_type!r} does not match key {key!r} (served as {expected})"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        _fsync_dir(target.parent)

    def get(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ObjectNotFound(key) from exc

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX: the directory entry lives in the directory's data)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def derivative_record(d: Derivative, key: str) -> dict[str, Any]:
    """What `media_files.derivatives` stores of one rendition: the URLs of a search result (and the
    seeded libraries' records, perflab.db.seed) are minted from these."""
    return {
        "name": d.name,
        "width": d.width,
        "height": d.height,
        "format": d.format,
        "key": key,
        "bytes": len(d.data),
    }


def store_processed(storage: Storage, processed: ProcessedImage, *, prefix: str = "") -> dict[str, str]:
    """Store every derivative under its content-hashed key; returns name -> key. A key that already
    exists holds the same bytes (the key is their hash), so it is not written again."""
    keys: dict[str, str] = {}
    for d in processed.derivatives:
        key = prefix + object_key(d.data, d.name, d.extension)
        if not storage.exists(key):
            storage.put(key, d.data, d.mime_type)
        keys[d.name] = key
    return keys
