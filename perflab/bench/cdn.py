"""`perflab bench cdn [--json]`: the nginx edge against the origin it fronts, on real HTTP.

Stores the derivatives of the photo corpus (content-hashed keys), starts the origin
(uvicorn, in its own process so the client does not share its GIL) and a Debian nginx edge with
`proxy_cache` in front of it, on loopback ports in a temp dir. The same seeded Zipf-skewed request
sequence (a few popular images, a long tail) is then sent to the origin directly and through the
cold edge. Reports the edge hit ratio (from `X-Cache-Status`), latency p50/p95 per path, and
throughput with concurrent clients. Then the headline figures in `trials` interleaved trials (origin,
warm edge, origin, warm edge, ...) on slices of the sequence: p50 latency and throughput of each, with
the contract's median and 95 % CI (perflab/bench/contract.py).

`url_minting` (and the estimates `url_minting_*_ms`): CPU ms to mint the URLs of one 20-result search
response over the corpus's real derivative records, in interleaved trials: the service's `UrlMinter`
(stable expiry, remembered per item), `sign_each` (every URL HMAC-signed per response, its expiry
moving each second: the service before 2026-12-04), and `unsigned` (the same strings, no signature).
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
from perflab.cdn.signing import UrlSigner
from perflab.cdn.urls import UrlMinter, media_urls
from perflab.config import Settings
from perflab.errors import ServiceUnavailable
from perflab.images.pipeline import ImagePipeline
from perflab.images.storage import LocalStorage, derivative_record, store_processed
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
    legacy, trials, records = _measure(cfg)
    result.legacy = legacy
    for arm, runs in trials.items():
        result.estimates[f"{arm}_p50_ms"] = percentile_estimate([_histogram(lat) for lat, _ in runs], 50)
        result.estimates[f"{arm}_rps"] = estimate([rps for _, rps in runs])
    minting = _url_minting(records, cfg.trials)
    for arm, values in minting.items():
        result.estimates[f"url_minting_{arm}_ms"] = estimate(values)
    minter, each = statistics.median(minting["minter"]), statistics.median(minting["sign_each"])
    result.legacy["url_minting"] = {
        "unit": "CPU ms per 20-result response",
        "items": _RESPONSE_ITEMS,
        "derivatives_per_item": round(statistics.mean(len(r) for r in records), 1),
        "responses_per_trial": _MINT_RESPONSES,
        "median": {arm: round(statistics.median(v), 4) for arm, v in minting.items()},
        "sign_each_vs_minter": round(each / minter, 1) if minter else None,
    }
    return result


_RESPONSE_ITEMS = 20
_MINT_RESPONSES = 300


def _url_minting(records: list[list[dict[str, Any]]], trials: int) -> dict[str, list[float]]:
    """CPU ms per response of each way to mint a response's URLs, trials interleaved. The items are
    the corpus's records under distinct keys (a response's 20 results are 20 different media)."""
    secret = os.urandom(32)
    items = [
        [{**d, "key": f"{n:04d}/{d['key']}"} for d in records[n % len(records)]]
        for n in range(_RESPONSE_ITEMS)
    ]
    base = "https://cdn.example.com/media"
    minter = UrlMinter(base, UrlSigner(secret))
    each_signer = UrlSigner(secret)
    t0 = time.time()

    def arm(mint: Any) -> Any:
        def go(i: int) -> float:
            start = time.process_time()
            for r in range(_MINT_RESPONSES):
                now = t0 + i * _MINT_RESPONSES + r  # a response a second: sign_each's expiry moves
                for item in items:
                    mint(item, now)
            return (time.process_time() - start) * 1000 / _MINT_RESPONSES

        return go

    return interleave(
        {
            "minter": arm(lambda item, now: minter.urls(item, now=now)),
            "sign_each": arm(lambda item, now: media_urls(item, base, each_signer, now=now)),
            "unsigned": arm(lambda item, now: media_urls(item, base, None, now=now)),
        },
        trials,
    )


def _measure(
    cfg: Config,
) -> tuple[dict[str, Any], dict[str, list[tuple[list[float], float]]], list[list[dict[str, Any]]]]:
    requests, skew, concurrency, seed = cfg.requests, cfg.skew, cfg.concurrency, cfg.seed
    if find_nginx() is None:
        raise EdgeUnavailable("nginx", "-", "nginx is not installed", "run `make sysdeps` as root")
    with tempfile.TemporaryDirectory(prefix="perflab-cdn-") as tmp:
        store = LocalStorage(Path(tmp) / "media")
        pipeline = ImagePipeline()
        keys: list[str] = []
        # each photo's derivative records, as the service stores them
        records: list[list[dict[str, Any]]] = []
        for path in photo_paths():
            processed = pipeline.process(path.read_bytes())
            named = store_processed(store, processed)
            keys += named.values()
            records.append([derivative_record(d, named[d.name]) for d in processed.derivatives])
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
    return (
        {
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
            "edge_vs_origin_p50": round(statistics.median(o_lat) / statistics.median(hits), 2)
            if hits
            else None,
        },
        trials,
        records,
    )


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
