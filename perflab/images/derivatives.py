"""Which derivative is resized from which parent, and with what filter.

The plan is pure geometry (so the pyvips baseline in `perflab bench images` follows the same plan):
the master fits the box and is never enlarged; each responsive width is made from an image already
made, never re-decoded; the cover thumbnail is cropped and resized in one pass from the smallest image
whose short side still covers it.

Filters, measured on the photo corpus as SSIM against a LANCZOS reference after JPEG q85:
- Large outputs (long edge >= 1000 px: the master, 1920, 1024) are where the time goes. An exact
  integer factor (2048 -> 1024) is a box reduce (`Image.reduce`, what libvips' shrink does, ~10x
  cheaper than a convolution), so a large output prefers a parent it divides exactly; anything else
  uses HAMMING, within 0.002 SSIM of LANCZOS at ~40% of its cost (support 1 instead of 3).
- Small outputs (640, 320, the thumbnail) are cheap whatever the filter (a few ms), but each of
  their pixels stands for many source pixels, so softness shows: they use LANCZOS from the smallest
  larger image, which keeps their SSIM level with libvips' LANCZOS3 (a chain of box reduces scored
  ~0.015 lower, BICUBIC ~0.003 lower).
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

Size = tuple[int, int]
Box = tuple[int, int, int, int]

LARGE_FILTER = Image.Resampling.HAMMING
SMALL_FILTER = Image.Resampling.LANCZOS
DETAIL_EDGE = 1000  # outputs with a shorter long edge are "small"
# Above this factor, a box reduce by int(factor / gap) runs first (Pillow's reducing_gap).
REDUCING_GAP = 2.0

MASTER = "master"
THUMBNAIL = "thumb"


@dataclass(frozen=True)
class Step:
    """Make `name` at `size` from `parent` (or from its `box` region, for the cover crop)."""

    name: str
    size: Size
    parent: str
    box: Box | None = None


def fit_within(size: Size, box: int) -> Size:
    """The largest size with the same aspect ratio inside a `box` square, never larger than `size`."""
    w, h = size
    scale = min(box / w, box / h, 1.0)
    if scale == 1.0:
        return size
    return max(1, round(w * scale)), max(1, round(h * scale))


def scale_to_width(size: Size, width: int) -> Size:
    w, h = size
    return width, max(1, round(h * width / w))


def center_square(size: Size) -> Box:
    """The centred square of the short side: the cover crop of a square thumbnail."""
    w, h = size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return left, top, left + side, top + side


def _exact_factor(parent: Size, size: Size) -> int:
    """k >= 2 when `size` is `parent` divided by k (up to a row or column lost to rounding), else 0."""
    (pw, ph), (w, h) = parent, size
    k = pw // w
    if k >= 2 and pw == k * w and (-(-ph // k) == h or ph >= k * h):
        return k
    return 0


def _is_large(size: Size) -> bool:
    return max(size) >= DETAIL_EDGE


def plan(master: Size, widths: tuple[int, ...], thumbnail: int) -> list[Step]:
    """Responsive widths narrower than the master (widest first), then the thumbnail."""
    made: dict[str, Size] = {MASTER: master}
    steps: list[Step] = []
    for width in sorted(set(widths), reverse=True):
        if width >= master[0]:
            continue  # never enlarge, and the master itself already serves this width
        size = scale_to_width(master, width)
        exact = [n for n, s in made.items() if _is_large(size) and _exact_factor(s, size)]
        larger = [n for n, s in made.items() if s[0] > width]
        parent = min(exact or larger, key=lambda n: made[n][0])
        steps.append(Step(f"w{width}", size, parent))
        made[steps[-1].name] = size
    covering = [n for n, s in made.items() if min(s) >= thumbnail]
    parent = min(covering, key=lambda n: made[n][0]) if covering else MASTER
    box = center_square(made[parent])
    side = min(thumbnail, box[2] - box[0])
    steps.append(Step(THUMBNAIL, (side, side), parent, box))
    return steps


def resample(im: Image.Image, size: Size, box: Box | None = None) -> Image.Image:
    """Resize `im` (or its `box` region) to `size` with the filter policy above."""
    region = box or (0, 0, im.width, im.height)
    rw, rh = region[2] - region[0], region[3] - region[1]
    if (rw, rh) == size:
        return im if box is None else im.crop(region)
    if not _is_large(size):
        return im.resize(size, SMALL_FILTER, box=region, reducing_gap=REDUCING_GAP)
    k = _exact_factor((rw, rh), size)
    if k:
        top = region[1] + max(0, rh - k * size[1]) // 2
        bottom = min(region[3], top + k * size[1])
        return im.reduce(k, box=(region[0], top, region[2], bottom))
    return im.resize(size, LARGE_FILTER, box=region, reducing_gap=REDUCING_GAP)


def render(master: Image.Image, steps: list[Step]) -> dict[str, Image.Image]:
    """Execute a plan from the master image; returns every image by name (master included)."""
    images = {MASTER: master}
    for step in steps:
        images[step.name] = resample(images[step.parent], step.size, step.box)
    return images
