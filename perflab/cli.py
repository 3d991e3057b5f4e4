"""`perflab` command line: one table of commands, each a real function beside the code it drives.

Every command is `(settings, argv) -> exit code` and parses its own arguments. The table imports each
lazily (importing perflab.db or the service costs seconds; `perflab --help` should not), but by name,
so a reader and a type checker can follow every entry. This file also checks a command's extra before
it runs, and turns any error a user can meet into one line on stderr with an exit code:
PerflabError -> 2, a PostgreSQL or Redis error -> 3, Ctrl-C or SIGTERM -> 130 / 143.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType

from perflab.config import Settings, redact_url
from perflab.errors import PerflabError
from perflab.extras import require

Handler = Callable[[Settings, list[str]], int]


@dataclass(frozen=True)
class Command:
    run: Handler
    help: str
    extra: str | None = None  # the pyproject extra the command needs (checked before it runs)


def _up(settings: Settings, argv: list[str]) -> int:
    from perflab.servers.commands import up

    return up(settings, argv)


def _down(settings: Settings, argv: list[str]) -> int:
    from perflab.servers.commands import down

    return down(settings, argv)


def _status(settings: Settings, argv: list[str]) -> int:
    from perflab.servers.commands import status

    return status(settings, argv)


def _db(settings: Settings, argv: list[str]) -> int:
    from perflab.db.commands import main

    return main(settings, argv)


def _seed(settings: Settings, argv: list[str]) -> int:
    """`perflab seed ...`: the old spelling of `perflab db seed ...`."""
    from perflab.db.commands import main

    return main(settings, ["seed", *argv])


def _report(settings: Settings, argv: list[str]) -> int:
    from perflab.lab.commands import report

    return report(settings, argv)


def _compare(settings: Settings, argv: list[str]) -> int:
    from perflab.lab.commands import compare

    return compare(settings, argv)


def _loadtest(settings: Settings, argv: list[str]) -> int:
    from perflab.lab.commands import loadtest

    return loadtest(settings, argv)


def _history(settings: Settings, argv: list[str]) -> int:
    from perflab.lab.history import history

    return history(settings, argv)


def _selftest(settings: Settings, argv: list[str]) -> int:
    from perflab.bench.selftest import selftest

    return selftest(settings, argv)


def _lab(settings: Settings, argv: list[str]) -> int:
    from perflab.lab.jupyter import lab

    return lab(settings, argv)


def _corpus(settings: Settings, argv: list[str]) -> int:
    from perflab.lab.corpus import main

    return main(settings, argv)


def _serve(settings: Settings, argv: list[str]) -> int:
    from perflab.service.server import serve

    return serve(settings, argv)


def _bench(settings: Settings, argv: list[str]) -> int:
    from perflab.bench.commands import main

    return main(settings, argv)


def _embed(settings: Settings, argv: list[str]) -> int:
    from perflab.embed.commands import main

    return main(settings, argv)


COMMANDS: dict[str, Command] = {
    "up": Command(_up, "start the embedded Redis and PostgreSQL (no-op on staging)"),
    "down": Command(_down, "stop the embedded servers"),
    "status": Command(_status, "each server's URL and version, pgvector, and anything left running"),
    "db": Command(_db, "database: migrate, reset, indexes, explain, seed (see `perflab db --help`)"),
    "seed": Command(_seed, "same as `perflab db seed` (the synthetic media library)"),
    "report": Command(_report, "run the notebooks (papermill), render reports/, check SLOs", "lab"),
    "serve": Command(_serve, "run the search HTTP service (uvicorn, several workers)"),
    "loadtest": Command(_loadtest, "Locust scenarios headless (local or distributed) into reports/", "lab"),
    "compare": Command(_compare, "regressions beyond noise between two report runs", "lab"),
    "history": Command(_history, "every headline figure across runs, with change points", "lab"),
    "selftest": Command(_selftest, "measure compare's A/A false-alarm and A/B detection rates", "lab"),
    "lab": Command(_lab, "JupyterLab on notebooks/, on loopback, with a token (`make lab`)", "lab"),
    "corpus": Command(_corpus, "build the image corpora under data/ (photos, bad files)", "lab"),
    "embed": Command(_embed, "export the ONNX MiniLM model once (the export needs the ml extra)"),
    "bench": Command(_bench, "benchmarks: perflab bench NAME --json (see `perflab bench --help`)"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perflab",
        description="Lab for the caching and performance layer of an AI media search service.",
        epilog="commands:\n" + "\n".join(f"  {n:<10} {c.help}" for n, c in COMMANDS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="perflab.toml to read (default: ./perflab.toml if present)")
    parser.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def server_error_line(exc: BaseException) -> str | None:
    """One line for an error from PostgreSQL or Redis, or None when `exc` is neither. Checked through
    sys.modules: a command that never imported psycopg cannot have raised its errors."""
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(exc, psycopg.Error):
        diag = getattr(exc, "diag", None)
        primary = getattr(diag, "message_primary", None) or str(exc)
        state = f" [{exc.sqlstate}]" if getattr(exc, "sqlstate", None) else ""
        return f"PostgreSQL: {type(exc).__name__}{state}: {_one_line(primary)}"
    redis = sys.modules.get("redis")
    if redis is not None and isinstance(exc, redis.RedisError):
        return f"Redis: {type(exc).__name__}: {_one_line(str(exc))}"
    return None


def _one_line(text: str) -> str:
    words = " ".join(text.split())
    # a URL in a driver's message may carry a password
    return " ".join(redact_url(w) if "://" in w else w for w in words.split(" "))[:300]


class _Terminated(SystemExit):
    """SIGTERM, raised where the program was: it unwinds past `except Exception` like Ctrl-C does."""


def _terminate(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (`timeout`, `kill`) unwinds like Ctrl-C, so context managers remove what they created
    and stop the servers they started."""
    raise _Terminated(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    ns = _parser().parse_args(argv)
    command = COMMANDS[ns.command]
    prog = f"perflab {ns.command}"
    previous = signal.getsignal(signal.SIGTERM)
    if previous is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)
    try:
        if command.extra:
            require(prog, command.extra)
        settings = Settings.from_env(toml_path=ns.config)
        return int(command.run(settings, list(ns.args)) or 0)
    except PerflabError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except _Terminated as exc:
        print(f"{prog}: terminated (SIGTERM); what it started was stopped", file=sys.stderr)
        return int(exc.code or 143)
    except Exception as exc:
        line = server_error_line(exc)
        if line is None:
            raise
        print(f"{prog}: error: {line}", file=sys.stderr)
        return 3
    finally:
        if previous is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


if __name__ == "__main__":
    sys.exit(main())
