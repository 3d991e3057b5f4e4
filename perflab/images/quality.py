"""SSIM of an output against the source resampled to the same size.

SSIM is computed on luma (ITU-R 601, Pillow's "L") with scikit-image's defaults (7x7 uniform window,
K1=0.01, K2=0.03, sample covariance), using integral images so it needs numpy only; the tests check it
equals `skimage.metrics.structural_similarity`. The reference is a fresh full-resolution decode resized
with LANCZOS (no draft, no reducing gap): the best this library can do, so shortcuts anywhere in the
pipeline (draft, box reduces, chaining, HAMMING, the encoder) all show up in the score.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from perflab.images.derivatives import Size

FloatBox = tuple[float, float, float, float]

_WIN = 7
_K1, _K2 = 0.01, 0.03


def _window_means(x: np.ndarray) -> np.ndarray:
    """Mean over every full 7x7 window ('valid' positions), by a 2-D summed-area table."""
    s = np.zeros((x.shape[0] + 1, x.shape[1] + 1), dtype=np.float64)
    np.cumsum(np.cumsum(x, axis=0), axis=1, out=s[1:, 1:])
    w = _WIN
    total = s[w:, w:] - s[:-w, w:] - s[w:, :-w] + s[:-w, :-w]
    return total / (w * w)


def ssim_arrays(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """Mean SSIM of two equal-shape 2-D arrays (scikit-image's definition with default settings)."""
    if a.shape != b.shape:
        raise ValueError(f"SSIM needs equal shapes, got {a.shape} and {b.shape}")
    if min(a.shape) < _WIN:
        return 1.0 if np.array_equal(a, b) else 0.0
    x = a.astype(np.float64)
    y = b.astype(np.float64)
    cov_norm = _WIN * _WIN / (_WIN * _WIN - 1)
    ux, uy = _window_means(x), _window_means(y)
    uxx, uyy, uxy = _window_means(x * x), _window_means(y * y), _window_means(x * y)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1 = (_K1 * data_range) ** 2
    c2 = (_K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return float(s.mean())


def _luma(im: Image.Image) -> np.ndarray:
    if im.mode in ("RGBA", "LA"):
        im = im.convert(im.mode[:-1])
    return np.asarray(im.convert("L"))


def ssim(output: Image.Image | bytes, reference: Image.Image) -> float:
    """SSIM of an encoded output (bytes) or image against a reference image of the same size."""
    out = Image.open(io.BytesIO(output)) if isinstance(output, bytes) else output
    return ssim_arrays(_luma(out), _luma(reference))


def reference(source: Image.Image, size: Size, box: FloatBox | None = None) -> Image.Image:
    """The source (full resolution, upright, sRGB) at `size`: what a perfect pipeline would output."""
    return source.resize(size, Image.Resampling.LANCZOS, box=box)
