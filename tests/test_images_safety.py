"""Every bad file gets its typed error (or is handled correctly), checked before or at decode."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from perflab.errors import ConfigError
from perflab.images import (
    CorruptImage,
    DecompressionBomb,
    EmptyFile,
    ImageError,
    ImagePipeline,
    PipelineOptions,
    SafetyLimits,
    TooLarge,
    UnsupportedFormat,
    sniff_format,
)
from perflab.images.errors import ProcessingFailed
from perflab.images.safety import describe_formats
from perflab.lab.corpus import BAD_FILES

ERRORS = {
    cls.__name__: cls for cls in (CorruptImage, DecompressionBomb, EmptyFile, TooLarge, UnsupportedFormat)
}


@pytest.mark.parametrize(("name", "expected"), sorted(BAD_FILES.items()))
def test_each_bad_file_gets_its_outcome(image_corpus: Path, name: str, expected: str) -> None:
    data = (image_corpus / "bad" / name).read_bytes()
    pipeline = ImagePipeline()
    if expected == "ok":
        result = pipeline.process(data, filename=name)
        assert result.master.data[:3] == b"\xff\xd8\xff"
        return
    with pytest.raises(ERRORS[expected]) as caught:
        pipeline.process(data, filename=name)
    assert isinstance(caught.value, ImageError)
    assert str(caught.value) and "object at 0x" not in str(caught.value)


def test_bomb_is_refused_from_its_header(image_corpus: Path) -> None:
    with pytest.raises(DecompressionBomb) as caught:
        ImagePipeline().process((image_corpus / "bad" / "bomb.png").read_bytes())
    assert caught.value.pixels == 20000 * 20000
    assert "400,000,000 pixels" in str(caught.value)


def test_our_pixel_cap_applies_below_pillows(image_corpus: Path) -> None:
    data = (image_corpus / "photos" / "rocket.jpg").read_bytes()  # 640x427
    tight = PipelineOptions(limits=SafetyLimits(max_pixels=640 * 427 - 1))
    with pytest.raises(DecompressionBomb) as caught:
        ImagePipeline(tight).process(data)
    assert caught.value.size == (640, 427)
    ImagePipeline(PipelineOptions(limits=SafetyLimits(max_pixels=640 * 427))).process(data)


def test_byte_cap_is_checked_before_decoding() -> None:
    junk = b"\xff\xd8\xff" + b"\0" * 2000  # would be a corrupt JPEG, but it is refused by size first
    with pytest.raises(TooLarge) as caught:
        ImagePipeline(PipelineOptions(limits=SafetyLimits(max_bytes=1000))).process(junk)
    assert (caught.value.size, caught.value.limit) == (2003, 1000)


def test_allowed_formats_are_enforced_by_content(image_corpus: Path) -> None:
    png = (image_corpus / "bad" / "png_renamed.jpg").read_bytes()
    jpeg_only = PipelineOptions(limits=SafetyLimits(allowed_formats=frozenset({"jpeg"})))
    with pytest.raises(UnsupportedFormat, match="png"):
        ImagePipeline(jpeg_only).process(png)
    with pytest.raises(ConfigError):
        SafetyLimits(allowed_formats=frozenset({"tiff"}))


@pytest.mark.parametrize(
    ("head", "fmt"),
    [
        (b"\xff\xd8\xff\xe0", "jpeg"),
        (b"\x89PNG\r\n\x1a\n", "png"),
        (b"GIF89a", "gif"),
        (b"RIFF\0\0\0\0WEBPVP8 ", "webp"),
        (b"\0\0\0\x1cftypavif\0\0\0\0avifmif1", "avif"),
        (b"\0\0\0\x18ftypheic\0\0\0\0mif1heic", "heif"),
        (b"II*\0", "tiff"),
        (b"BM", "bmp"),
        (b"  <svg xmlns=", "svg"),
        (b"%PDF-1.7", "pdf"),
        (b"hello", None),
    ],
)
def test_sniff_format_by_magic_bytes(head: bytes, fmt: str | None) -> None:
    assert sniff_format(head + b"\0" * 32) == fmt


def test_avif_and_webp_uploads_are_accepted() -> None:
    rng = np.random.default_rng(1)
    im = Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    for fmt in ("AVIF", "WEBP"):
        buf = io.BytesIO()
        im.save(buf, fmt)
        result = ImagePipeline().process(buf.getvalue())
        assert (result.format, result.width, result.height) == (fmt.lower(), 160, 120)


def test_truncated_png_is_corrupt(image_corpus: Path) -> None:
    data = (image_corpus / "photos" / "chelsea.png").read_bytes()
    with pytest.raises(CorruptImage, match="png"):
        ImagePipeline().process(data[: len(data) // 2])


def test_errors_survive_pickling() -> None:
    """Batch mode "processes" sends errors across process boundaries."""
    for error in (
        TooLarge(10, 5),
        DecompressionBomb(100, 50, (10, 10)),
        EmptyFile(),
        UnsupportedFormat("tiff", frozenset({"jpeg"})),
        CorruptImage("png", "bad crc"),
        ProcessingFailed("MemoryError", "boom"),
    ):
        clone = pickle.loads(pickle.dumps(error))
        assert type(clone) is type(error)
        assert str(clone) == str(error)
        assert clone.__dict__ == error.__dict__


def test_describe_formats_names_each_allowed_format_once() -> None:
    assert describe_formats() == "JPEG, PNG, WebP, GIF or AVIF"
    assert describe_formats(frozenset({"png", "jpeg"})) == "JPEG or PNG"
    assert describe_formats(frozenset({"webp"})) == "WebP"
