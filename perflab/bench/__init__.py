"""Benchmarks: `perflab bench NAME [--json]`. Each prints figures measured side by side in one run.

Each module here exposes `main(settings, argv) -> int`; see perflab/bench/contract.py for the one
measurement contract (Config + run(settings, cfg) -> Result) they follow. `contract` itself is no benchmark.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

from perflab.config import Settings

_NOT_BENCHES = {"contract"}


def available() -> list[str]:
    return sorted(
        m.name
        for m in pkgutil.iter_modules(__path__)
        if not m.name.startswith("_") and m.name not in _NOT_BENCHES
    )


def main(settings: Settings, argv: list[str]) -> int:
    names = available()
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: perflab bench NAME [options]\n\nbenchmarks: " + (", ".join(names) or "none yet"))
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in names:
        print(f"perflab bench: unknown benchmark {name!r}; choose from {', '.join(names)}", file=sys.stderr)
        return 2
    return int(importlib.import_module(f"perflab.bench.{name}").main(settings, rest) or 0)
