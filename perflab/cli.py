"""`perflab` command line. Each command lives beside the code it drives and parses its own arguments;
this file only routes, builds the settings, and turns PerflabError into one line on stderr."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from perflab.config import Settings
from perflab.errors import PerflabError

# command -> ("module:function", help). The function is `(settings, argv) -> exit code`.
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("perflab.servers.commands:up", "start the embedded Redis and PostgreSQL (no-op on staging)"),
    "down": ("perflab.servers.commands:down", "stop the embedded servers"),
    "status": ("perflab.servers.commands:status", "print each server's URL and version"),
    "db": ("perflab.db.commands:main", "database maintenance: migrate, reset"),
    "seed": (
        "perflab.db.commands:seed",
        "build the reproducible synthetic media library (--media --users --seed)",
    ),
    "report": ("perflab.lab.commands:report", "run the notebooks (papermill), render reports/, check SLOs"),
    "serve": ("perflab.service.server:serve", "run the search HTTP service (uvicorn, several workers)"),
    "loadtest": (
        "perflab.lab.loadtest:loadtest",
        "Locust scenarios headless (local or distributed) into reports/",
    ),
    "compare": ("perflab.lab.commands:compare", "regressions beyond noise between two report runs"),
    "history": ("perflab.lab.history:history", "every headline figure across runs, with change points"),
    "selftest": (
        "perflab.lab.selftest:selftest",
        "measure compare's A/A false-alarm and A/B detection rates",
    ),
    "corpus": ("perflab.images.corpus:main", "build the image corpora under data/ (photos, bad files)"),
    "bench": ("perflab.bench:main", "benchmarks: perflab bench NAME --json (see `perflab bench --help`)"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perflab",
        description="Lab for the caching and performance layer of an AI media search service.",
        epilog="commands:\n" + "\n".join(f"  {n:<10} {h}" for n, (_, h) in COMMANDS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="perflab.toml to read (default: ./perflab.toml if present)")
    parser.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    ns = _parser().parse_args(argv)
    target, _ = COMMANDS[ns.command]
    module, func = target.split(":")
    try:
        settings = Settings.from_env(toml_path=ns.config)
        handler = getattr(importlib.import_module(module), func)
        return int(handler(settings, list(ns.args)) or 0)
    except PerflabError as exc:
        print(f"perflab {ns.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
