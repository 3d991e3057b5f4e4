"""`perflab bench search --json [--rows N]`: the search service over HTTP, warm and cold.

Against a real `perflab serve` (2 uvicorn workers) on a seeded library of N media in its own schema.
- cold: every request a query never seen (search-cache and embedding-cache miss: embed + vector search)
- warm: requests repeating primed (user, query) pairs (search-cache hits)
both at concurrency 8; throughput at concurrency 1, 8 and 32 on the warm mix; per-stage p95 from the
cold requests' Server-Timing headers. Percentiles come from HDR histograms.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import orjson

from perflab.cache import CacheManager, make_redis
from perflab.config import Settings
from perflab.db import SeedResult, seeded_email
from perflab.db.vocabulary import QueryVocabulary
from perflab.lab.harness import SeededService, seed_schema
from perflab.lab.latency import LatencyHistogram, LoadResult, run_closed
from perflab.servers import endpoints


@dataclass(frozen=True)
class SearchBenchConfig:
    rows: int = 100_000
    users: int = 200
    seed: int = 42
    serve_workers: int = 2
    cold_requests: int = 600
    warm_requests: int = 3000
    rps_requests: int = 1500
    concurrency: int = 8


def bench_settings(settings: Settings, rows: int) -> Settings:
    """A schema per library size (`<schema>_search_<rows>`), kept between runs: seeding is skipped when
    the same library is already there. Its own key prefix, so a bench never reads another's cache."""
    return settings.replace(
        db_schema=f"{settings.db_schema}_search_{rows}", key_prefix=f"{settings.key_prefix}bs{rows}"
    )


def prepare_library(settings: Settings, cfg: SearchBenchConfig, *, progress: bool = False) -> dict[str, Any]:
    """Seed (or find) the bench library; returns what was seeded and how long it took."""
    return _seeded(seed_schema(settings, media=cfg.rows, users=cfg.users, seed=cfg.seed, progress=progress))


def _seeded(result: SeedResult) -> dict[str, Any]:
    return {"created": result.created, "seconds": round(result.elapsed_s, 1), "largest_user": result.sizes[0]}


def clear_cache(settings: Settings) -> int:
    """Empty this bench's cache (its own key prefix) so the cold phase starts cold."""
    client = make_redis(settings.replace(redis_socket_timeout=5.0), endpoints(settings).redis_url)
    try:
        return CacheManager(client, prefix=settings.key_prefix, default_ttl=60).delete_pattern("*")
    finally:
        client.close()


class _Connection:
    """A keep-alive HTTP/1.1 connection signed in as one user. The standard library's client costs a
    quarter of httpx's CPU per request, and the client shares the machine with the server it measures."""

    def __init__(self, url: str, email: str) -> None:
        parts = urlsplit(url)
        self._conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=30)
        status, headers, body = self.request("POST", "/sessions", orjson.dumps({"email": email}))
        if status != 201:
            raise RuntimeError(f"sign-in as {email} failed: {status} {body[:200]!r}")
        self._cookie = headers["set-cookie"].split(";", 1)[0]

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if hasattr(self, "_cookie"):
            headers["Cookie"] = self._cookie
        self._conn.request(method, path, body=body, headers=headers)
        r = self._conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data

    def search(self, query: str, k: int = 20) -> tuple[int, dict[str, str], bytes]:
        return self.request("GET", "/search?" + urlencode({"q": query, "k": k}))

    def close(self) -> None:
        self._conn.close()


class _Clients:
    """One signed-in connection per thread, each as a different seeded user."""

    def __init__(self, url: str, users: int, seed: int) -> None:
        self.url = url
        self.users = users
        self._local = threading.local()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.all: list[_Connection] = []

    def get(self) -> _Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            with self._lock:
                user = self._rng.randint(1, self.users)
            conn = self._local.conn = _Connection(self.url, seeded_email(user))
            with self._lock:
                self.all.append(conn)
        return conn

    def close(self) -> None:
        for c in self.all:
            c.close()


def _parse_server_timing(header: str) -> dict[str, float]:
    out = {}
    for part in header.split(","):
        name, _, dur = part.strip().partition(";dur=")
        if dur:
            out[name] = float(dur)
    return out


def _search(
    clients: _Clients, query: Callable[[int], str], stages: dict[str, LatencyHistogram] | None
) -> Callable[[int], None]:
    def call(i: int) -> None:
        status, headers, body = clients.get().search(query(i))
        if status != 200:
            raise RuntimeError(f"search answered {status}: {body[:200]!r}")
        if stages is not None:
            for name, ms in _parse_server_timing(headers.get("server-timing", "")).items():
                stages.setdefault(name, LatencyHistogram()).record_ms(ms)

    return call


