"""`perflab bench search --json [--rows N]`: the search service over HTTP, warm and cold.

Against a real `perflab serve` (2 uvicorn workers) on a seeded library of N media in its own schema.
- cold: every request a query never seen (search-cache and embedding-cache miss: embed + vector search)
- warm: requests repeating primed (user, query) pairs (search-cache hits)
both at concurrency 8, in `trials` interleaved trials (cold, warm, cold, warm, ...), each a measured
phase (CPU ms per request of server / client / Redis / PostgreSQL, and a noise record); throughput at
concurrency 1, 8 and 32 on the warm mix (interleaved trials too); per-stage p95 from the cold requests'
Server-Timing headers. Percentiles come from HDR histograms; the envelope is perflab/bench/contract.py's.
- open: cold queries at a fixed arrival rate (`--open-rate`, default 40/s), latency from each request's
  intended send time, so a stall shows in the tail instead of slowing the client down (a closed loop hides
  it); `trials` trials of `--open-requests`, and `open_cold_p99_pooled_ms` over all of their samples.
"""

from __future__ import annotations

import http.client
import random
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import orjson

from perflab.bench.contract import Phase, PhaseRecord, Result, cli, estimate, interleave, percentile_estimate
from perflab.cache import CacheManager, make_redis
from perflab.config import Settings
from perflab.db import SeedResult, connect, forget_uploads, seeded_email
from perflab.db.vocabulary import QueryVocabulary
from perflab.lab.cpu import Source, lab_sources, settle
from perflab.lab.harness import SeededService, ServiceProcess, seed_schema
from perflab.lab.latency import LatencyHistogram, LoadResult, run_closed, run_open
from perflab.lab.provenance import collect
from perflab.servers import endpoints


@dataclass(frozen=True)
class Config:
    rows: int = field(default=100_000, metadata={"help": "media in the seeded library"})
    users: int = 200
    seed: int = 42
    serve_workers: int = 2
    cold_requests: int = field(default=1000, metadata={"flag": "--cold", "help": "cold requests per trial"})
    warm_requests: int = field(default=2000, metadata={"flag": "--warm", "help": "warm requests per trial"})
    rps_requests: int = field(default=400, metadata={"help": "requests per throughput trial"})
    concurrency: int = 8
    trials: int = field(default=5, metadata={"help": "trials per figure (>= 5)"})
    open_rate: float = field(default=40.0, metadata={"help": "open model: cold requests/s (0: skip)"})
    open_requests: int = field(default=2000, metadata={"help": "open model: cold requests per trial"})


SearchBenchConfig = Config  # the name notebooks and tests know


def bench_settings(settings: Settings, rows: int) -> Settings:
    """A schema per library size (`<schema>_search_<rows>`), kept between runs: seeding is skipped when
    the same library is already there. Its own key prefix, so a bench never reads another's cache."""
    return settings.replace(
        db_schema=f"{settings.db_schema}_search_{rows}", key_prefix=f"{settings.key_prefix}bs{rows}"
    )


