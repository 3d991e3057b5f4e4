"""Traffic for the fault lab: threads of signed-in users searching (Zipf queries) and a trickle of
uploads, each request recorded with its time, status, latency and cache outcome; and the timeline
arithmetic the scenarios are judged by (bins, hit rate, percentiles over a time window).

Records are plain dataclasses so a notebook can turn them into a DataFrame. Status 0 is a request
that got no HTTP answer at all (connection refused or reset, timeout): for a user it is a failure,
like a 5xx.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from perflab.db.seed import seeded_email
from perflab.db.vocabulary import ZipfQuerySampler
from perflab.lab.harness import sign_in
from perflab.lab.latency import LatencyHistogram

SEARCH = "search"
UPLOAD = "upload"


@dataclass(frozen=True)
class RequestRecord:
    t: float  # seconds on the lab's clock when the request was sent
    kind: str  # SEARCH | UPLOAD
    user: int  # seeded user number
    status: int  # HTTP status; 0 = no answer (refused, reset, timed out)
    latency_ms: float
    cache_hit: bool | None = None  # searches answered 200
    media_id: str | None = None  # uploads acknowledged with 201
    error: str = ""  # the transport error or the 4xx/5xx detail, shortened

    @property
    def failed(self) -> bool:
        """What a user experiences as a failure: a 5xx or no answer."""
        return self.status == 0 or self.status >= 500

    @property
    def end(self) -> float:
        return self.t + self.latency_ms / 1000


@dataclass(frozen=True)
class TrafficConfig:
    users: int = 8  # seeded users user1..userN; the last one uploads, the others search
    search_threads: int = 4
    think_s: float = 0.01  # pause between one thread's searches (2 shared cores: keep the load honest)
    upload_interval_s: float = 0.5  # 0 = no uploads
    k: int = 10
    timeout_s: float = 10.0
    seed: int = 42


class _Recorder:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self.records: list[RequestRecord] = []

    def add(self, record: RequestRecord) -> None:
        with self._lock:
            self.records.append(record)

    def snapshot(self) -> list[RequestRecord]:
        with self._lock:
            return list(self.records)


def _short(text: str, n: int = 160) -> str:
    return " ".join(text.split())[:n]


class Traffic:
    """Searchers and an uploader against `url` until `stop()`; `records` grows while it runs.

    Everyone signs in before the first request (sign-in needs Redis and PostgreSQL; a fault injected
    later must not be mistaken for a sign-in problem). A searcher whose session is refused (401) signs
    in again; the 401 is recorded.
    """

    def __init__(
        self,
        url: str,
        config: TrafficConfig,
        photos: Sequence[Path],
        *,
        clock: Callable[[], float] = time.monotonic,
        caption: Callable[[int], str] | None = None,
    ) -> None:
        if config.users < 2:
            raise ValueError("traffic needs at least 2 seeded users (searchers and an uploader)")
        self.url = url
        self.config = config
        self.photos = [p.read_bytes() for p in photos]
        self.names = [p.name for p in photos]
        self._recorder = _Recorder(clock)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._clients: list[httpx.Client] = []
        self._caption = caption or (lambda n: f"fault lab upload {n}")
        self.uploader = config.users

    @property
    def records(self) -> list[RequestRecord]:
        return self._recorder.snapshot()

    def start(self) -> Traffic:
        cfg = self.config
        searchers = [1 + i % (cfg.users - 1) for i in range(cfg.search_threads)]
        clients = [sign_in(self.url, u, timeout=cfg.timeout_s) for u in searchers]
        self._clients.extend(clients)
        for i, (user, client) in enumerate(zip(searchers, clients, strict=True)):
            sampler = ZipfQuerySampler(cfg.seed + i)
            self._spawn(f"searcher-{i}", functools.partial(self._search_loop, client, user, sampler))
        if cfg.upload_interval_s > 0 and self.photos:
            client = sign_in(self.url, self.uploader, timeout=cfg.timeout_s)
            self._clients.append(client)
            self._spawn("uploader", lambda: self._upload_loop(client))
        return self

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=f"traffic-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> list[RequestRecord]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.config.timeout_s + 5)
        for client in self._clients:
            client.close()
        return self.records

    def __enter__(self) -> Traffic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- loops ----------------------------------------------------------------------------------
    def _call(self, kind: str, user: int, send: Callable[[], httpx.Response]) -> RequestRecord:
        clock = self._recorder.clock
        t0 = clock()
        try:
            r = send()
        except httpx.HTTPError as exc:
            record = RequestRecord(
                t0, kind, user, 0, (clock() - t0) * 1000, error=_short(f"{type(exc).__name__}: {exc}")
            )
        else:
            latency = (clock() - t0) * 1000
            hit, media_id, error = None, None, ""
            if r.status_code == 200 and kind == SEARCH:
                hit = bool(r.json().get("cache_hit"))
            elif r.status_code == 201 and kind == UPLOAD:
                media_id = str(r.json()["id"])
            elif r.status_code >= 400:
                error = _short(r.text)
            record = RequestRecord(t0, kind, user, r.status_code, latency, hit, media_id, error)
        self._recorder.add(record)
        return record

    def _search_loop(self, client: httpx.Client, user: int, sampler: ZipfQuerySampler) -> None:
        for query in sampler:
            if self._stop.is_set():
                return
            params: dict[str, str | int] = {"q": query, "k": self.config.k}
            record = self._call(SEARCH, user, functools.partial(client.get, "/search", params=params))
            if record.status == 401:
                self._resign(client, user)
            self._stop.wait(self.config.think_s if record.status else max(self.config.think_s, 0.05))

    def _resign(self, client: httpx.Client, user: int) -> None:
        with contextlib.suppress(httpx.HTTPError):
            client.post("/sessions", json={"email": seeded_email(user)})

    def _upload_loop(self, client: httpx.Client) -> None:
        for n in itertools.count():
            if self._stop.wait(self.config.upload_interval_s):
                return
            i = n % len(self.photos)
            files = {"file": (self.names[i], self.photos[i])}
            data = {"caption": self._caption(n)}
            self._call(
                UPLOAD, self.uploader, functools.partial(client.post, "/media", files=files, data=data)
            )


# -- timeline arithmetic -------------------------------------------------------------------------


def window(
    records: Iterable[RequestRecord], start: float, end: float, kind: str | None = None
) -> list[RequestRecord]:
    """Requests sent in [start, end)."""
    return [r for r in records if start <= r.t < end and (kind is None or r.kind == kind)]


def hit_rate(records: Iterable[RequestRecord]) -> float | None:
    """Share of answered searches that were search-cache hits (None: no answered search)."""
    answered = [r.cache_hit for r in records if r.kind == SEARCH and r.cache_hit is not None]
    return sum(answered) / len(answered) if answered else None


def percentile_ms(records: Iterable[RequestRecord], p: float) -> float:
    hist = LatencyHistogram()
    for r in records:
        hist.record_ms(r.latency_ms)
    return hist.percentile_ms(p)


@dataclass
class Bin:
    t: float  # bin start (seconds on the lab clock)
    requests: int = 0
    ok: int = 0
    client_errors: int = 0
    server_errors: int = 0
    no_answer: int = 0
    hits: int = 0
    answered_searches: int = 0
    latencies: list[float] = field(default_factory=list)

    @property
    def hit_rate(self) -> float:
        return self.hits / self.answered_searches if self.answered_searches else math.nan


def bins(records: Sequence[RequestRecord], start: float, end: float, width: float = 0.5) -> list[Bin]:
    """Fixed-width time bins over [start, end): counts by outcome, hit rate, latencies."""
    n = max(1, math.ceil((end - start) / width))
    out = [Bin(start + i * width) for i in range(n)]
    for r in records:
        i = int((r.t - start) // width)
        if not 0 <= i < n:
            continue
        b = out[i]
        b.requests += 1
        b.latencies.append(r.latency_ms)
        if r.status == 0:
            b.no_answer += 1
        elif r.status >= 500:
            b.server_errors += 1
        elif r.status >= 400:
            b.client_errors += 1
        else:
            b.ok += 1
        if r.cache_hit is not None:
            b.answered_searches += 1
            b.hits += int(r.cache_hit)
    return out


def sliding_hit_rate(
    records: Sequence[RequestRecord], start: float, end: float, *, span: float = 1.0, step: float = 0.1
) -> list[tuple[float, float, int]]:
    """(window end, hit rate, answered searches) of each `span`-second window from `start`, every `step`
    seconds, until the window would pass `end` (windows without an answered search are left out)."""
    searches = sorted(
        (r for r in records if r.cache_hit is not None and start <= r.t < end), key=lambda r: r.t
    )
    out = []
    n = int((end - start - span) / step + 1e-9) + 1
    for i in range(max(0, n)):
        t = start + i * step
        inside = [bool(r.cache_hit) for r in searches if t <= r.t < t + span]
        if inside:
            out.append((t + span, sum(inside) / len(inside), len(inside)))
    return out


def recovery_time(
    records: Sequence[RequestRecord],
    since: float,
    target: float,
    *,
    span: float = 1.0,
    step: float = 0.1,
    min_searches: int = 10,
) -> float | None:
    """Seconds from `since` until the search hit rate over a sliding `span` first reaches `target`
    (measured at the window's end, so the figure includes the window it took to see it)."""
    end = max((r.t for r in records), default=since) + step
    for t, rate, n in sliding_hit_rate(records, since, end, span=span, step=step):
        if n >= min_searches and rate >= target:
            return round(t - since, 3)
    return None
