"""Encoders with per-format settings, and nothing but pixels in the output.

Every encoder gets `exif=b""`, no ICC and no XMP explicitly, and `decode.load` empties `Image.info`, so
no GPS position, camera serial or comment from the upload can reach a published file.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Any

from PIL import Image

from perflab.errors import ConfigError
from perflab.images.formats import OUTPUT_FORMATS, OutputFormat, pillow_name

# Quality per format: similar fidelity at each format's own scale. Mean SSIM of every derivative against
# the source on the photo corpus (perflab bench images): JPEG 0.982, WebP 0.974, AVIF 0.977.
DEFAULT_QUALITY: dict[str, int] = {"jpeg": 85, "webp": 80, "avif": 60}


@dataclass(frozen=True)
class EncodeSettings:
    """How one output format is written. The pyvips baseline reads the same fields."""

    format: OutputFormat = "jpeg"
    quality: int = 85
    progressive: bool = True  # JPEG: renders coarse-to-fine while downloading; libjpeg optimizes Huffman too
    subsampling: str = "4:2:0"  # JPEG/AVIF chroma
    webp_method: int = 4  # 0 (fast) .. 6 (small)
    avif_speed: int = 6  # 0 (slow, small) .. 10 (fast); libavif's default
    avif_threads: int = 1  # one thread per image: a batch parallelises across images instead
    # libaom's tuning. "ssim" is libheif's default (so libvips'/sharp's); libavif's is "psnr", which on
    # the corpus gives 640 px outputs 25% fewer bytes but SSIM 0.969 instead of 0.983.
    avif_tune: str = "ssim"

    def __post_init__(self) -> None:
        if self.format not in OUTPUT_FORMATS:
            raise ConfigError(f"output format {self.format!r} is not one of {', '.join(OUTPUT_FORMATS)}")
        if not 1 <= self.quality <= 100:
            raise ConfigError(f"quality {self.quality} is out of range 1..100")

    @classmethod
    def for_format(cls, fmt: OutputFormat, quality: int | None = None) -> EncodeSettings:
        if fmt not in DEFAULT_QUALITY:
            raise ConfigError(f"output format {fmt!r} is not one of {', '.join(OUTPUT_FORMATS)}")
        return cls(format=fmt, quality=DEFAULT_QUALITY[fmt] if quality is None else quality)

    @property
    def keeps_alpha(self) -> bool:
        return self.format != "jpeg"

    def pillow_params(self) -> dict[str, Any]:
        common: dict[str, Any] = {"quality": self.quality, "exif": b"", "icc_profile": None, "xmp": b""}
        if self.format == "jpeg":
            return common | {
                "progressive": self.progressive,
                "optimize": True,
                "subsampling": self.subsampling,
            }
        if self.format == "webp":
            return common | {"method": self.webp_method, "lossless": False}
        return common | {
            "speed": self.avif_speed,
            "subsampling": self.subsampling,
            "max_threads": self.avif_threads,
            "advanced": {"tune": self.avif_tune},
        }


def encode(im: Image.Image, settings: EncodeSettings) -> bytes:
    """Encode one image; the input must already be RGB, RGBA (not for JPEG) or L."""
    params = settings.pillow_params()
    if settings.format == "jpeg":
        if im.mode == "L":
            params.pop("subsampling")  # one channel: nothing to subsample
        if hasattr(os, "memfd_create"):
            return _save_to_memfd(im, "JPEG", params)
    buf = io.BytesIO()
    im.save(buf, pillow_name(settings.format), **params)
    return buf.getvalue()


def _save_to_memfd(im: Image.Image, fmt: str, params: dict[str, Any]) -> bytes:
    """Save through an anonymous in-memory file. Pillow releases the GIL for a JPEG encode only when
    it writes to a real file descriptor (`encode_to_file`); into a BytesIO it holds the GIL for the
    whole encode, which serialises a thread pool (measured: 2 threads ran at 1.0x, and a Python thread
    beside the encode got 40% of its normal speed). A memfd is a descriptor without a disk."""
    fd = os.memfd_create("perflab-encode", os.MFD_CLOEXEC)
    try:
        with open(fd, "wb", buffering=0, closefd=False) as fh:
            im.save(fh, fmt, **params)
        size = os.fstat(fd).st_size
        chunks, offset = [], 0
        while offset < size:
            chunk = os.pread(fd, size - offset, offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