def prepare_library(settings: Settings, cfg: Config, *, progress: bool = False) -> dict[str, Any]:
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
    """One signed-in connection per thread, each as a different seeded user. A load run's threads
    are new each run: `rewind()` (between runs) hands the next run's threads the connections, and so
    the users, of the run before, in order, instead of drawing new users."""

    def __init__(self, url: str, users: int, seed: int) -> None:
        self.url = url
        self.users = users
        self._local = threading.local()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.all: list[_Connection] = []
        self._reuse: list[_Connection] = []

    def get(self) -> _Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            with self._lock:
                conn = self._reuse.pop(0) if self._reuse else None
            self._local.conn = conn = conn or self._new()
        return conn

    def _new(self) -> _Connection:
        """A connection signed in as a user drawn from this client's generator."""
        with self._lock:
            user = self._rng.randint(1, self.users)
        conn = _Connection(self.url, seeded_email(user))
        with self._lock:
            self.all.append(conn)
        return conn

    def sign_in(self, n: int) -> None:
        """Sign in `n` users now, for the next run's threads (an open run's clock starts before its
        first request: a sign-in inside it would be charged to the requests behind it)."""
        for _ in range(n):
            self._new()
        self.rewind()

    def rewind(self) -> None:
        """Call with no run in flight: the next threads take the existing connections, first first."""
        with self._lock:
            self._reuse = list(self.all)

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

    def __init__(self, settings: Settings, cfg: Config, *, log: Callable[[str], None] = print) -> None:
        self.settings = bench_settings(settings, cfg.rows)
        self.cfg = cfg
        self.log = log
        self.vocab = list(QueryVocabulary(cfg.seed).queries)
        self.warm_set = self.vocab[:50]
        self._cold_next = 0
        self._svc: SeededService | None = None
        self._sources: dict[str, Source] = {}
        self._primed: set[tuple[str, int]] = set()
        self._extra: list[ServiceProcess] = []
        self._url_sources: dict[str, dict[str, Source]] = {}  # extra services' CPU sources, by URL
        self.seeded: dict[str, Any] = {}
        self.last_phase: PhaseRecord | None = None  # CPU and noise of the last cold()/warm() call

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
        assert self._svc.process is not None and self._svc.process.proc is not None
        self._sources = lab_sources(self.settings, self._svc.process.proc.pid)
        warmup = _Clients(self.url, self.cfg.users, self.cfg.seed)
        run_closed(_search(warmup, lambda i: f"warmup query {i}", None), concurrency=4, requests=32)
        warmup.close()
        return self

    def _start_service(self, extra_env: dict[str, str]) -> ServiceProcess:
        """Another `perflab serve` on the bench's settings (the library's embedder), plus `extra_env`."""
        log_path = Path(self.settings.home) / "bench-search-serve.log"
        return ServiceProcess(
            self.settings, workers=self.cfg.serve_workers, env=extra_env, log=log_path
        ).start()

    def extra_service(self, extra_env: dict[str, str]) -> str:
        """Another service on the same library and cache, started with `extra_env` (e.g. a lab knob);
        its URL, to pass to warm()/cold(). Stopped with the bench."""
        svc = self._start_service(extra_env)
        self._extra.append(svc)
        assert svc.proc is not None
        # its CPU is the server's when load goes to it, and never an outsider's in the noise record
        self._url_sources[svc.url] = lab_sources(self.settings, svc.proc.pid)
        return svc.url

    def _sources_of(self, url: str) -> dict[str, Source]:
        """The CPU sources of the service at `url`: the bench's own, or an extra service's."""
        return self._url_sources.get(url, self._sources)

    def __exit__(self, *exc: object) -> None:
        for svc in [*self._extra, self._svc]:
            if svc is not None:
                svc.stop()
        # A load test on this library uploads as seeded users: take that back, so the next run (this
        # bench, notebook 02 or 05) finds the library it seeded instead of a SeedConflict.
        with connect(self.settings, endpoints(self.settings).database_url) as conn:
            forget_uploads(conn)

    def wait_answering(self, url: str, timeout_s: float = 600.0) -> None:
        """Until one search on `url` answers: a worker's first search loads the embedding model, which
        on a saturated machine can outlast a request's 30 s timeout."""
        import time

        deadline = time.monotonic() + timeout_s
        while True:
            clients = _Clients(url, self.cfg.users, self.cfg.seed)
            try:
                _search(clients, lambda i: "wait until answering", None)(0)
                return
            except (OSError, RuntimeError):
                if time.monotonic() > deadline:
                    raise
            finally:
                clients.close()

    def phase(self, name: str) -> Phase:
        """A measured phase around load this process drives by other means (e.g. Locust workers, its
        children): client CPU is this process's tree without the service."""
        assert self._svc is not None and self._svc.process is not None
        assert self._svc.process.proc is not None
        return Phase(name, lab_sources(self.settings, self._svc.process.proc.pid, client_tree=True))

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
        self,
        concurrency: int,
        requests: int,
        stages: dict[str, LatencyHistogram] | None = None,
        *,
        settled: bool = False,
        rate_per_s: float | None = None,
        url: str | None = None,
    ) -> LoadResult:
        """Every request a new query: search-cache and embedding-cache misses (embed + vector search).
        `settled`: first wait until the service is idle (see perflab.lab.cpu.settle). `rate_per_s`: the
        open model instead (phase `open_cold`): requests due at that fixed rate, each latency from its
        due time, at most `concurrency` in flight (signed in before the clock starts). `url`: an
        `extra_service` instead of the bench's own (its queries are new too: the two share a cache)."""
        url = url or self.url
        queries = self._cold_queries(requests)
        clients = _Clients(url, self.cfg.users, self.cfg.seed + 1000 + self._cold_next)
        call = _search(clients, lambda i: queries[i], stages)
        try:
            if rate_per_s is not None:
                clients.sign_in(concurrency)
            sources = self._sources_of(url)
            if settled:
                settle(sources["server"])
            with Phase("cold" if rate_per_s is None else "open_cold", sources) as ph:
                if rate_per_s is None:
                    res = run_closed(call, concurrency=concurrency, requests=requests, keep_samples=True)
                else:
                    res = run_open(call, rate_per_s=rate_per_s, duration_s=requests / rate_per_s,
                                   max_concurrency=concurrency)  # fmt: skip
            self.last_phase = ph.finish(res.requests)
            return res
        finally:
            clients.close()

    def warm(
        self,
        concurrency: int,
        requests: int,
        url: str | None = None,
        *,
        settled: bool = False,
        stages: dict[str, LatencyHistogram] | None = None,
    ) -> LoadResult:
        """Each client's user repeats a primed set of popular queries: search-cache hits. `settled`:
        after priming, wait until the service is idle (priming leaves history writes and garbage)."""
        url = url or self.url
        clients = _Clients(url, self.cfg.users, self.cfg.seed + concurrency)
        ws = self.warm_set

        def popular() -> Callable[[int], str]:
            """Each thread (one user) walks the popular set in order, from its start, whichever
            requests it draws: priming covers every (user, query) pair and the run asks only for them."""
            local = threading.local()

            def query(i: int) -> str:
                n = getattr(local, "n", 0)
                local.n = n + 1
                return ws[n % len(ws)]

            return query

        try:
            if (url, concurrency) not in self._primed:  # the same users each call: entries stay cached
                run_closed(_search(clients, popular(), None), concurrency=concurrency,
                           requests=len(ws) * concurrency * 2)  # fmt: skip
                self._primed.add((url, concurrency))
                # the measured run's threads are new: give them the primed users, not new ones (a
                # new user's first searches are misses: the first warm trial measured misses)
                clients.rewind()
            sources = self._sources_of(url)
            if settled:
                settle(sources["server"])
            with Phase("warm", sources) as ph:
                res = run_closed(_search(clients, popular(), stages), concurrency=concurrency,
                                 requests=requests, keep_samples=True)  # fmt: skip
            self.last_phase = ph.finish(res.requests)
            return res
        finally:
            clients.close()


