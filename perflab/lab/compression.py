"""Compression ratio and quality per output format and quality setting, for notebook 03.

Each point runs the real upload pipeline (`ImagePipeline` with `compute_ssim`) over the same photos:
compression ratio = original bytes / master bytes, SSIM of every derivative against the source at
the same size, and throughput. Throughput against pyvips is `perflab bench images` (perflab.bench.images).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from perflab.images import ImagePipeline, PipelineOptions
from perflab.images.formats import OutputFormat


def quality_sweep(
    paths: Sequence[Path], formats: Sequence[OutputFormat], qualities: Sequence[int]
) -> list[dict[str, Any]]:
    """One row per (format, quality): ratio, master and all-derivative SSIM, bytes, images/s."""
    datas = [p.read_bytes() for p in paths]
    rows = []
    for fmt in formats:
        for q in qualities:
            pipeline = ImagePipeline(PipelineOptions(format=fmt, quality=q, compute_ssim=True))
            ratios, master_ssim, all_ssim, out_bytes, encode_ms = [], [], [], 0, []
            t0 = time.perf_counter()
            for data in datas:
                image = pipeline.process(data)
                ratios.append(image.compression_ratio)
                if image.master.ssim is not None:
                    master_ssim.append(image.master.ssim)
                all_ssim += [d.ssim for d in image.derivatives if d.ssim is not None]
                out_bytes += image.output_bytes
                encode_ms.append(image.timings_ms.get("encode", 0.0))
            wall = time.perf_counter() - t0
            rows.append({
                "format": fmt,
                "quality": q,
                "compression_ratio": round(statistics.fmean(ratios), 3),
                "master_ssim": round(statistics.fmean(master_ssim), 4) if master_ssim else None,
                "min_ssim": round(min(all_ssim), 4) if all_ssim else None,
                "output_kb_per_image": round(out_bytes / len(datas) / 1024, 1),
                "encode_ms_per_image": round(statistics.fmean(encode_ms), 1),
                "images_per_s_with_ssim": round(len(datas) / wall, 3),
            })  # fmt: skip
    return rows
