"""One decode per upload, and the colour/orientation fixes that make its pixels safe to publish.

The decode asks libjpeg for the smallest DCT scale (1/2, 1/4, 1/8) that still covers the largest size
we will output (`draft`), so a 24 MP phone photo is decoded at 6 MP. Orientation and ICC conversion
run after the master is resized: rotating or colour-converting 4 MP costs a quarter of 16 MP, and the
result is the same up to rounding.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, ImageCms

from perflab.images.errors import CorruptImage
from perflab.images.safety import DECODE_ERRORS, SafetyLimits, open_checked, reason_of

# EXIF orientation -> the transpose that shows the image upright (same table as ImageOps.exif_transpose).
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

_LOAD_ERRORS: tuple[type[BaseException], ...] = (*DECODE_ERRORS, Image.DecompressionBombError)

# Modes the resampler handles directly (RGBA/LA are premultiplied by Pillow while resizing).
_RESAMPLABLE = frozenset({"RGB", "RGBA", "L", "LA", "CMYK"})


@dataclass(frozen=True)
class Source:
    """What the header says about an upload. `width`/`height` are as displayed (after orientation)."""

    format: str
    width: int
    height: int
    orientation: int
    icc_profile: bytes | None
    animated: bool

    @property
    def swaps_axes(self) -> bool:
        return self.orientation in (5, 6, 7, 8)

    def raw_size(self, displayed: tuple[int, int]) -> tuple[int, int]:
        """A displayed size expressed in the file's stored orientation."""
        return (displayed[1], displayed[0]) if self.swaps_axes else displayed


def read_source(data: bytes, limits: SafetyLimits) -> tuple[Image.Image, Source]:
    """Run the safety checks and read the header; no pixel is decoded yet."""
    im, fmt = open_checked(data, limits)
    try:
        orientation = int(im.getexif().get(ExifTags.Base.Orientation, 1))
    except DECODE_ERRORS:
        orientation = 1  # a damaged EXIF block only loses the orientation; it is stripped anyway
    if orientation not in _TRANSPOSE:
        orientation = 1
    try:
        animated = bool(getattr(im, "is_animated", False))
    except DECODE_ERRORS as exc:
        raise CorruptImage(fmt, reason_of(exc)) from exc
    w, h = im.size
    if orientation in (5, 6, 7, 8):
        w, h = h, w
    icc = im.info.get("icc_profile") or None
    return im, Source(fmt, w, h, orientation, icc, animated)


def load(im: Image.Image, source: Source, covering: tuple[int, int] | None) -> Image.Image:
    """Decode the first frame, at the smallest JPEG scale that still covers `covering` (displayed
    size), in a mode the resampler handles. Metadata is dropped here so no encoder can copy it."""
    if covering is not None and source.format == "jpeg":
        im.draft(None, source.raw_size(covering))
    try:
        im.load()
    except _LOAD_ERRORS as exc:
        raise CorruptImage(source.format, reason_of(exc)) from exc
    out = _resamplable(im)
    out.info = {}
    return out


def _resamplable(im: Image.Image) -> Image.Image:
    """Palette, bilevel and 16-bit images to 8-bit L/RGB/RGBA (resizing a palette image is invalid)."""
    mode = im.mode
    if mode in _RESAMPLABLE:
        return im
    if mode in ("P", "PA"):
        return im.convert("RGBA" if mode == "PA" or im.has_transparency_data else "RGB")
    if mode == "1":
        return im.convert("L")
    if mode.startswith("I") or mode == "F":
        return _to_8bit_gray(im)
    if mode in ("La", "RGBa"):
        return im.convert(mode[:-1] + "A")
    return im.convert("RGBA" if "A" in im.getbands() else "RGB")


def _to_8bit_gray(im: Image.Image) -> Image.Image:
    """16-bit (and int/float) grayscale to 8 bits by scaling, not clipping: Pillow's convert("L")
    clips values above 255, which turns a 16-bit PNG white."""
    arr = np.asarray(im)
    if arr.dtype.kind == "f":
        scaled = np.clip(arr, 0.0, 1.0 if arr.max() <= 1.0 else 255.0)
        scaled = scaled * (255.0 if arr.max() <= 1.0 else 1.0)
    elif arr.dtype.itemsize >= 2 and (arr.dtype == np.uint16 or arr.max() > 255):
        scaled = np.clip(arr.astype(np.float32), 0, 65535) / 257.0
    else:
        scaled = arr
    return Image.fromarray(np.rint(scaled).astype(np.uint8))  # 2-D uint8: L


def orient(im: Image.Image, orientation: int) -> Image.Image:
    """Apply an EXIF orientation so the pixels are upright and no viewer needs the tag."""
    op = _TRANSPOSE.get(orientation)
    return im if op is None else im.transpose(op)


@functools.lru_cache(maxsize=32)
def _transform(icc: bytes, in_mode: str, out_mode: str) -> ImageCms.ImageCmsTransform:
    # NOCACHE: LittleCMS's one-pixel cache is mutated during a transform, and Pillow releases the GIL
    # there, so a transform shared by batch threads would race without it.
    return ImageCms.buildTransform(
        ImageCms.ImageCmsProfile(io.BytesIO(icc)),
        ImageCms.createProfile("sRGB"),
        in_mode,
        out_mode,
        renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
        flags=ImageCms.Flags.NOCACHE | ImageCms.Flags.BLACKPOINTCOMPENSATION,
    )


def _profile_info(icc: bytes) -> tuple[str, str] | None:
    """(colour space, description) of an embedded profile, or None when it is unusable."""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return profile.profile.xcolor_space.strip(), ImageCms.getProfileDescription(profile).strip()
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None


def to_srgb(im: Image.Image, icc: bytes | None) -> tuple[Image.Image, str | None]:
    """Convert to sRGB using the embedded profile; returns the image and the profile converted from
    (None when nothing was converted). CMYK without a profile gets Pillow's naive conversion."""
    info = _profile_info(icc) if icc else None
    if info is not None:
        space, description = info
        wanted = {"RGB": ("RGB", "RGBA"), "CMYK": ("CMYK",)}.get(space, ())
        already_srgb = space == "RGB" and "srgb" in description.lower()
        if im.mode in wanted and not already_srgb:
            out_mode = "RGBA" if im.mode == "RGBA" else "RGB"
            try:
                converted = ImageCms.applyTransform(im, _transform(icc, im.mode, out_mode))
            except (ImageCms.PyCMSError, OSError, ValueError):
                converted = None  # an inconsistent profile: fall through to the untagged conversion
            if converted is not None:
                return converted, description
    if im.mode == "CMYK":
        return im.convert("RGB"), None
    return im, None


def settle_alpha(im: Image.Image, *, keep_alpha: bool, background: tuple[int, int, int]) -> Image.Image:
    """Drop an all-opaque alpha channel (smaller files); flatten real transparency when the output
    format has none (JPEG)."""
    if im.mode not in ("RGBA", "LA"):
        return im
    opaque = im.getchannel("A").getextrema() == (255, 255)
    base = "RGB" if im.mode == "RGBA" else "L"
    if opaque:
        return im.convert(base)
    if keep_alpha:
        return im
    rgba = im.convert("RGBA")
    flat = Image.new("RGBA", rgba.size, (*background, 255))
    flat.alpha_composite(rgba)
    return flat.convert(base)
