"""`perflab bench images [--json]`: the upload pipeline against pyvips, per core, on the photo corpus.

Throughput: our `ImagePipeline` (one worker; master + responsive set + thumbnail, plus the dominant
colours and BlurHash pyvips does not compute) against `VipsPipeline` (libvips with
`VIPS_CONCURRENCY=1`, the same derivatives from the same parents at the same encoder settings) on
the same in-memory images, in `rounds` (>= 5) interleaved trials (ours, pyvips, ours, pyvips, ...) in
this process. Each trial is a measured phase (`throughput_ours` / `throughput_pyvips`: CPU ms per
image of this process, from /proc, and the noise record). `throughput_ratio_vs_pyvips` is the median
of the per-trial ratios (ours / the pyvips trial beside it), with its 95 % CI; CPU time is reported
too, since the machine is shared and wall time carries other people's load.

Per format (jpeg, webp, avif): compression ratio (original bytes / master bytes), SSIM of every
derivative against a LANCZOS reference from a full-resolution decode (mean and min), images/s, for
ours and pyvips side by side. Batch: `process_batch` with threads against processes. The envelope is
perflab/bench/contract.py's; pass/fail lives in notebooks/slo.toml (`targets` reads it from there).
"""

from __future__ import annotations

import dataclasses
import io
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import PIL
from PIL import Image

from perflab.bench._vips_baseline import VipsPipeline, import_pyvips
from perflab.bench.contract import MIN_TRIALS, Phase, Result, cli, estimate, interleave
from perflab.config import Settings
from perflab.errors import ConfigError
from perflab.images.batch import default_workers, process_batch
from perflab.images.decode import read_source
from perflab.images.derivatives import MASTER, THUMBNAIL, Size, plan
from perflab.images.formats import OUTPUT_FORMATS
from perflab.images.pipeline import ImagePipeline, PipelineOptions, full_resolution, source_box
from perflab.images.quality import reference, ssim
from perflab.lab import slo
from perflab.lab.corpus import photo_paths
from perflab.lab.cpu import OwnProcess, Source
from perflab.lab.latency import LatencyHistogram
from perflab.lab.provenance import collect

Outputs = dict[str, tuple[bytes, int, int]]
RATIO_FIGURE = "images.throughput_ratio_vs_pyvips"  # the slo.toml figures `targets` reads its bounds from
SSIM_FIGURE = "images.ssim"


@dataclass(frozen=True)
class Config:
    rounds: int = field(
        default=MIN_TRIALS, metadata={"help": "interleaved throughput trials per pipeline (>= 5)"}
    )
    limit: int = field(default=0, metadata={"help": "use the first N photos only"})
    formats: str = field(default=",".join(OUTPUT_FORMATS), metadata={"help": "comma list (default all)"})
    format_sample: int = field(default=6, metadata={"help": "photos for the webp/avif passes"})
    ssim_sample: int = field(default=4, metadata={"help": "photos scored for SSIM per format"})
    batch: bool = field(
        default=True, metadata={"help": "threads-vs-processes batch figures (--no-batch skips)"}
    )
    workers: int = field(default=0, metadata={"help": "batch workers (default: perflab.images.batch's)"})

    def __post_init__(self) -> None:
        unknown = set(self.format_list) - set(OUTPUT_FORMATS)
        if unknown:
            raise ConfigError(f"unknown formats {sorted(unknown)} (known: {', '.join(OUTPUT_FORMATS)})")
        if self.rounds < MIN_TRIALS:
            raise ConfigError(
                f"--rounds must be >= {MIN_TRIALS} (every headline figure takes {MIN_TRIALS} trials)"
            )

    @property
    def format_list(self) -> list[str]:
        return [f.strip() for f in self.formats.split(",") if f.strip()]


@dataclasses.dataclass
class _Pass:
    wall_s: float
    cpu_s: float
    per_image_ms: list[float]
    outputs: list[Outputs]


def _ours(pipeline: ImagePipeline) -> Callable[[bytes], Outputs]:
    def run(data: bytes) -> Outputs:
        r = pipeline.process(data)
        return {d.name: (d.data, d.width, d.height) for d in r.derivatives}

    return run


