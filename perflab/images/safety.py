"""Checks that run before any pixel is decoded: byte cap, content sniffing, allowed formats, pixel cap.

The format comes from the content's magic bytes, never from the file name, and Pillow is then told to
try only that one plugin, so a TIFF or PSD renamed to `.jpg` never reaches a decoder we did not choose.
"""

from __future__ import annotations

import io
import re
import struct
import zlib
from dataclasses import dataclass, field

from PIL import Image, UnidentifiedImageError

from perflab.errors import ConfigError
from perflab.images.errors import CorruptImage, DecompressionBomb, EmptyFile, TooLarge, UnsupportedFormat
from perflab.images.formats import pillow_name

DEFAULT_ALLOWED = frozenset({"jpeg", "png", "gif", "webp", "avif"})
# How the formats are named to people, in the order they are listed (TIFF, HEIF, BMP, PSD, ... are
# sniffed only to be refused by name).
_DISPLAY = {"jpeg": "JPEG", "png": "PNG", "webp": "WebP", "gif": "GIF", "avif": "AVIF"}


def describe_formats(allowed: frozenset[str] = DEFAULT_ALLOWED) -> str:
    """`"JPEG, PNG, WebP, GIF or AVIF"`: the accepted formats as an API schema or a message states them."""
    names = [_DISPLAY[f] for f in _DISPLAY if f in allowed]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


# Exceptions Pillow's plugins raise on malformed input (struct.error and zlib.error from header parsing,
# SyntaxError from some plugins' header checks, EOFError on short reads).
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    IndexError,
    struct.error,
    zlib.error,
    UnidentifiedImageError,
)


@dataclass(frozen=True)
class SafetyLimits:
    """Caps applied to every upload. The defaults admit any phone or DSLR photo (50 MB, 80 MP, under
    Pillow's own warning threshold of 89 MP)."""

    max_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 80_000_000
    allowed_formats: frozenset[str] = field(default_factory=lambda: DEFAULT_ALLOWED)

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.max_pixels <= 0:
            raise ConfigError("SafetyLimits: max_bytes and max_pixels must be positive")
        unknown = set(self.allowed_formats) - DEFAULT_ALLOWED
        if unknown:
            raise ConfigError(f"SafetyLimits: no decoder is wired for {', '.join(sorted(unknown))}")


def _is_iso_bmff(data: bytes, brands: tuple[bytes, ...]) -> bool:
    """ISO base media file (AVIF/HEIF): `ftyp` box whose major or compatible brands include one of ours."""
    if len(data) < 16 or data[4:8] != b"ftyp":
        return False
    size = int.from_bytes(data[0:4], "big")
    box = data[8 : min(max(size, 16), 4096)]
    return any(box[i : i + 4] in brands for i in range(0, len(box) - 3, 4))


def sniff_format(data: bytes) -> str | None:
    """Name the format from the first bytes (`jpeg`, `png`, ..., also formats we refuse), or None."""
    head = data[:64]
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if _is_iso_bmff(data, (b"avif", b"avis")):
        return "avif"
    if _is_iso_bmff(data, (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1")):
        return "heif"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[:2] == b"BM":
        return "bmp"
    if head[:4] == b"8BPS":
        return "psd"
    if head[:4] == b"%PDF":
        return "pdf"
    if head[:4] in (b"\x00\x00\x01\x00", b"\x00\x00\x02\x00"):
        return "ico"
    if re.match(rb"\s*(<\?xml|<svg)", head, re.IGNORECASE):
        return "svg"
    return None


def check_bytes(data: bytes, limits: SafetyLimits) -> str:
    """Byte cap and format check, before decoding. Returns the sniffed, allowed format."""
    if not data:
        raise EmptyFile()
    if len(data) > limits.max_bytes:
        raise TooLarge(len(data), limits.max_bytes)
    fmt = sniff_format(data)
    if fmt is None or fmt not in limits.allowed_formats:
        raise UnsupportedFormat(fmt, limits.allowed_formats)
    return fmt


def check_pixels(size: tuple[int, int], limits: SafetyLimits) -> None:
    pixels = size[0] * size[1]
    if pixels > limits.max_pixels:
        raise DecompressionBomb(pixels, limits.max_pixels, size)
    if pixels == 0:
        raise CorruptImage("image", f"zero-sized image {size[0]}x{size[1]}")


def open_checked(data: bytes, limits: SafetyLimits) -> tuple[Image.Image, str]:
    """Open (header only) with every check applied; returns the lazy image and its format name."""
    fmt = check_bytes(data, limits)
    try:
        im = Image.open(io.BytesIO(data), formats=[pillow_name(fmt)])
    except Image.DecompressionBombError as exc:
        # Pillow's own cap (twice MAX_IMAGE_PIXELS) fired first; its message carries the pixel count.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        raise DecompressionBomb(int(found.group(1)) if found else 0, limits.max_pixels) from exc
    except DECODE_ERRORS as exc:
        raise CorruptImage(fmt, reason_of(exc)) from exc
    check_pixels(im.size, limits)
    return im, fmt


def reason_of(exc: BaseException) -> str:
    """A short, user-facing reason from a decoder exception."""
    if isinstance(exc, UnidentifiedImageError):
        return "its header cannot be parsed"
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."