def latency_trials(
    bench: SearchBench,
    result: Result,
    *,
    concurrency: int,
    cold_requests: int,
    warm_requests: int,
    trials: int,
    stages: dict[str, LatencyHistogram] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, list[LoadResult]]:
    """Cold and warm latency in `trials` interleaved trials (cold, warm, cold, warm, ...), each a
    measured phase added to `result`, with `{kind}_p50/p95/p99_ms` estimates (the bench and notebook 02
    share this)."""

    def trial(kind: str) -> Callable[[int], LoadResult]:
        def go(i: int) -> LoadResult:
            # each trial starts on an idle service: not paying for what the trial before left behind
            if kind == "cold":
                res = bench.cold(concurrency, cold_requests, stages, settled=True)
            else:
                res = bench.warm(concurrency, warm_requests, settled=True)
            assert bench.last_phase is not None
            result.add_phase(bench.last_phase)
            log(f"{kind} trial {i + 1}/{trials}: p95 {res.histogram.percentile_ms(95):.1f} ms, "
                f"{res.requests} requests")  # fmt: skip
            return res

        return go

    lat = interleave({"cold": trial("cold"), "warm": trial("warm")}, trials)
    for kind, runs in lat.items():
        hists = [r.histogram for r in runs]
        noisy = result.phase_noisy(kind)
        for p in (50, 95, 99):
            result.estimates[f"{kind}_p{p}_ms"] = percentile_estimate(hists, p, noisy=noisy)
        # Server CPU per request per trial, with its CI: the figure the hot path's target is judged on
        # (`cpu_ms_per_request` merges the trials into one number).
        cpu = [r.cpu_ms_per_request.get("server") for r in result.phases.get(kind, ())[-len(runs) :]]
        if cpu and all(v is not None for v in cpu):
            result.estimates[f"{kind}_server_cpu_ms"] = estimate(
                [v for v in cpu if v is not None], noisy=noisy
            )
    worse = [max(c.histogram.percentile_ms(95), w.histogram.percentile_ms(95))
             for c, w in zip(lat["cold"], lat["warm"], strict=True)]  # fmt: skip
    result.estimates["p95_ms"] = estimate(
        worse, samples=[min(c.histogram.count, w.histogram.count) for c, w in zip(lat["cold"], lat["warm"], strict=True)],
        percentile=95, noisy=result.noisy,
    )  # fmt: skip
    return lat