def _run_pass(fn: Callable[[bytes], Outputs], datas: Sequence[bytes], keep: bool) -> _Pass:
    per_image, outputs = [], []
    wall, cpu = time.perf_counter(), time.process_time()
    for data in datas:
        start = time.perf_counter()
        out = fn(data)
        per_image.append((time.perf_counter() - start) * 1000)
        if keep:
            outputs.append(out)
    return _Pass(time.perf_counter() - wall, time.process_time() - cpu, per_image, outputs)


def _summary(passes: list[_Pass], n: int) -> dict[str, Any]:
    walls = [p.wall_s for p in passes]
    latency = LatencyHistogram()
    for p in passes:
        for ms in p.per_image_ms:
            latency.record_ms(ms)
    return {
        "images_per_s": round(n / statistics.median(walls), 3),
        "cpu_ms_per_image": round(statistics.median(p.cpu_s for p in passes) / n * 1000, 2),
        "rounds_images_per_s": [round(n / w, 3) for w in walls],
        "latency_ms": {
            "p50": round(latency.percentile_ms(50), 2),
            "p95": round(latency.percentile_ms(95), 2),
        },
    }


class _Quality:
    """SSIM of outputs against LANCZOS references from a full-resolution decode, references cached
    per (image, size, region) so ours and pyvips are scored against the very same pixels."""

    def __init__(self, options: PipelineOptions) -> None:
        self.options = options
        self._full: dict[int, Image.Image] = {}
        self._refs: dict[tuple[int, Size, Any], Image.Image] = {}

    def scores(self, index: int, data: bytes, outputs: Outputs, *, vips: bool = False) -> list[float]:
        """SSIM per output. libvips' `crop="centre"` takes the exact (fractional) centre, where ours
        crops at whole pixels of its parent: each is scored against the region it really shows."""
        if index not in self._full:
            _, source = read_source(data, self.options.limits)
            self._full[index] = full_resolution(data, source, self.options)
        full = self._full[index]
        sizes = {name: (w, h) for name, (_, w, h) in outputs.items()}
        steps = plan(sizes[MASTER], self.options.responsive_widths, self.options.thumbnail_size)
        out = []
        for name, (blob, w, h) in outputs.items():
            box = source_box(steps, sizes, name, full.size)
            if vips and name == THUMBNAIL:
                side = min(full.size)
                left, top = (full.width - side) / 2, (full.height - side) / 2
                box = (left, top, left + side, top + side)
            key = (index, (w, h), box)
            if key not in self._refs:
                self._refs[key] = reference(full, (w, h), box)
            out.append(ssim(blob, self._refs[key]))
        return out


def _format_figures(
    datas: Sequence[bytes], idx: Sequence[int], pass_: _Pass, scores: list[float], scored: int
) -> dict[str, Any]:
    outputs = pass_.outputs
    original = sum(len(datas[i]) for i in idx)
    master = sum(len(o[MASTER][0]) for o in outputs)
    total = sum(len(blob) for o in outputs for blob, _, _ in o.values())
    return {
        "compression_ratio": round(original / master, 3),
        "ssim": round(statistics.fmean(scores), 4) if scores else None,
        "ssim_min": round(min(scores), 4) if scores else None,
        "images_per_s": round(len(idx) / pass_.wall_s, 3),
        "cpu_ms_per_image": round(pass_.cpu_s / len(idx) * 1000, 1),
        "output_bytes": total,
        "images": len(idx),
        "ssim_images": scored,
    }


def _sources() -> dict[str, Source]:
    """Both pipelines run in this process (libvips' one thread included): its CPU per image."""
    return {"pipeline": OwnProcess(os.getpid())}


def _throughput_trials(
    result: Result, fns: dict[str, Callable[[bytes], Outputs]], datas: Sequence[bytes], rounds: int
) -> dict[str, list[_Pass]]:
    """`rounds` interleaved trials (ours, pyvips, ours, pyvips, ...), each a measured phase
    `throughput_<arm>`; the first trial of each arm keeps its outputs for the jpeg quality figures."""
    sources = _sources()

    def trial(arm: str) -> Callable[[int], _Pass]:
        def go(i: int) -> _Pass:
            with Phase(f"throughput_{arm}", sources) as ph:
                pass_ = _run_pass(fns[arm], datas, keep=(i == 0))
            result.add_phase(ph.finish(len(datas)))
            return pass_

        return go

    return interleave({arm: trial(arm) for arm in fns}, rounds)


