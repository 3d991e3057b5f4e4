"""The pipeline's outputs: sizes, orientation, colour, metadata stripped, figures."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image

from perflab.errors import ConfigError
from perflab.images import ImagePipeline, PipelineOptions, ProcessedImage
from perflab.images import blurhash as our_blurhash
from perflab.images.colors import dominant_colors
from perflab.images.quality import ssim_arrays


def _open(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def _process(path: Path, **options: object) -> ProcessedImage:
    return ImagePipeline(PipelineOptions(**options)).process(path.read_bytes(), filename=path.name)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def landscape(image_corpus: Path) -> ProcessedImage:
    return _process(image_corpus / "photos" / "chelsea_3072.jpg", compute_ssim=True)


def test_master_fits_the_box_and_keeps_the_aspect_ratio(landscape: ProcessedImage) -> None:
    assert (landscape.width, landscape.height) == (3072, 2043)
    assert (landscape.master.width, landscape.master.height) == (2048, 1362)
    for d in landscape.derivatives:
        decoded = _open(d.data)
        assert decoded.size == (d.width, d.height)
        assert decoded.format == "JPEG" and d.mime_type == "image/jpeg"
        if d.name != "thumb":
            assert abs(d.width / d.height - 3072 / 2043) < 2 / d.height  # within a pixel of rounding


def test_responsive_widths_and_cover_thumbnail(landscape: ProcessedImage) -> None:
    assert [(d.name, d.width) for d in landscape.responsive] == [
        ("w1920", 1920),
        ("w1024", 1024),
        ("w640", 640),
        ("w320", 320),
    ]
    assert (landscape.thumbnail.width, landscape.thumbnail.height) == (300, 300)


def test_small_images_are_never_enlarged(image_corpus: Path) -> None:
    result = _process(image_corpus / "photos" / "chelsea.png")  # 451x300
    assert (result.master.width, result.master.height) == (451, 300)
    assert [d.width for d in result.responsive] == [320]
    assert (result.thumbnail.width, result.thumbnail.height) == (300, 300)
    tiny = Image.new("RGB", (120, 80), (10, 200, 30))
    buf = io.BytesIO()
    tiny.save(buf, "PNG")
    small = ImagePipeline().process(buf.getvalue())
    assert (small.master.width, small.master.height) == (120, 80)
    assert small.responsive == []
    assert (small.thumbnail.width, small.thumbnail.height) == (80, 80)


def test_portrait_master_is_bounded_by_height(image_corpus: Path) -> None:
    im = Image.open(image_corpus / "photos" / "rocket_3072.jpg").transpose(Image.Transpose.ROTATE_90)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    result = ImagePipeline().process(buf.getvalue())
    assert (result.master.width, result.master.height) == (1367, 2048)
    assert [d.width for d in result.responsive] == [1024, 640, 320]  # 1920 would enlarge


def test_draft_path_for_very_large_jpeg(image_corpus: Path) -> None:
    result = _process(image_corpus / "photos" / "china_6048.jpg", compute_ssim=True)
    assert (result.width, result.height) == (6048, 4035)  # decoded at 1/2 scale, then resized
    assert (result.master.width, result.master.height) == (2048, 1366)
    assert min(d.ssim or 0 for d in result.derivatives) > 0.95


def test_exif_orientation_is_applied_and_gps_stripped(image_corpus: Path) -> None:
    path = image_corpus / "photos" / "rocket_exif6_gps.jpg"
    raw = Image.open(path)
    assert raw.size == (2050, 3072)  # stored sideways
    assert raw.getexif().get_ifd(ExifTags.IFD.GPSInfo)  # the source does carry GPS
    rotated = _process(path)
    upright = _process(image_corpus / "photos" / "rocket_3072.jpg")
    assert rotated.orientation == 6
    assert (rotated.width, rotated.height) == (3072, 2050)
    assert (rotated.master.width, rotated.master.height) == (upright.master.width, upright.master.height)
    a = np.asarray(_open(rotated.master.data).convert("L"))
    b = np.asarray(_open(upright.master.data).convert("L"))
    assert ssim_arrays(a, b) > 0.97  # same picture, same way up
    flipped = np.asarray(_open(upright.master.data).convert("L").transpose(Image.Transpose.ROTATE_180))
    assert np.abs(a.astype(float) - b).mean() < 2 < 10 < np.abs(a.astype(float) - flipped).mean()


@pytest.mark.parametrize("fmt", ["jpeg", "webp", "avif"])
def test_outputs_carry_no_metadata(image_corpus: Path, fmt: str) -> None:
    result = _process(image_corpus / "bad" / "huge_exif.jpg", format=fmt)
    assert result.master.size_bytes < 0.8 * (image_corpus / "bad" / "huge_exif.jpg").stat().st_size
    for d in result.derivatives:
        im = _open(d.data)
        assert d.mime_type == f"image/{fmt}" and im.format == fmt.upper()
        assert not im.getexif(), d.name
        for key in ("exif", "icc_profile", "xmp", "XML:com.adobe.xmp", "comment", "photoshop"):
            assert not im.info.get(key), (d.name, key)
        assert b"perflab-test-camera" not in d.data and b"GPS" not in d.data


def test_jpeg_outputs_are_progressive(landscape: ProcessedImage) -> None:
    for d in landscape.derivatives:
        assert _open(d.data).info.get("progressive") == 1, d.name


def test_adobe_rgb_is_converted_to_srgb(image_corpus: Path) -> None:
    tagged = _process(image_corpus / "photos" / "coffee_adobe_rgb.jpg")
    plain = _process(image_corpus / "photos" / "coffee_3072.jpg")
    assert tagged.color_profile and "Adobe RGB" in tagged.color_profile
    assert plain.color_profile is None
    a = np.asarray(_open(tagged.master.data).convert("RGB"), dtype=np.float64)
    b = np.asarray(_open(plain.master.data).convert("RGB"), dtype=np.float64)
    # Converted back, it matches the sRGB original; read as if sRGB, it would be visibly off.
    assert np.abs(a - b).mean() < 3
    raw = Image.open(image_corpus / "photos" / "coffee_adobe_rgb.jpg").resize(b.shape[1::-1])
    assert np.abs(np.asarray(raw, dtype=np.float64) - b).mean() > 2 * np.abs(a - b).mean()


def test_cmyk_is_converted(image_corpus: Path) -> None:
    cmyk = _process(image_corpus / "bad" / "cmyk.jpg")
    rgb = _process(image_corpus / "photos" / "chelsea.png")
    assert _open(cmyk.master.data).mode == "RGB"
    a = np.asarray(_open(cmyk.master.data), dtype=np.float64)
    b = np.asarray(_open(rgb.master.data), dtype=np.float64)
    assert np.abs(a - b).mean() < 6


def test_16_bit_gray_is_scaled_not_clipped(image_corpus: Path) -> None:
    result = _process(image_corpus / "bad" / "gray16.png")
    im = _open(result.master.data)
    assert im.mode == "L"
    row = np.asarray(im, dtype=np.float64)[200]
    assert row[:20].mean() < 12 and row[-20:].mean() > 243  # the full ramp survives
    assert 110 < row.mean() < 145  # clipping would put the mean near 255


def test_animated_gif_uses_the_first_frame(image_corpus: Path) -> None:
    result = _process(image_corpus / "bad" / "animated.gif")
    assert result.animated and result.format == "gif"
    r, g, b = np.asarray(_open(result.master.data).convert("RGB"), dtype=np.float64).mean(axis=(0, 1))
    assert r > 150 and g < 80 and b < 80  # red, the first frame
    assert result.dominant_colors[0][0] == "#c81e1e"


def test_wrong_extension_is_sniffed(image_corpus: Path) -> None:
    result = _process(image_corpus / "bad" / "png_renamed.jpg")
    assert result.format == "png" and result.filename == "png_renamed.jpg"


def _rgba_png() -> bytes:
    im = Image.new("RGBA", (400, 300), (0, 0, 0, 0))
    im.paste((0, 0, 255, 255), (100, 0, 300, 300))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def test_transparency_is_flattened_for_jpeg_and_kept_for_webp() -> None:
    jpeg = ImagePipeline().process(_rgba_png())
    corner = _open(jpeg.master.data).convert("RGB").getpixel((5, 5))
    assert all(c > 245 for c in corner)  # white background, not black
    webp = ImagePipeline(PipelineOptions(format="webp")).process(_rgba_png())
    im = _open(webp.master.data)
    assert im.mode == "RGBA" and im.getpixel((5, 5))[3] == 0
    assert [c for c, _ in webp.dominant_colors] == ["#0000ff"]  # transparent pixels do not count


def test_palette_png_with_transparency() -> None:
    im = Image.new("P", (64, 64), 0)
    im.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    im.paste(1, (32, 0, 64, 64))
    buf = io.BytesIO()
    im.save(buf, "PNG", transparency=0)
    result = ImagePipeline(PipelineOptions(format="webp")).process(buf.getvalue())
    out = _open(result.master.data)
    assert out.mode == "RGBA" and out.getpixel((5, 5))[3] == 0 and out.getpixel((50, 5))[1] > 240


def test_dominant_colors_are_real() -> None:
    im = Image.new("RGB", (100, 100), (255, 0, 0))
    im.paste((0, 0, 255), (0, 0, 100, 30))
    im.paste((0, 255, 0), (0, 30, 100, 50))
    colors = dict(dominant_colors(im, 5))
    assert set(colors) == {"#ff0000", "#0000ff", "#00ff00"}
    assert colors["#ff0000"] == pytest.approx(0.5, abs=0.03)
    assert colors["#0000ff"] == pytest.approx(0.3, abs=0.03)
    assert sum(colors.values()) == pytest.approx(1.0, abs=1e-3)
    assert dominant_colors(im, 0) == []


def test_blurhash_matches_the_reference_implementation(landscape: ProcessedImage) -> None:
    blurhash_python = pytest.importorskip("blurhash")
    im = _open(landscape.responsive[-1].data).convert("RGB")
    im.thumbnail((32, 32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # it calls Image.getdata
        for components in ((4, 3), (3, 4), (1, 1), (9, 9)):
            assert our_blurhash.encode(im, *components) == blurhash_python.encode(im.copy(), *components)
    assert blurhash_python.is_valid_blurhash(landscape.blurhash)
    assert len(landscape.blurhash) == 6 + 2 * (4 * 3 - 1)


def test_ssim_matches_scikit_image() -> None:
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(7)
    a = rng.integers(0, 256, (90, 130), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    assert ssim_arrays(a, b) == pytest.approx(metrics.structural_similarity(a, b, data_range=255), abs=1e-9)
    assert ssim_arrays(a, a) == pytest.approx(1.0)


def test_figures(landscape: ProcessedImage, image_corpus: Path) -> None:
    assert landscape.original_bytes == (image_corpus / "photos" / "chelsea_3072.jpg").stat().st_size
    assert landscape.compression_ratio == landscape.original_bytes / landscape.master.size_bytes
    assert {"decode", "resize", "encode", "colors", "blurhash", "ssim", "total"} <= set(landscape.timings_ms)
    assert all(0.95 < (d.ssim or 0) <= 1.0 for d in landscape.derivatives)
    figures = landscape.figures()
    assert [d["name"] for d in figures["derivatives"]] == [
        "master",
        "w1920",
        "w1024",
        "w640",
        "w320",
        "thumb",
    ]
    assert figures["output_bytes"] == sum(d["bytes"] for d in figures["derivatives"])


def test_ssim_is_off_by_default(image_corpus: Path) -> None:
    result = _process(image_corpus / "photos" / "rocket.jpg")
    assert all(d.ssim is None for d in result.derivatives) and "ssim" not in result.timings_ms


def test_options_are_validated() -> None:
    with pytest.raises(ConfigError):
        PipelineOptions(format="gif")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        PipelineOptions(quality=0)
    with pytest.raises(ConfigError):
        PipelineOptions(responsive_widths=(8,))
