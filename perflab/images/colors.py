"""Dominant colours for visual search: median-cut clusters refined by k-means, with their share.

Runs on a <= 40 px resample of the smallest derivative: clustering ~1 k pixels instead of 4 M changes
the palette by a few levels at most and costs about 2 ms instead of seconds.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from perflab.images.derivatives import fit_within

SAMPLE_BOX = 40


def dominant_colors(im: Image.Image, count: int = 5) -> list[tuple[str, float]]:
    """Up to `count` colours as ('#rrggbb', share of pixels), largest share first. Transparent pixels
    (alpha < 128) are not counted; an image with none opaque has no colours."""
    if count <= 0:
        return []
    small = im.resize(fit_within(im.size, SAMPLE_BOX), Image.Resampling.BOX, reducing_gap=2.0)
    if small.mode in ("RGBA", "LA"):
        arr = np.asarray(small.convert("RGBA"))
        opaque = arr[arr[..., 3] >= 128][:, :3]
        if opaque.size == 0:
            return []
        small = Image.fromarray(np.ascontiguousarray(opaque.reshape(1, -1, 3)))  # uint8 x3: RGB
    elif small.mode != "RGB":
        small = small.convert("RGB")
    quantized = small.quantize(colors=count, method=Image.Quantize.MEDIANCUT, kmeans=1)
    palette = quantized.getpalette() or []
    total = small.width * small.height
    shares: dict[str, int] = {}
    for n, index in quantized.getcolors(maxcolors=256) or []:
        i = int(index)  # type: ignore[arg-type]  # a palette index for a "P" image
        r, g, b = palette[3 * i : 3 * i + 3]
        key = f"#{r:02x}{g:02x}{b:02x}"
        shares[key] = shares.get(key, 0) + n
    ranked = sorted(shares.items(), key=lambda kv: (-kv[1], kv[0]))
    return [(hex_, round(n / total, 4)) for hex_, n in ranked]