def _targets(ratio: float, jpeg: dict[str, Any] | None, per_format: dict[str, Any]) -> dict[str, bool]:
    """The bench's quick verdicts, on slo.toml's bounds (the report's gates judge the same figures)."""
    ratio_min = slo.threshold(RATIO_FIGURE, profile="full")
    ssim_min = slo.threshold(SSIM_FIGURE)
    return {
        f"ratio>={ratio_min:g}": ratio >= ratio_min,
        f"ssim>={ssim_min:g}": bool(jpeg and jpeg["ssim"] is not None and jpeg["ssim"] >= ssim_min),
        "bytes_no_more_than_pyvips": all(v["bytes_vs_pyvips"] <= 1.0 for v in per_format.values()),
    }


def run(settings: Settings, cfg: Config) -> Result:
    """Throughput in interleaved trials (each a phase), quality per format, batch; one Result."""
    paths = photo_paths()
    if cfg.limit:
        paths = paths[: cfg.limit]
    formats = cfg.format_list
    result = Result("images", dataclasses.asdict(cfg), provenance=collect(settings))
    pyvips = import_pyvips(1)
    datas = [p.read_bytes() for p in paths]
    n = len(datas)
    base = PipelineOptions()
    ours_fn, vips_fn = _ours(ImagePipeline(base)), VipsPipeline(pyvips, base).process

    for fn in (ours_fn, vips_fn):  # warm-up: load codecs, fault in the libraries
        _run_pass(fn, datas[: min(3, n)], keep=False)
    passes = _throughput_trials(result, {"ours": ours_fn, "pyvips": vips_fn}, datas, cfg.rounds)
    ours_passes, vips_passes = passes["ours"], passes["pyvips"]
    noisy = result.noisy
    est = result.estimates
    est["ours_images_per_s"] = estimate([n / p.wall_s for p in ours_passes], noisy=noisy)
    est["pyvips_images_per_s"] = estimate([n / p.wall_s for p in vips_passes], noisy=noisy)
    pairs = list(zip(ours_passes, vips_passes, strict=True))
    est["throughput_ratio_vs_pyvips"] = estimate([v.wall_s / o.wall_s for o, v in pairs], noisy=noisy)
    est["cpu_ratio_vs_pyvips"] = estimate([v.cpu_s / o.cpu_s for o, v in pairs if o.cpu_s > 0])
    ours, vips = _summary(ours_passes, n), _summary(vips_passes, n)
    ratio = est["throughput_ratio_vs_pyvips"].median
    cpu_ratio = est["cpu_ratio_vs_pyvips"].median

    stages: dict[str, list[float]] = {}
    pipeline = ImagePipeline(base)
    for data in datas:
        for stage, ms in pipeline.process(data).timings_ms.items():
            stages.setdefault(stage, []).append(ms)

    step = max(1, n // max(1, cfg.format_sample))
    sample = list(range(0, n, step))[: cfg.format_sample]
    ssim_step = max(1, len(sample) // max(1, cfg.ssim_sample))
    ssim_idx = set(sample[::ssim_step][: cfg.ssim_sample])
    per_format: dict[str, Any] = {}
    for fmt in formats:
        opts = dataclasses.replace(base, format=fmt)  # type: ignore[arg-type]
        quality = _Quality(opts)
        if fmt == "jpeg":
            idx = list(range(n))
            o_pass, v_pass = ours_passes[0], vips_passes[0]
        else:
            idx = sample
            subset = [datas[i] for i in idx]
            o_pass = _run_pass(_ours(ImagePipeline(opts)), subset, keep=True)
            v_pass = _run_pass(VipsPipeline(pyvips, opts).process, subset, keep=True)
        figures = {}
        for label, pass_ in (("ours", o_pass), ("pyvips", v_pass)):
            scores = [
                s
                for i, out in zip(idx, pass_.outputs, strict=True)
                if i in ssim_idx
                for s in quality.scores(i, datas[i], out, vips=label == "pyvips")
            ]
            figures[label] = _format_figures(datas, idx, pass_, scores, len(ssim_idx & set(idx)))
        if fmt == "jpeg":  # the throughput trials' medians, not the first trial alone
            figures["ours"]["images_per_s"] = ours["images_per_s"]
            figures["pyvips"]["images_per_s"] = vips["images_per_s"]
        entry = figures["ours"] | {"pyvips": figures["pyvips"]}
        entry["bytes_vs_pyvips"] = round(
            figures["ours"]["output_bytes"] / figures["pyvips"]["output_bytes"], 4
        )
        per_format[fmt] = entry

    legacy: dict[str, Any] = {
        "throughput_ratio_vs_pyvips": round(ratio, 3),
        "cpu_ratio_vs_pyvips": round(cpu_ratio, 3),
        "per_format": per_format,
        "throughput": {"ours": ours, "pyvips": vips, "rounds": cfg.rounds, "workers": 1, "format": "jpeg"},
        "stages_ms_median": {k: round(statistics.median(v), 2) for k, v in stages.items()},
        "corpus": {
            "photos": n,
            "bytes": sum(len(d) for d in datas),
            "megapixels_median": round(statistics.median(_megapixels(d) for d in datas), 2),
            "format_sample": len(sample),
            "ssim_sample": len(ssim_idx),
        },
        "settings": {
            fmt: dataclasses.asdict(dataclasses.replace(base, format=fmt).encoding)  # type: ignore[arg-type]
            for fmt in formats
        },
        "versions": {
            "pillow": PIL.__version__,
            "libvips": ".".join(str(pyvips.version(i)) for i in range(3)),
        },
    }
    if cfg.batch:
        legacy["batch"] = _batch_figures(paths, cfg.workers or default_workers(), ours["images_per_s"])
    legacy["targets"] = _targets(ratio, per_format.get("jpeg"), per_format)
    result.legacy = legacy
    return result


def _megapixels(data: bytes) -> float:
    with Image.open(io.BytesIO(data)) as im:
        return im.width * im.height / 1e6


def _batch_figures(paths: Sequence[Path], workers: int, single_ips: float) -> dict[str, Any]:
    pipeline = ImagePipeline()
    out: dict[str, Any] = {"workers": workers, "images": len(paths)}
    for mode in ("threads", "processes"):
        start = time.perf_counter()
        items = process_batch(paths, pipeline, workers=workers, mode=mode, progress=False)
        elapsed = time.perf_counter() - start
        out[f"{mode}_images_per_s"] = round(len(paths) / elapsed, 3)
        out[f"{mode}_errors"] = sum(not i.ok for i in items)
    out["threads_speedup_vs_1_worker"] = round(out["threads_images_per_s"] / single_ips, 2)
    return out


def _print_table(result: Result) -> None:
    r = result.envelope()
    t = r["throughput"]
    print(f"corpus: {r['corpus']['photos']} photos, median {r['corpus']['megapixels_median']} MP")
    print(f"{'':10} {'img/s':>8} {'cpu ms/img':>11} {'p50 ms':>8} {'p95 ms':>8}")
    for label in ("ours", "pyvips"):
        s = t[label]
        print(
            f"{label:10} {s['images_per_s']:8.2f} {s['cpu_ms_per_image']:11.1f} "
            f"{s['latency_ms']['p50']:8.1f} {s['latency_ms']['p95']:8.1f}"
        )
    ratio = r["figures"]["throughput_ratio_vs_pyvips"]
    print(
        f"throughput ratio vs pyvips: {r['throughput_ratio_vs_pyvips']:.3f} 95% CI {ratio['ci95']} "
        f"trials {ratio['trials']} ({ratio['status']}; cpu {r['cpu_ratio_vs_pyvips']:.3f})"
    )
    for phase, cpu in r["cpu_ms_per_request"].items():
        noise = r["noise"][phase]
        print(f"{phase}: cpu ms/image {cpu['pipeline']}, outsiders max {noise['outsider_share_max']}, "
              f"noisy {noise['noisy']}")  # fmt: skip
    print(f"\n{'format':7} {'who':7} {'ratio':>7} {'ssim':>7} {'min':>7} {'img/s':>7} {'bytes':>10}")
    for fmt, f in r["per_format"].items():
        for label, s in (("ours", f), ("pyvips", f["pyvips"])):
            print(
                f"{fmt:7} {label:7} {s['compression_ratio']:7.2f} {s['ssim'] or 0:7.4f} {s['ssim_min'] or 0:7.4f} "
                f"{s['images_per_s']:7.2f} {s['output_bytes']:10d}"
            )
    if "batch" in r:
        print(f"\nbatch: {r['batch']}")
    print(f"stages (median ms): {r['stages_ms_median']}")
    print(f"targets: {r['targets']}")


def main(settings: Settings, argv: list[str]) -> int:
    return cli(settings, argv, Config, run, __doc__, name="images", render=_print_table)
