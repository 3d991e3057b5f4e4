"""`perflab bench cdn [--json]`: the nginx edge against the origin it fronts, on real HTTP.

Stores the derivatives of the photo corpus (content-hashed keys), starts the origin
(uvicorn, in its own process so the client does not share its GIL) and a Debian nginx edge with
`proxy_cache` in front of it, on loopback ports in a temp dir. The same seeded Zipf-skewed request
sequence (a few popular images, a long tail) is then sent to the origin directly and through the
cold edge. Reports the edge hit ratio (from `X-Cache-Status`), latency p50/p95 per path, and
throughput with concurrent clients. Then the headline figures in `trials` interleaved trials (origin,
warm edge, origin, warm edge, ...) on slices of the sequence: p50 latency and throughput of each, with
the contract's median and 95 % CI (perflab/bench/contract.py).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from perflab.bench.contract import Result, cli, estimate, interleave, percentile_estimate
from perflab.cdn.edge import NginxEdge, find_nginx
from perflab.cdn.errors import EdgeUnavailable
from perflab.config import Settings
from perflab.errors import ServiceUnavailable
from perflab.images.pipeline import ImagePipeline
from perflab.images.storage import LocalStorage, store_processed
from perflab.lab.corpus import photo_paths
from perflab.lab.latency import LatencyHistogram
from perflab.net import free_port, http_ok, wait_until

ROOT_ENV = "PERFLAB_BENCH_MEDIA_ROOT"


def origin_app() -> Any:
    """uvicorn --factory target: the origin over the directory named by $PERFLAB_BENCH_MEDIA_ROOT."""
    from perflab.cdn.origin import make_origin_app

    return make_origin_app(Path(os.environ[ROOT_ENV]))


def _start_origin(root: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "perflab.bench.cdn:origin_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--lifespan",
            "off",
        ],
        env=os.environ | {ROOT_ENV: str(root)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    health = f"http://127.0.0.1:{port}/healthz"
    if wait_until(lambda: http_ok(health, timeout=0.5), timeout=20, alive=lambda: proc.poll() is None):
        return proc
    proc.kill()
    raise ServiceUnavailable("origin", f"http://127.0.0.1:{port}", "did not start", "see uvicorn's output")


def _sequence(keys: list[str], n: int, skew: float, seed: int) -> list[str]:
    """A seeded Zipf(skew) sequence over the keys (rank 1 = most popular)."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, len(keys) + 1) ** skew
    order = rng.permutation(len(keys))
    picks = rng.choice(len(keys), size=n, p=weights / weights.sum())
    return [keys[order[i]] for i in picks]


def _histogram(values: list[float]) -> LatencyHistogram:
    latency = LatencyHistogram()
    for ms in values:
        latency.record_ms(ms)
    return latency


def _p50_p95(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    latency = _histogram(values)
    return {"p50": round(latency.percentile_ms(50), 3), "p95": round(latency.percentile_ms(95), 3)}


def _sequential(base: str, paths: list[str]) -> tuple[list[float], Counter[str], list[str]]:
    latencies, statuses, cache = [], Counter[str](), []
    with httpx.Client(base_url=base, timeout=10) as client:
        for path in paths:
            start = time.perf_counter()
            r = client.get(path)
            latencies.append((time.perf_counter() - start) * 1000)
            statuses[str(r.status_code)] += 1
            cache.append(r.headers.get("x-cache-status", "-"))
    return latencies, statuses, cache


def _concurrent(base: str, paths: list[str], workers: int) -> float:
    chunks = [paths[i::workers] for i in range(workers)]

    def run(chunk: list[str]) -> None:
        with httpx.Client(base_url=base, timeout=10) as client:
            for path in chunk:
                client.get(path).raise_for_status()

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(run, chunks))
    return round(len(paths) / (time.perf_counter() - start), 1)


@dataclass(frozen=True)
class Config:
    requests: int = 3000
    skew: float = field(default=1.1, metadata={"help": "Zipf exponent of object popularity"})
    concurrency: int = 8
    seed: int = 7
    trials: int = field(default=5, metadata={"help": "interleaved trials of the headline figures (>= 5)"})


def run(settings: Settings, cfg: Config) -> Result:
    """The cold-edge pass (hit ratio; the old keys), then the headline figures in interleaved trials."""
    result = Result("cdn", asdict(cfg))
    legacy, trials = _measure(cfg)
    result.legacy = legacy
    for arm, runs in trials.items():
        result.estimates[f"{arm}_p50_ms"] = percentile_estimate([_histogram(lat) for lat, _ in runs], 50)
        result.estimates[f"{arm}_rps"] = estimate([rps for _, rps in runs])
    return result


