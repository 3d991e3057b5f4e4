"""An independent load client for cross-checking `perflab bench search`: raw asyncio sockets, no perflab code.

It shares nothing with perflab's harness (no HTTP library, no histogram, no thread pool), so a figure the
two agree on is not an artefact of either. Two modes against a running `perflab serve`:

- ``open``: cold queries (each text new) at a fixed arrival rate; each latency runs from the request's
  intended send time, so a stall is charged to every request queued behind it.
- ``closed``: ``--concurrency`` users in a closed loop on primed (user, query) pairs: search-cache hits.

    python loadtests/raw_client.py open --url http://127.0.0.1:8000 --rate 40 --requests 10000
    python loadtests/raw_client.py closed --url http://127.0.0.1:8000 --concurrency 8 --requests 2000

Prints one JSON line: p50/p95/p99 in ms (numpy's linear percentile over every sample), samples, errors,
achieved rate, and how late the client itself started requests (its own stall, p99 of send lag).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import time
from urllib.parse import quote, urlsplit

import numpy as np

# fmt: off
WORDS = ("sunset", "beach", "dog", "cat", "mountain", "city", "night", "street", "portrait", "family",
         "birthday", "snow", "forest", "lake", "car", "food", "coffee", "market", "bridge", "river", "garden",
         "flowers", "concert", "train", "airport", "desert", "boat", "kids", "wedding", "skyline", "rain",
         "autumn", "museum", "park", "bicycle")
# fmt: on


class Conn:
    """One keep-alive HTTP/1.1 connection holding one user's session cookie."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self.r, self.w, self.host, self.cookie = reader, writer, host, ""

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes, list[bytes]]:
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
        if self.cookie:
            head += f"Cookie: {self.cookie}\r\n"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.w.write(head.encode() + b"\r\n" + body)
        status_line = await self.r.readline()
        status = int(status_line.split()[1])
        headers, length = [], 0
        while (line := await self.r.readline()) not in (b"\r\n", b""):
            headers.append(line)
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        return status, await self.r.readexactly(length), headers


async def connect(url: str, user: int) -> Conn:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
    conn = Conn(reader, writer, parts.netloc)
    status, body, headers = await conn.request(
        "POST", "/sessions", json.dumps({"email": f"user{user}@example.com"}).encode()
    )
    if status != 201:
        raise SystemExit(f"sign-in as user{user} failed: {status} {body[:200]!r}")
    cookie = next(h for h in headers if h.lower().startswith(b"set-cookie:"))
    conn.cookie = cookie.split(b":", 1)[1].split(b";", 1)[0].strip().decode()
    return conn


def search_path(query: str) -> str:
    return f"/search?q={quote(query)}&k=20"


def cold_query(rng: random.Random) -> str:
    return f"{rng.choice(WORDS)} {rng.choice(WORDS)} {rng.choice(WORDS)} {secrets.token_hex(3)}"


def summary(lat_ms: list[float], errors: int, seconds: float, lag_ms: list[float]) -> dict[str, object]:
    x = np.asarray(lat_ms)
    p50, p95, p99 = (float(np.percentile(x, p)) if x.size else float("nan") for p in (50, 95, 99))
    return {"p50_ms": round(p50, 3), "p95_ms": round(p95, 3), "p99_ms": round(p99, 3), "samples": int(x.size),
            "errors": errors, "rps": round(x.size / seconds, 2),
            "send_lag_p99_ms": round(float(np.percentile(lag_ms, 99)), 3) if lag_ms else None}  # fmt: skip


async def run_open(
    url: str, rate: float, requests: int, users: int, pool: int, seed: int
) -> dict[str, object]:
    rng = random.Random(seed)
    idle: asyncio.Queue[Conn] = asyncio.Queue()
    for _ in range(pool):
        idle.put_nowait(await connect(url, rng.randint(1, users)))
    queries = [cold_query(rng) for _ in range(requests)]
    lat: list[float] = []
    lag: list[float] = []
    errors = 0
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05

    async def one(i: int, due: float) -> None:
        nonlocal errors
        conn = await idle.get()  # waiting for a free connection counts: it is the user's wait
        try:
            status, _, _ = await conn.request("GET", search_path(queries[i]))
            if status != 200:
                errors += 1
                return
            lat.append((loop.time() - due) * 1e3)
        finally:
            idle.put_nowait(conn)

    tasks = []
    for i in range(requests):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        lag.append(max(0.0, loop.time() - due) * 1e3)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    return {"mode": "open", "rate": rate, **summary(lat, errors, loop.time() - start, lag)}


async def run_closed(url: str, concurrency: int, requests: int, users: int, seed: int) -> dict[str, object]:
    rng = random.Random(seed)
    popular = [f"{WORDS[i % len(WORDS)]} {WORDS[(i * 5 + 3) % len(WORDS)]}" for i in range(20)]
    conns = [await connect(url, rng.randint(1, users)) for _ in range(concurrency)]
    for conn in conns:  # prime: every (user, query) pair this run asks for is cached
        for q in popular:
            await conn.request("GET", search_path(q))
    lat: list[float] = []
    errors = misses = 0
    left = requests

    async def user(conn: Conn) -> None:
        nonlocal errors, misses, left
        n = 0
        while left > 0:
            left -= 1
            t0 = time.perf_counter()
            status, _, headers = await conn.request("GET", search_path(popular[n % len(popular)]))
            n += 1
            if status != 200:
                errors += 1
                continue
            lat.append((time.perf_counter() - t0) * 1e3)
            # the service's Server-Timing names vector_search only when it had to search: a miss
            misses += any(h.lower().startswith(b"server-timing:") and b"vector_search" in h for h in headers)

    t0 = time.perf_counter()
    await asyncio.gather(*(user(c) for c in conns))
    return {
        "mode": "closed",
        "concurrency": concurrency,
        "misses": misses,
        **summary(lat, errors, time.perf_counter() - t0, []),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=("open", "closed"))
    p.add_argument("--url", required=True)
    p.add_argument("--rate", type=float, default=40.0, help="open: requests per second")
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=8, help="closed: users in the loop")
    p.add_argument("--pool", type=int, default=32, help="open: connections (the most requests in flight)")
    p.add_argument("--users", type=int, default=200, help="seeded users to sign in as (user1..userN)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if a.mode == "open":
        out = asyncio.run(run_open(a.url, a.rate, a.requests, a.users, a.pool, a.seed))
    else:
        out = asyncio.run(run_closed(a.url, a.concurrency, a.requests, a.users, a.seed))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
