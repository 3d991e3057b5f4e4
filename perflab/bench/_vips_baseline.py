"""The pyvips (libvips, sharp's engine) baseline for `perflab bench images`: the same upload pipeline,
written the way libvips is meant to be used.

Same work as `ImagePipeline`: the master by `thumbnail_buffer` (shrink-on-load, auto-rotate, colour
management to sRGB), materialised once with `copy_memory`; then every derivative from the same parent
as ours (`derivatives.plan`, so both chain alike) by `thumbnail_image`, at exactly our sizes; the cover
thumbnail by `crop="centre"`. Encoders get the same settings (`EncodeSettings`): quality, progressive
JPEG with optimised Huffman tables, chroma subsampling, WebP effort, AVIF speed, 8-bit, no metadata.

libvips is configured for one core (`VIPS_CONCURRENCY=1`, set before the import) and its operation
cache is off, so repeated rounds cannot reuse each other's results.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType
from typing import Any

from perflab.images.derivatives import MASTER, plan
from perflab.images.encode import EncodeSettings
from perflab.images.pipeline import PipelineOptions


def import_pyvips(concurrency: int = 1) -> ModuleType:
    """Import pyvips with libvips' thread pool at `concurrency` and its operation cache disabled."""
    if "pyvips" not in sys.modules:
        os.environ["VIPS_CONCURRENCY"] = str(concurrency)
    import pyvips  # type: ignore[import-not-found,import-untyped,unused-ignore]

    pyvips.concurrency_set(concurrency)
    pyvips.cache_set_max(0)
    module: ModuleType = pyvips
    return module


class VipsPipeline:
    """`process(data) -> {name: (bytes, width, height)}`, the same derivatives as `ImagePipeline`."""

    def __init__(self, pyvips: ModuleType, options: PipelineOptions) -> None:
        self.pyvips = pyvips
        self.options = options
        self.encoding = options.encoding

    def _save(self, im: Any) -> bytes:
        enc: EncodeSettings = self.encoding
        if enc.format == "jpeg":
            return bytes(
                im.jpegsave_buffer(
                    Q=enc.quality,
                    interlace=enc.progressive,
                    optimize_coding=True,
                    subsample_mode="on" if enc.subsampling == "4:2:0" else "off",
                    strip=True,
                )
            )
        if enc.format == "webp":
            return bytes(im.webpsave_buffer(Q=enc.quality, effort=enc.webp_method, strip=True))
        return bytes(
            im.heifsave_buffer(
                Q=enc.quality,
                compression="av1",
                effort=9 - enc.avif_speed,  # libvips passes speed = 9 - effort to the AV1 encoder
                bitdepth=8,
                subsample_mode="on" if enc.subsampling == "4:2:0" else "off",
                strip=True,
            )
        )

    def process(self, data: bytes) -> dict[str, tuple[bytes, int, int]]:
        box = self.options.master_box
        master = self.pyvips.Image.thumbnail_buffer(data, box, height=box, size="down").copy_memory()
        if master.hasalpha() and self.encoding.format == "jpeg":
            master = master.flatten(background=list(self.options.background)).copy_memory()
        images = {MASTER: master}
        steps = plan(
            (master.width, master.height), self.options.responsive_widths, self.options.thumbnail_size
        )
        parents = {s.parent for s in steps}
        for step in steps:
            parent = images[step.parent]
            w, h = step.size
            if step.box is None:
                out = parent.thumbnail_image(w, height=h, size="force")
            else:
                out = parent.thumbnail_image(w, height=h, crop="centre")
            # Materialise only what later steps read; leaves stream straight into their encoder.
            images[step.name] = out.copy_memory() if step.name in parents else out
        return {name: (self._save(im), im.width, im.height) for name, im in images.items()}
