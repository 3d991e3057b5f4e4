"""`perflab bench NAME [options]`: one table of the benchmarks, each module's `main(settings, argv)`.

The modules are imported only when their benchmark runs (each pulls in its own heavy dependencies).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

from perflab.config import Settings
from perflab.extras import require


@dataclass(frozen=True)
class Bench:
    run: Callable[[Settings, list[str]], int]
    help: str
    extra: str | None = None  # the pyproject extra it needs, checked before it runs


def _cache(settings: Settings, argv: list[str]) -> int:
    from perflab.bench.cache import main

    return main(settings, argv)


def _cdn(settings: Settings, argv: list[str]) -> int:
    from perflab.bench.cdn import main

    return main(settings, argv)


def _images(settings: Settings, argv: list[str]) -> int:
    from perflab.bench.images import main

    return main(settings, argv)


def _search(settings: Settings, argv: list[str]) -> int:
    from perflab.bench.search import main

    return main(settings, argv)


def _vector(settings: Settings, argv: list[str]) -> int:
    from perflab.bench.vector import main

    return main(settings, argv)


BENCHES: dict[str, Bench] = {
    "cache": Bench(_cache, "cache operations on the real Redis: get/set, pipelines, the embedding cache"),
    "cdn": Bench(_cdn, "the nginx edge in front of the media origin: hit ratio, latency", "lab"),
    "images": Bench(_images, "the upload pipeline against pyvips, per core, on the photo corpus", "lab"),
    "search": Bench(_search, "the search service end to end over HTTP: cold and warm cache"),
    "vector": Bench(_vector, "pgvector: exact against HNSW, recall and latency per ef_search"),
}


def usage() -> str:
    rows = "\n".join(f"  {name:<8} {b.help}" for name, b in BENCHES.items())
    return f"usage: perflab bench NAME [options]   (NAME --help for its options)\n\nbenchmarks:\n{rows}"


def main(settings: Settings, argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    bench = BENCHES.get(name)
    if bench is None:
        print(f"perflab bench: unknown benchmark {name!r}; choose from {', '.join(BENCHES)}", file=sys.stderr)
        return 2
    if bench.extra:
        require(f"perflab bench {name}", bench.extra)
    return int(bench.run(settings, rest) or 0)
