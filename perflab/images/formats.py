"""The image formats the lab knows: what they are called, their file extension and MIME type.

One table, so the encoder, the storage and the origin agree on what `.avif` is served as.
"""

from __future__ import annotations

from typing import Literal

OutputFormat = Literal["jpeg", "webp", "avif"]

OUTPUT_FORMATS: tuple[OutputFormat, ...] = ("jpeg", "webp", "avif")

# format name -> (file extension, MIME type, Pillow plugin name)
_FORMATS: dict[str, tuple[str, str, str]] = {
    "jpeg": ("jpg", "image/jpeg", "JPEG"),
    "png": ("png", "image/png", "PNG"),
    "gif": ("gif", "image/gif", "GIF"),
    "webp": ("webp", "image/webp", "WEBP"),
    "avif": ("avif", "image/avif", "AVIF"),
}

_EXTRA_EXTENSIONS = {"jpeg": "image/jpeg", "json": "application/json", "txt": "text/plain; charset=utf-8"}


def extension(fmt: str) -> str:
    """File extension (no dot) for a format name: `jpeg` -> `jpg`."""
    return _FORMATS[fmt][0]


def mime_type(fmt: str) -> str:
    return _FORMATS[fmt][1]


def pillow_name(fmt: str) -> str:
    return _FORMATS[fmt][2]


def content_type_for_extension(ext: str) -> str:
    """MIME type for a stored object's extension; `application/octet-stream` when unknown."""
    ext = ext.lower().lstrip(".")
    for file_ext, mime, _ in _FORMATS.values():
        if ext == file_ext:
            return mime
    return _EXTRA_EXTENSIONS.get(ext, "application/octet-stream")