def open_trials(
    bench: SearchBench,
    result: Result,
    *,
    rate_per_s: float,
    requests: int,
    trials: int,
    log: Callable[[str], None] = print,
) -> list[LoadResult]:
    """`trials` open-model cold runs, each a phase: `open_cold_p50/p95/p99_ms` (per-trial medians;
    p99 is insufficient below 10k samples per trial) and the p99 of all trials' samples together."""
    runs = []
    for i in range(trials):
        res = bench.cold(32, requests, settled=True, rate_per_s=rate_per_s)
        assert bench.last_phase is not None
        result.add_phase(bench.last_phase)
        log(
            f"open cold trial {i + 1}/{trials} at {rate_per_s:g}/s: p99 {res.histogram.percentile_ms(99):.1f} ms"
        )
        runs.append(res)
    noisy = result.phase_noisy("open_cold")
    for p in (50, 95, 99):
        result.estimates[f"open_cold_p{p}_ms"] = percentile_estimate(
            [r.histogram for r in runs], p, noisy=noisy
        )
    return runs


def _pooled(runs: list[LoadResult], rate_per_s: float) -> dict[str, Any]:
    """The open runs' samples together: one p99 over all of them (10k samples at 5 x 2,000)."""
    if not runs:
        return {}
    pooled = LatencyHistogram.merged(r.histogram for r in runs)
    return {"open_rate": rate_per_s, "open_cold_p99_pooled_ms": pooled.percentile_ms(99),
            "open_cold_samples": pooled.count}  # fmt: skip


def run(settings: Settings, cfg: Config, *, log: Callable[[str], None] = print) -> Result:
    """Cold and warm latency in interleaved trials, throughput at 1 / 8 / 32, each trial a phase."""
    result = Result("search", asdict(cfg), provenance=collect(settings))
    stages: dict[str, LatencyHistogram] = {}
    with SearchBench(settings, cfg, log=log) as bench:
        legacy: dict[str, Any] = {"rows": cfg.rows, "users": cfg.users, "serve_workers": cfg.serve_workers,
                                  "concurrency": cfg.concurrency, "seeded": bench.seeded,
                                  "embedder": bench.embedder()}  # fmt: skip
        lat = latency_trials(bench, result, concurrency=cfg.concurrency, cold_requests=cfg.cold_requests,
                             warm_requests=cfg.warm_requests, trials=cfg.trials, stages=stages, log=log)  # fmt: skip

        def rps_trial(c: int) -> Callable[[int], LoadResult]:
            def go(i: int) -> LoadResult:  # each throughput trial is a measured phase too: rps_c<N>
                res = bench.warm(c, cfg.rps_requests)
                assert bench.last_phase is not None
                result.add_phase(replace(bench.last_phase, name=f"rps_c{c}"))
                return res

            return go

        rps = interleave({f"c{c}": rps_trial(c) for c in (1, 8, 32)}, cfg.trials)
        opened = open_trials(bench, result, rate_per_s=cfg.open_rate, requests=cfg.open_requests,
                             trials=cfg.trials, log=log) if cfg.open_rate > 0 else []  # fmt: skip
    for key, runs in rps.items():
        result.estimates[f"rps_{key}"] = estimate(
            [r.throughput for r in runs], noisy=result.phase_noisy(f"rps_{key}")
        )
    result.estimates["p95_ms_c32"] = percentile_estimate(
        [r.histogram for r in rps["c32"]], 95, noisy=result.phase_noisy("rps_c32")
    )
    legacy.update({k: e.median for k, e in result.estimates.items()})
    legacy.update({
        "stage_p95_ms": {k: h.percentile_ms(95) for k, h in sorted(stages.items())},
        "stage_p50_ms": {k: h.percentile_ms(50) for k, h in sorted(stages.items())},
        "errors": sum(r.errors for runs in (*lat.values(), *rps.values(), opened) for r in runs),
        "samples": {kind: sum(r.histogram.count for r in runs) for kind, runs in lat.items()},
        **_pooled(opened, cfg.open_rate),
    })  # fmt: skip
    result.legacy = legacy
    return result


def run_search_bench(
    settings: Settings, cfg: Config, *, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """The JSON envelope of `run` (the old entry point: its flat keys are still there)."""
    return run(settings, cfg, log=log).envelope()


def main(settings: Settings, argv: list[str]) -> int:
    import sys

    def run_logged(s: Settings, cfg: Config) -> Result:
        return run(s, cfg, log=lambda m: print(m, file=sys.stderr))

    return cli(settings, argv, Config, run_logged, __doc__, name="search")
