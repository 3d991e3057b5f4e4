"""Typed errors of the image pipeline and media storage.

Every rejection names what was wrong with the input and the limit it broke, so an upload API can return
it to the user as is; none of them leaves a partial output behind.
"""

from __future__ import annotations

from typing import Any

from perflab.errors import PerflabError


def _rebuild(cls: type[Exception], message: str, state: dict[str, Any]) -> Exception:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class _Picklable(PerflabError):
    """Errors cross process boundaries (batch mode="processes"): pickle them by message and fields,
    since their constructors take fields rather than the message."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), str(self), dict(self.__dict__)))


class ImageError(_Picklable):
    """Base of every error the image pipeline raises on purpose."""


class EmptyFile(ImageError):
    """The upload has zero bytes."""

    def __init__(self) -> None:
        super().__init__("the file is empty (0 bytes)")


class TooLarge(ImageError):
    """The file is bigger than the byte cap; it was rejected before any decoding."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"the file is {size:,} bytes, over the limit of {limit:,} bytes")


class DecompressionBomb(ImageError):
    """The header declares more pixels than the cap: decoding it would exhaust memory."""

    def __init__(self, pixels: int, limit: int, size: tuple[int, int] | None = None) -> None:
        self.pixels = pixels
        self.limit = limit
        self.size = size
        dims = f"{size[0]}x{size[1]} = " if size else ""
        super().__init__(
            f"the image declares {dims}{pixels:,} pixels, over the limit of {limit:,} pixels "
            "(decompression bomb); it was not decoded"
        )


class UnsupportedFormat(ImageError):
    """The content is not an image, or is an image format this service does not accept."""

    def __init__(self, detected: str | None, allowed: frozenset[str]) -> None:
        self.detected = detected
        self.allowed = allowed
        what = f"a {detected} file" if detected else "not a recognised image"
        super().__init__(f"the content is {what}; accepted formats are {', '.join(sorted(allowed))}")


class CorruptImage(ImageError):
    """The content starts like an allowed image but cannot be decoded (truncated, damaged)."""

    def __init__(self, format_: str, reason: str) -> None:
        self.format = format_
        self.reason = reason
        super().__init__(f"the {format_} image is corrupt or truncated ({reason})")


class ProcessingFailed(ImageError):
    """An unexpected failure while processing one item of a batch (a bug or resource exhaustion);
    reported for that item so the rest of the batch goes on."""

    def __init__(self, kind: str, reason: str) -> None:
        self.kind = kind
        self.reason = reason
        super().__init__(f"processing failed unexpectedly ({kind}: {reason})")


class UnreadableFile(ImageError):
    """The source file could not be read (missing, a directory, no permission)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        super().__init__(f"cannot read {path}: {reason}")


class StorageError(_Picklable):
    """A media object could not be written or read."""


class InvalidKey(StorageError):
    """An object key that could escape the storage root or is not a plain relative path."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        super().__init__(f"invalid object key {key!r}: {reason}")


class ObjectNotFound(StorageError):
    """No object is stored under this key."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"no object stored under key {key!r}")
