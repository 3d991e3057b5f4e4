"""The derivative plan: sizes, aspect ratios, parents, never enlarging; and the resampler obeys it."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from perflab.images.derivatives import (
    MASTER,
    THUMBNAIL,
    center_square,
    fit_within,
    plan,
    render,
    resample,
)

WIDTHS = (320, 640, 1024, 1920)


def test_landscape_plan_chains_through_exact_factors() -> None:
    steps = {s.name: s for s in plan((2048, 1365), WIDTHS, 300)}
    assert [s.size for s in steps.values()] == [(1920, 1280), (1024, 682), (640, 427), (320, 213), (300, 300)]
    assert steps["w1920"].parent == MASTER
    assert steps["w1024"].parent == MASTER  # 2048 / 2: a box reduce
    assert steps["w640"].parent == "w1024"  # small outputs: the smallest larger image
    assert steps["w320"].parent == "w640"
    assert steps[THUMBNAIL].parent == "w640" and steps[THUMBNAIL].box == (106, 0, 533, 427)


def test_small_master_skips_widths_it_would_enlarge() -> None:
    steps = plan((451, 300), WIDTHS, 300)
    assert [s.name for s in steps] == ["w320", THUMBNAIL]
    assert steps[-1].parent == MASTER and steps[-1].size == (300, 300)
    tiny = plan((120, 80), WIDTHS, 300)
    assert [(s.name, s.size, s.box) for s in tiny] == [(THUMBNAIL, (80, 80), (20, 0, 100, 80))]


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 12000), st.integers(1, 12000))
def test_plan_geometry_properties(w: int, h: int) -> None:
    master = fit_within((w, h), 2048)
    assert master[0] <= min(w, 2048) and master[1] <= min(h, 2048)
    assert max(master) == min(max(w, h), 2048)  # fills the box unless the source is smaller
    made = {MASTER: master}
    for step in plan(master, WIDTHS, 300):
        parent = made[step.parent]
        if step.name == THUMBNAIL:
            left, top, right, bottom = step.box or (0, 0, *parent)
            assert right - left == bottom - top == min(parent)  # centred square of the short side
            assert step.size[0] == step.size[1] == min(300, min(parent))
        else:
            assert step.size[0] < master[0] and step.size[0] in WIDTHS  # never enlarged, never a duplicate
            exact_height = master[1] * step.size[0] / master[0]
            assert abs(step.size[1] - exact_height) <= 0.5 + 1e-9 or step.size[1] == 1
            assert parent[0] > step.size[0]
        made[step.name] = step.size


def test_resample_produces_exact_sizes_and_box_reduces() -> None:
    rng = np.random.default_rng(3)
    master = Image.fromarray(rng.integers(0, 256, (1365, 2048, 3), dtype=np.uint8))
    images = render(master, plan(master.size, WIDTHS, 300))
    assert {n: im.size for n, im in images.items()} == {
        MASTER: (2048, 1365),
        "w1920": (1920, 1280),
        "w1024": (1024, 682),
        "w640": (640, 427),
        "w320": (320, 213),
        THUMBNAIL: (300, 300),
    }
    # 2048x1365 -> 1024x682 is a plain 2x2 average over the first 1364 rows (682.5 rounds to even).
    expected = master.reduce(2, box=(0, 0, 2048, 1364))
    assert np.array_equal(np.asarray(images["w1024"]), np.asarray(expected))


def test_resample_crop_without_scaling() -> None:
    im = Image.new("RGB", (500, 300), (1, 2, 3))
    assert resample(im, (500, 300)) is im
    box = center_square(im.size)
    assert box == (100, 0, 400, 300)
    assert resample(im, (300, 300), box).size == (300, 300)
