"""`perflab bench images` keeps its JSON contract and follows the measurement contract (the figures
themselves are measured, not tested)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perflab.bench import images as bench
from perflab.config import Settings
from perflab.errors import ConfigError


def test_bench_json_contract(
    image_corpus: Path,
    base_settings: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("pyvips", reason="the baseline needs pyvips (the lab extra) and libvips42")
    small = [image_corpus / "photos" / "rocket.jpg", image_corpus / "photos" / "chelsea.png"]
    monkeypatch.setattr(bench, "photo_paths", lambda: small)
    args = ["--json", "--rounds", "5", "--format-sample", "1", "--ssim-sample", "1", "--no-batch"]
    assert bench.main(base_settings, args) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # one JSON object on one line, like every bench
    result = json.loads(out)
    # the old flat keys
    assert result["throughput_ratio_vs_pyvips"] > 0
    assert set(result["per_format"]) == {"jpeg", "webp", "avif"}
    for fmt, figures in result["per_format"].items():
        for who in (figures, figures["pyvips"]):
            assert who["compression_ratio"] > 1, fmt
            assert 0.5 < who["ssim"] <= 1.0, fmt
            assert who["images_per_s"] > 0, fmt
    assert result["throughput"]["pyvips"]["images_per_s"] > 0
    assert result["corpus"]["photos"] == 2
    assert set(result["targets"]) == {"ratio>=1.25", "ssim>=0.95", "bytes_no_more_than_pyvips"}
    # the contract beside them: 5 interleaved trials per arm, each a phase with CPU and noise
    assert result["benchmark"] == "images" and result["contract"] == 1
    ratio = result["figures"]["throughput_ratio_vs_pyvips"]
    assert len(ratio["trials"]) == 5 and ratio["status"] in ("ok", "noisy")
    assert result["ci95"]["throughput_ratio_vs_pyvips"][0] <= ratio["median"]
    # the flat key rounds the exact median to 3 places, the figure record rounds it on its own: they can
    # differ by one in the last place (1.1675 -> 1.168 or 1.167)
    assert result["throughput_ratio_vs_pyvips"] == pytest.approx(ratio["median"], abs=0.001)
    assert len(result["trials"]["ours_images_per_s"]) == len(result["trials"]["pyvips_images_per_s"]) == 5
    for arm in ("throughput_ours", "throughput_pyvips"):
        assert result["cpu_ms_per_request"][arm]["pipeline"] > 0  # CPU ms per image, from /proc
        assert len(result["noise"][arm]["outsider_share"]) == 5
    assert result["provenance"]["python"]


def test_bad_config_is_a_typed_error() -> None:
    with pytest.raises(ConfigError, match="rounds must be >= 5"):
        bench.Config(rounds=3)
    with pytest.raises(ConfigError, match="unknown formats"):
        bench.Config(formats="jpeg,gif")
