"""`perflab bench embed [--json]`: MiniLM on ONNX int8 against ONNX fp32 against torch, side by side.

One process, the three models loaded and warmed first, then in each of `trials` rounds every
(model, mode) pair once, interleaved: single query, batch of 8, batch of 32. Each trial is a measured
phase (CPU ms per text of this process, the machine's noise and load). Latency per call goes into a
LatencyHistogram; p50/p95 per trial, median and 95 % CI over trials. The speedup of int8 over torch
is taken per trial (the two ran back to back) and summarized the same way. All models get the same
number of intra-op threads (`--threads`, 1 by default: one per service worker). Texts are the seeded
queries (single) and captions (batches); the cosine of each model's query vectors to torch's is there
too, so a speedup is never quoted without its quality.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from perflab.bench.contract import Phase, Result, cli, estimate, interleave, percentile_estimate
from perflab.config import Settings
from perflab.db.seed import generate_library
from perflab.db.vocabulary import QueryVocabulary
from perflab.embed.base import Embedder
from perflab.embed.minilm import MiniLMEmbedder
from perflab.embed.onnx import OnnxMiniLMEmbedder, models_dir
from perflab.lab.cpu import OwnProcess
from perflab.lab.latency import LatencyHistogram
from perflab.lab.provenance import collect

MODES = {"single": 1, "batch8": 8, "batch32": 32}


@dataclass(frozen=True)
class Config:
    queries: int = field(default=1000, metadata={"help": "single-query calls per model per trial"})
    batches8: int = field(default=100, metadata={"help": "batch-of-8 calls per model per trial"})
    batches32: int = field(default=30, metadata={"help": "batch-of-32 calls per model per trial"})
    trials: int = field(default=5, metadata={"help": "trials per figure (>= 5)"})
    threads: int = field(default=1, metadata={"help": "intra-op threads for every model"})


@dataclass
class _Trial:
    histogram: LatencyHistogram
    cpu_ms_per_text: float | None


def _models(settings: Settings, threads: int) -> dict[str, Embedder]:
    import torch

    torch.set_num_threads(threads)
    directory = models_dir(settings.home)
    return {
        "onnx_int8": OnnxMiniLMEmbedder(directory, quantized=True, threads=threads),
        "onnx_fp32": OnnxMiniLMEmbedder(directory, quantized=False, threads=threads),
        "torch": MiniLMEmbedder(),
    }


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)  # stdout carries the one JSON line


def run(settings: Settings, cfg: Config, *, log: Callable[[str], None] = _log) -> Result:
    result = Result("embed", asdict(cfg), provenance=collect(settings))
    load_before = os.getloadavg()
    models = _models(settings, cfg.threads)
    for name, model in models.items():
        t0 = time.perf_counter()
        model.warm()
        log(f"{name}: loaded and warmed in {time.perf_counter() - t0:.1f} s")
    queries = list(QueryVocabulary(0).queries)
    captions = sorted({m.media.caption or "" for m in generate_library(media=4000, users=10, seed=5).media})
    calls = {"single": cfg.queries, "batch8": cfg.batches8, "batch32": cfg.batches32}
    sources = {"client": OwnProcess(os.getpid())}

    def trial(name: str, mode: str) -> Callable[[int], _Trial]:
        model, size, texts = models[name], MODES[mode], queries if mode == "single" else captions

        def go(i: int) -> _Trial:
            hist = LatencyHistogram()
            start = (i * calls[mode] * size) % len(texts)
            batches = [
                [texts[(start + c * size + j) % len(texts)] for j in range(size)] for c in range(calls[mode])
            ]
            with Phase(f"{name}_{mode}", sources) as ph:
                for batch in batches:
                    t0 = time.perf_counter_ns()
                    model.embed(batch)
                    hist.record_ns(time.perf_counter_ns() - t0)
            record = ph.finish(calls[mode] * size)  # per text
            result.add_phase(record)
            log(f"trial {i + 1}/{cfg.trials} {name:9} {mode:7}: p95 {hist.percentile_ms(95):7.2f} ms")
            return _Trial(hist, record.cpu_ms_per_request["client"])

        return go

    arms = {f"{name}_{mode}": trial(name, mode) for mode in MODES for name in models}
    runs = interleave(arms, cfg.trials)
    for key, trials in runs.items():
        noisy = result.phase_noisy(key)
        hists = [t.histogram for t in trials]
        for p in (50, 95):
            result.estimates[f"{key}_p{p}_ms"] = percentile_estimate(hists, p, noisy=noisy)
        cpu = [t.cpu_ms_per_text for t in trials]
        if all(c is not None for c in cpu):
            result.estimates[f"{key}_cpu_ms_per_text"] = estimate([float(c or 0.0) for c in cpu], noisy=noisy)
    for mode in MODES:
        for p in (50, 95):
            pairs = zip(runs[f"torch_{mode}"], runs[f"onnx_int8_{mode}"], strict=True)
            result.estimates[f"speedup_int8_vs_torch_{mode}_p{p}"] = estimate(
                [t.histogram.percentile_ms(p) / q.histogram.percentile_ms(p) for t, q in pairs]
            )
    reference = models["torch"].embed(queries[:500])
    quality = {}
    for name in ("onnx_int8", "onnx_fp32"):
        cos = (models[name].embed(queries[:500]) * reference).sum(axis=1)
        quality[name] = {
            "cosine_mean": round(float(np.mean(cos)), 5),
            "cosine_min": round(float(cos.min()), 5),
        }
    legacy: dict[str, Any] = {k: e.median for k, e in result.estimates.items()}
    legacy.update({
        "models": {name: m.model_name for name, m in models.items()},
        "quality_vs_torch": quality,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    })  # fmt: skip
    result.legacy = legacy
    return result


def main(settings: Settings, argv: list[str]) -> int:
    return cli(settings, argv, Config, run, __doc__)