class SearchBench:
    """A running service on a seeded library, and the load phases the benchmark and notebooks share."""

    def __init__(
        self, settings: Settings, cfg: SearchBenchConfig, *, log: Callable[[str], None] = print
    ) -> None:
        self.settings = bench_settings(settings, cfg.rows)
        self.cfg = cfg
        self.log = log
        self.vocab = list(QueryVocabulary(cfg.seed).queries)
        self.warm_set = self.vocab[:50]
        self._cold_next = 0
        self._svc: SeededService | None = None
        self.seeded: dict[str, Any] = {}

    def __enter__(self) -> SearchBench:
        self.log(
            f"seeding {self.cfg.rows} media for {self.cfg.users} users (schema {self.settings.db_schema}) ..."
        )
        cfg = self.cfg
        # On the bench's own settings: the service embeds queries with the model the library was seeded with.
        self._svc = SeededService(
            self.settings, media=cfg.rows, users=cfg.users, seed=cfg.seed, workers=cfg.serve_workers,
            log=Path(self.settings.home) / "bench-search-serve.log",
        ).start()  # fmt: skip
        assert self._svc.seeded is not None
        self.seeded = _seeded(self._svc.seeded)
        clear_cache(self.settings)
        warmup = _Clients(self.url, self.cfg.users, self.cfg.seed)
        run_closed(_search(warmup, lambda i: f"warmup query {i}", None), concurrency=4, requests=32)
        warmup.close()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._svc is not None:
            self._svc.stop()

    @property
    def url(self) -> str:
        assert self._svc is not None
        return self._svc.url

    def embedder(self) -> str:
        return str(httpx.get(self.url + "/health", params={"detailed": "true"}).json().get("embedder"))

    def _cold_queries(self, n: int) -> list[str]:
        """Queries never sent before in this bench (suffixes keep them distinct past the vocabulary)."""
        v, start = self.vocab, self._cold_next
        self._cold_next += n
        return [v[i % len(v)] + (f" {v[(i * 7 + i // len(v)) % len(v)]}" if i >= len(v) else "")
                for i in range(start, start + n)]  # fmt: skip

    def cold(
        self, concurrency: int, requests: int, stages: dict[str, LatencyHistogram] | None = None
    ) -> LoadResult:
        """Every request a new query: search-cache and embedding-cache misses (embed + vector search)."""
        queries = self._cold_queries(requests)
        clients = _Clients(self.url, self.cfg.users, self.cfg.seed + 1000 + self._cold_next)
        try:
            return run_closed(_search(clients, lambda i: queries[i], stages), concurrency=concurrency,
                              requests=requests, keep_samples=True)  # fmt: skip
        finally:
            clients.close()

    def warm(self, concurrency: int, requests: int) -> LoadResult:
        """Each client's user repeats a primed set of popular queries: search-cache hits."""
        clients = _Clients(self.url, self.cfg.users, self.cfg.seed + concurrency)
        ws = self.warm_set
        try:
            run_closed(_search(clients, lambda i: ws[i % len(ws)], None), concurrency=concurrency,
                       requests=len(ws) * concurrency * 2)  # fmt: skip
            return run_closed(_search(clients, lambda i: ws[i % len(ws)], None), concurrency=concurrency,
                              requests=requests, keep_samples=True)  # fmt: skip
        finally:
            clients.close()


def run_search_bench(
    settings: Settings, cfg: SearchBenchConfig, *, log: Callable[[str], None] = print
) -> dict[str, Any]:
    out: dict[str, Any] = {"rows": cfg.rows, "users": cfg.users, "serve_workers": cfg.serve_workers,
                           "concurrency": cfg.concurrency}  # fmt: skip
    stages: dict[str, LatencyHistogram] = {}
    with SearchBench(settings, cfg, log=log) as bench:
        out["seeded"] = bench.seeded
        out["embedder"] = bench.embedder()
        log(f"cold: {cfg.cold_requests} requests at concurrency {cfg.concurrency}")
        cold = bench.cold(cfg.concurrency, cfg.cold_requests, stages)
        log(f"warm: {cfg.warm_requests} requests at concurrency {cfg.concurrency}")
        warm = bench.warm(cfg.concurrency, cfg.warm_requests)
        rps = {}
        for c in (1, 8, 32):
            rps[c] = bench.warm(c, cfg.rps_requests)
            log(f"rps c={c}: {rps[c].throughput:.0f}/s")
    ws, cs = warm.histogram.summary(), cold.histogram.summary()
    out.update({
        "warm_p50_ms": ws["p50_ms"], "warm_p95_ms": ws["p95_ms"], "warm_p99_ms": ws["p99_ms"],
        "cold_p50_ms": cs["p50_ms"], "cold_p95_ms": cs["p95_ms"], "cold_p99_ms": cs["p99_ms"],
        "rps_c1": round(rps[1].throughput, 1), "rps_c8": round(rps[8].throughput, 1),
        "rps_c32": round(rps[32].throughput, 1),
        "stage_p95_ms": {k: h.percentile_ms(95) for k, h in sorted(stages.items())},
        "stage_p50_ms": {k: h.percentile_ms(50) for k, h in sorted(stages.items())},
        "errors": warm.errors + cold.errors + sum(r.errors for r in rps.values()),
        "samples": {"warm": warm.histogram.count, "cold": cold.histogram.count},
        "p95_ms_c32": rps[32].histogram.percentile_ms(95),
    })  # fmt: skip
    return out


def main(settings: Settings, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="perflab bench search", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="media in the seeded library")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cold", type=int, default=600, help="cold requests")
    parser.add_argument("--warm", type=int, default=3000, help="warm requests")
    parser.add_argument("--serve-workers", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    cfg = SearchBenchConfig(rows=args.rows, users=args.users, seed=args.seed, cold_requests=args.cold,
                            warm_requests=args.warm, serve_workers=args.serve_workers)  # fmt: skip
    import sys

    result = run_search_bench(settings, cfg, log=lambda m: print(m, file=sys.stderr))
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>16}: {v}")
    return 0
