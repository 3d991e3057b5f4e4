"""BlurHash placeholders (https://blurha.sh), encoded with numpy.

Not the `blurhash-python` package: it reads pixels through `Image.getdata` (deprecated, removed in
Pillow 14), loops in Python over every pixel, and closes the image it is given. This is the reference
algorithm as matrix products on a <= 32 px resample; the tests check it against that package.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from perflab.images.derivatives import fit_within

_BASE83 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~"
SAMPLE_BOX = 32


def _base83(value: int, length: int) -> str:
    return "".join(_BASE83[(value // 83 ** (length - i)) % 83] for i in range(1, length + 1))


def _srgb_to_linear(channel: np.ndarray) -> np.ndarray:
    v = channel / 255.0
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(value: float) -> int:
    v = min(1.0, max(0.0, value))
    if v <= 0.0031308:
        return int(v * 12.92 * 255 + 0.5)
    return int((1.055 * v ** (1 / 2.4) - 0.055) * 255 + 0.5)


def encode(im: Image.Image, x_components: int = 4, y_components: int = 3) -> str:
    """The BlurHash of an image (resampled to <= 32 px first; alpha is ignored)."""
    if not (1 <= x_components <= 9 and 1 <= y_components <= 9):
        raise ValueError("blurhash components must be within 1..9")
    small = (
        im if max(im.size) <= SAMPLE_BOX else im.resize(fit_within(im.size, SAMPLE_BOX), Image.Resampling.BOX)
    )
    rgb = np.asarray(small.convert("RGB"), dtype=np.float64)
    return encode_pixels(rgb, x_components, y_components)


def encode_pixels(rgb: np.ndarray, x_components: int, y_components: int) -> str:
    """BlurHash of an (height, width, 3) array of 0..255 sRGB values."""
    height, width = rgb.shape[:2]
    linear = _srgb_to_linear(rgb)
    basis_x = np.cos(math.pi * np.outer(np.arange(x_components), np.arange(width)) / width)
    basis_y = np.cos(math.pi * np.outer(np.arange(y_components), np.arange(height)) / height)
    # factors[j, i, c] = sum_y sum_x basis_y[j, y] * basis_x[i, x] * linear[y, x, c]
    factors = np.einsum("jy,ix,yxc->jic", basis_y, basis_x, linear) / (width * height)
    factors[1:, :, :] *= 2
    factors[0, 1:, :] *= 2
    flat = factors.reshape(-1, 3)
    dc, ac = flat[0], flat[1:]

    out = [_base83((x_components - 1) + (y_components - 1) * 9, 1)]
    if len(ac):
        quantised_max = int(max(0.0, min(82.0, math.floor(float(np.abs(ac).max()) * 166 - 0.5))))
        maximum = (quantised_max + 1) / 166
        out.append(_base83(quantised_max, 1))
    else:
        maximum = 1.0
        out.append(_base83(0, 1))
    r, g, b = (_linear_to_srgb(float(v)) for v in dc)
    out.append(_base83((r << 16) + (g << 8) + b, 4))
    for component in ac:
        q = [
            int(max(0.0, min(18.0, math.floor(math.copysign(abs(v / maximum) ** 0.5, v) * 9 + 9.5))))
            for v in component
        ]
        out.append(_base83(q[0] * 19 * 19 + q[1] * 19 + q[2], 2))
    return "".join(out)
