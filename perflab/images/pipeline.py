"""Process one upload: one decode, then the master, the responsive set and the thumbnail, encoded once
each, plus dominant colours, a BlurHash, and the figures (bytes, SSIM, time per stage)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from PIL import Image

from perflab.errors import ConfigError
from perflab.images import blurhash as _blurhash
from perflab.images.colors import dominant_colors as _dominant_colors
from perflab.images.decode import Source, load, orient, read_source, settle_alpha, to_srgb
from perflab.images.derivatives import MASTER, THUMBNAIL, Size, Step, fit_within, plan, render, resample
from perflab.images.encode import EncodeSettings, encode
from perflab.images.formats import OutputFormat, extension, mime_type
from perflab.images.quality import FloatBox, reference, ssim
from perflab.images.safety import SafetyLimits
from perflab.timing import StageTimer


@dataclass(frozen=True)
class PipelineOptions:
    """What to produce. The defaults are the upload pipeline of the media search service."""

    format: OutputFormat = "jpeg"
    quality: int | None = None  # None: the per-format default of `encode.DEFAULT_QUALITY`
    master_box: int = 2048
    responsive_widths: tuple[int, ...] = (320, 640, 1024, 1920)
    thumbnail_size: int = 300
    limits: SafetyLimits = field(default_factory=SafetyLimits)
    dominant_colors: int = 5  # 0: skip
    blurhash_components: tuple[int, int] | None = (4, 3)  # None: skip
    compute_ssim: bool = False  # costs a second, full-resolution decode: for the lab, not uploads
    background: tuple[int, int, int] = (255, 255, 255)  # behind transparency when the format has none

    def __post_init__(self) -> None:
        if self.master_box < 16 or self.thumbnail_size < 16:
            raise ConfigError("master_box and thumbnail_size must be at least 16 px")
        if any(w < 16 for w in self.responsive_widths):
            raise ConfigError(f"responsive widths must be at least 16 px, got {self.responsive_widths}")
        EncodeSettings.for_format(self.format, self.quality)  # validate now, not at the first upload

    @property
    def encoding(self) -> EncodeSettings:
        return EncodeSettings.for_format(self.format, self.quality)


@dataclass(frozen=True)
class Derivative:
    """One encoded output. `ssim` is against the source at the same size (None unless asked for)."""

    name: str
    width: int
    height: int
    format: str
    mime_type: str
    data: bytes = field(repr=False)
    ssim: float | None = None

    @property
    def size_bytes(self) -> int:
        return len(self.data)

    @property
    def extension(self) -> str:
        return extension(self.format)


@dataclass(frozen=True)
class ProcessedImage:
    """Everything the service stores for one upload. `width`, `height` and `format` describe the
    source as displayed (EXIF orientation applied); the derivatives carry their own."""

    width: int
    height: int
    format: str
    master: Derivative
    thumbnail: Derivative
    responsive: list[Derivative]
    dominant_colors: list[tuple[str, float]]
    blurhash: str
    original_bytes: int
    timings_ms: dict[str, float]
    filename: str | None = None
    orientation: int = 1  # the EXIF orientation that was applied to the pixels
    animated: bool = False  # only the first frame was used
    color_profile: str | None = None  # the embedded profile converted to sRGB, if any

    @property
    def derivatives(self) -> list[Derivative]:
        return [self.master, *self.responsive, self.thumbnail]

    @property
    def output_bytes(self) -> int:
        return sum(d.size_bytes for d in self.derivatives)

    @property
    def compression_ratio(self) -> float:
        """Original bytes per byte of the master that replaces it."""
        return self.original_bytes / self.master.size_bytes

    def figures(self) -> dict[str, object]:
        """The per-image figures as plain data (for JSON and the lab notebooks)."""
        return {
            "filename": self.filename,
            "source": {"format": self.format, "width": self.width, "height": self.height},
            "original_bytes": self.original_bytes,
            "output_bytes": self.output_bytes,
            "compression_ratio": round(self.compression_ratio, 3),
            "derivatives": [
                {"name": d.name, "width": d.width, "height": d.height, "bytes": d.size_bytes, "ssim": d.ssim}
                for d in self.derivatives
            ],
            "timings_ms": self.timings_ms,
        }


class ImagePipeline:
    """Stateless and thread-safe: one instance serves every thread (and pickles to worker processes)."""

    def __init__(self, options: PipelineOptions | None = None) -> None:
        self.options = options or PipelineOptions()
        self._encoding = self.options.encoding

    def __repr__(self) -> str:
        return f"ImagePipeline({self.options!r})"

    def process(self, data: bytes, *, filename: str | None = None) -> ProcessedImage:
        """Validate, decode once, derive, encode. Raises an `ImageError` subclass for bad input."""
        opts, enc = self.options, self._encoding
        timer = StageTimer()
        stage = timer.stage
        start = time.perf_counter()
        with stage("decode"):
            im, source = read_source(data, opts.limits)
            master_size = fit_within((source.width, source.height), opts.master_box)
            raw = load(im, source, covering=master_size)
        with stage("resize"):
            master = resample(raw, source.raw_size(master_size))
        del raw
        with stage("color"):
            master = orient(master, source.orientation)
            master, profile = to_srgb(master, source.icc_profile)
            master = settle_alpha(master, keep_alpha=enc.keeps_alpha, background=opts.background)
        steps = plan(master.size, opts.responsive_widths, opts.thumbnail_size)
        with stage("resize"):
            images = render(master, steps)
        with stage("encode"):
            encoded = {name: encode(img, enc) for name, img in images.items()}
        whole = images[steps[-2].name] if len(steps) > 1 else master  # smallest full-frame image
        with stage("colors"):
            colors = _dominant_colors(whole, opts.dominant_colors)
        with stage("blurhash"):
            hash_ = _blurhash.encode(whole, *opts.blurhash_components) if opts.blurhash_components else ""
        scores: dict[str, float] = {}
        if opts.compute_ssim:
            with stage("ssim"):
                scores = _ssim_scores(data, source, opts, images, encoded, steps)
        timings = timer.as_dict()
        timings["total"] = round((time.perf_counter() - start) * 1000, 3)

        def derivative(name: str) -> Derivative:
            img = images[name]
            return Derivative(
                name,
                img.width,
                img.height,
                enc.format,
                mime_type(enc.format),
                encoded[name],
                scores.get(name),
            )

        return ProcessedImage(
            width=source.width,
            height=source.height,
            format=source.format,
            master=derivative(MASTER),
            thumbnail=derivative(THUMBNAIL),
            responsive=[derivative(s.name) for s in steps if s.name != THUMBNAIL],
            dominant_colors=colors,
            blurhash=hash_,
            original_bytes=len(data),
            timings_ms=timings,
            filename=filename,
            orientation=source.orientation,
            animated=source.animated,
            color_profile=profile,
        )


def full_resolution(data: bytes, source: Source, options: PipelineOptions) -> Image.Image:
    """The source decoded without any shortcut, upright and in sRGB: the SSIM reference's origin."""
    im, _ = read_source(data, options.limits)
    full = orient(load(im, source, covering=None), source.orientation)
    full, _ = to_srgb(full, source.icc_profile)
    return settle_alpha(full, keep_alpha=options.encoding.keeps_alpha, background=options.background)


def source_box(steps: list[Step], sizes: Mapping[str, Size], name: str, full: Size) -> FloatBox | None:
    """The region of the full-resolution source that derivative `name` shows (None: all of it)."""
    step = next((s for s in steps if s.name == name), None)
    if step is None or step.box is None:
        return None
    pw, ph = sizes[step.parent]
    sx, sy = full[0] / pw, full[1] / ph
    left, top, right, bottom = step.box
    return (left * sx, top * sy, right * sx, bottom * sy)


def _ssim_scores(
    data: bytes,
    source: Source,
    options: PipelineOptions,
    images: dict[str, Image.Image],
    encoded: dict[str, bytes],
    steps: list[Step],
) -> dict[str, float]:
    full = full_resolution(data, source, options)
    sizes = {name: img.size for name, img in images.items()}
    scores = {}
    for name, img in images.items():
        box = source_box(steps, sizes, name, full.size)
        scores[name] = round(ssim(encoded[name], reference(full, img.size, box)), 5)
    return scores
