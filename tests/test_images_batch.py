"""Batches: every item gets a result or its typed error, in input order; originals are never touched."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from perflab.errors import ConfigError
from perflab.images import (
    CorruptImage,
    EmptyFile,
    ImagePipeline,
    PipelineOptions,
    SafetyLimits,
    TooLarge,
    UnreadableFile,
    UnsupportedFormat,
)
from perflab.images.batch import process_batch


def _digests(paths: list[Path]) -> dict[Path, tuple[str, int]]:
    return {p: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in paths}


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_mixed_batch_reports_each_item(image_corpus: Path, tmp_path: Path, mode: str) -> None:
    good = [image_corpus / "photos" / n for n in ("rocket.jpg", "chelsea.png", "flower.jpg")]
    bad = [image_corpus / "bad" / n for n in ("truncated.jpg", "empty.jpg", "text.jpg")]
    sources: list[Path | bytes] = [good[0], bad[0], good[1], bad[1], tmp_path / "missing.jpg", bad[2]]
    sources.append(good[2].read_bytes())
    before = _digests(good + bad)
    items = process_batch(sources, ImagePipeline(), workers=2, mode=mode, progress=False)  # type: ignore[arg-type]
    assert [i.index for i in items] == list(range(len(sources)))
    expected = [None, CorruptImage, None, EmptyFile, UnreadableFile, UnsupportedFormat, None]
    for item, error in zip(items, expected, strict=True):
        if error is None:
            assert item.ok and item.result is not None and item.error is None
        else:
            assert isinstance(item.error, error) and item.result is None, item
    assert items[0].result is not None and items[0].result.filename == "rocket.jpg"
    assert items[6].name == "<bytes #6>" and items[6].result is not None
    assert _digests(good + bad) == before  # originals neither modified nor touched


def test_oversized_file_is_refused_without_reading(image_corpus: Path) -> None:
    path = image_corpus / "photos" / "rocket_4032.jpg"
    pipeline = ImagePipeline(PipelineOptions(limits=SafetyLimits(max_bytes=1000)))
    [item] = process_batch([path], pipeline, workers=1, progress=False)
    assert isinstance(item.error, TooLarge) and item.error.size == path.stat().st_size


def test_batch_arguments_are_validated(image_corpus: Path) -> None:
    with pytest.raises(ConfigError):
        process_batch([], ImagePipeline(), workers=0)
    with pytest.raises(ConfigError):
        process_batch([], ImagePipeline(), mode="fibers")  # type: ignore[arg-type]
    assert process_batch([], ImagePipeline(), progress=False) == []