def _measure(cfg: Config) -> tuple[dict[str, Any], dict[str, list[tuple[list[float], float]]]]:
    requests, skew, concurrency, seed = cfg.requests, cfg.skew, cfg.concurrency, cfg.seed
    if find_nginx() is None:
        raise EdgeUnavailable("nginx", "-", "nginx is not installed", "run `make sysdeps` as root")
    with tempfile.TemporaryDirectory(prefix="perflab-cdn-") as tmp:
        store = LocalStorage(Path(tmp) / "media")
        pipeline = ImagePipeline()
        keys: list[str] = []
        for path in photo_paths():
            keys += store_processed(store, pipeline.process(path.read_bytes())).values()
        paths = [f"/media/{k}" for k in _sequence(keys, requests, skew, seed)]
        origin_port = free_port()
        origin = _start_origin(store.root, origin_port)
        try:
            with NginxEdge(f"http://127.0.0.1:{origin_port}", Path(tmp) / "edge", free_port()) as edge:
                o_lat, o_status, _ = _sequential(f"http://127.0.0.1:{origin_port}", paths)
                e_lat, e_status, cache = _sequential(edge.url, paths)
                hits = [ms for ms, c in zip(e_lat, cache, strict=True) if c == "HIT"]
                misses = [ms for ms, c in zip(e_lat, cache, strict=True) if c != "HIT"]
                origin_rps = _concurrent(f"http://127.0.0.1:{origin_port}", paths, concurrency)
                edge_rps = _concurrent(edge.url, paths, concurrency)
                bases = {"origin": f"http://127.0.0.1:{origin_port}", "edge": edge.url}
                step = max(1, len(paths) // cfg.trials)

                def trial(arm: str) -> Any:
                    def go(i: int) -> tuple[list[float], float]:
                        part = paths[i * step : (i + 1) * step]
                        return _sequential(bases[arm], part)[0], _concurrent(bases[arm], part, concurrency)

                    return go

                trials = interleave({arm: trial(arm) for arm in bases}, cfg.trials)
        finally:
            origin.terminate()
            origin.wait(timeout=10)
    distinct = len(set(paths))
    return {
        "benchmark": "cdn",
        "objects": len(keys),
        "requests": requests,
        "distinct_requested": distinct,
        "zipf_skew": skew,
        "edge_hit_ratio": round(cache.count("HIT") / requests, 4),
        "edge_hit_ratio_ceiling": round(1 - distinct / requests, 4),  # every first request must miss
        "cache_status": dict(Counter(cache)),
        "http_status": {"origin": dict(o_status), "edge": dict(e_status)},
        "latency_ms": {
            "origin": _p50_p95(o_lat),
            "edge_hit": _p50_p95(hits),
            "edge_miss": _p50_p95(misses),
        },
        "throughput_rps": {"concurrency": concurrency, "origin": origin_rps, "edge_warm": edge_rps},
        "edge_vs_origin_p50": round(statistics.median(o_lat) / statistics.median(hits), 2) if hits else None,
    }, trials


def _render(result: Result) -> None:
    r = result.legacy
    lat = r["latency_ms"]
    print(f"{r['objects']} objects, {r['requests']} requests ({r['distinct_requested']} distinct)")
    print(f"edge hit ratio {r['edge_hit_ratio']:.3f} (ceiling {r['edge_hit_ratio_ceiling']:.3f})")
    for name in ("origin", "edge_hit", "edge_miss"):
        if lat[name]:
            print(f"  {name:10} p50 {lat[name]['p50']:7.3f} ms  p95 {lat[name]['p95']:7.3f} ms")
    rps = r["throughput_rps"]
    print(
        f"throughput at {rps['concurrency']} clients: origin {rps['origin']} req/s, edge {rps['edge_warm']} req/s"
    )
    for key, e in result.estimates.items():
        print(
            f"  {key:16} {e.median:9.3f}  95% CI [{e.ci95[0]:.3f}, {e.ci95[1]:.3f}]  trials {list(e.trials)}"
        )


def main(settings: Settings, argv: list[str]) -> int:
    return cli(settings, argv, Config, run, __doc__, name="cdn", render=_render)
