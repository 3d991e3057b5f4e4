"""`perflab bench cdn [--json]`: the nginx edge against the origin it fronts, on real HTTP.

Stores the derivatives of the photo corpus (content-hashed keys), starts the origin
(uvicorn, in its own process so the client does not share its GIL) and a Debian nginx edge with
`proxy_cache` in front of it, on loopback ports in a temp dir. The same seeded Zipf-skewed request
sequence (a few popular images, a long tail) is then sent to the origin directly and through the
cold edge. Reports the edge hit ratio (from `X-Cache-Status`), latency p50/p95 per path, and
throughput with concurrent clients.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

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


def _p50_p95(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    latency = LatencyHistogram()
    for ms in values:
        latency.record_ms(ms)
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


def run(requests: int, skew: float, concurrency: int, seed: int) -> dict[str, Any]:
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
    }


def main(settings: Settings, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="perflab bench cdn", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--skew", type=float, default=1.1, help="Zipf exponent of object popularity")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    result = run(args.requests, args.skew, args.concurrency, args.seed)
    if args.json:
        print(json.dumps(result))
    else:
        lat = result["latency_ms"]
        print(
            f"{result['objects']} objects, {result['requests']} requests ({result['distinct_requested']} distinct)"
        )
        print(
            f"edge hit ratio {result['edge_hit_ratio']:.3f} (ceiling {result['edge_hit_ratio_ceiling']:.3f})"
        )
        for name in ("origin", "edge_hit", "edge_miss"):
            if lat[name]:
                print(f"  {name:10} p50 {lat[name]['p50']:7.3f} ms  p95 {lat[name]['p95']:7.3f} ms")
        rps = result["throughput_rps"]
        print(
            f"throughput at {rps['concurrency']} clients: origin {rps['origin']} req/s, edge {rps['edge_warm']} req/s"
        )
    return 0
