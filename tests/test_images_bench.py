"""`perflab bench images` keeps its JSON contract (the figures themselves are measured, not tested)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perflab.bench import images as bench


def test_bench_json_contract(
    image_corpus: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pyvips", reason="the baseline needs pyvips (the lab extra) and libvips42")
    small = [image_corpus / "photos" / "rocket.jpg", image_corpus / "photos" / "chelsea.png"]
    monkeypatch.setattr(bench, "photo_paths", lambda: small)
    args = ["--json", "--rounds", "1", "--format-sample", "1", "--ssim-sample", "1", "--no-batch"]
    assert bench.main(None, args) == 0  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # one JSON object on one line, like every bench
    result = json.loads(out)
    assert result["throughput_ratio_vs_pyvips"] > 0
    assert set(result["per_format"]) == {"jpeg", "webp", "avif"}
    for fmt, figures in result["per_format"].items():
        for who in (figures, figures["pyvips"]):
            assert who["compression_ratio"] > 1, fmt
            assert 0.5 < who["ssim"] <= 1.0, fmt
            assert who["images_per_s"] > 0, fmt
    assert result["throughput"]["pyvips"]["images_per_s"] > 0
    assert result["corpus"]["photos"] == 2
