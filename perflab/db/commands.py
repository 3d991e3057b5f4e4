"""`perflab db migrate | reset | indexes | explain | seed` (`perflab seed` is the old spelling of the last)."""

from __future__ import annotations

import argparse
import json
import os

from perflab.config import Settings
from perflab.db.connect import connect
from perflab.db.explain import analyze_plan
from perflab.db.indexes import create_indexes, index_report
from perflab.db.migrate import drop_schema, migrate
from perflab.db.seed import seed_library, seeded_email
from perflab.servers.registry import endpoints


def parser() -> argparse.ArgumentParser:
    """`perflab db`'s parser; every subcommand is listed in `perflab db --help`."""
    parser = argparse.ArgumentParser(prog="perflab db", description="database maintenance and seeding")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser("migrate", help="apply the schema (idempotent)")
    reset = sub.add_parser("reset", help="drop the schema and everything in it, then migrate")
    reset.add_argument("--yes", action="store_true", help="really drop it")
    sub.add_parser("indexes", help="create the seed's indexes CONCURRENTLY, report unused and missing ones")
    explain = sub.add_parser("explain", help="EXPLAIN ANALYZE a statement (rolled back) and recommend fixes")
    explain.add_argument("sql", help="one SQL statement, without parameters")
    _seed_arguments(
        sub.add_parser(
            "seed",
            help="build the reproducible synthetic media library (--media --users --seed)",
            description="Build the reproducible synthetic media library in the configured schema: users "
            "user1@example.com.. (largest library first), composed captions, heavy-tailed library sizes, "
            "embeddings from the configured embedder. Running it again with the same arguments does "
            "nothing. `perflab seed` is the same command.",
        )
    )
    return parser


def main(settings: Settings, argv: list[str]) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.action == "seed":
        if args.media < 0 or args.users <= 0:
            p.error("--media must be >= 0 and --users > 0")
        return seed(settings, args)
    if args.action == "reset" and not args.yes:
        p.error(f"reset drops schema {settings.db_schema!r}; pass --yes")
    ep = endpoints(settings)
    with connect(settings, ep.database_url) as conn:
        if args.action == "reset":
            drop_schema(conn, settings.db_schema)
        result = migrate(conn, settings)
        if args.action == "indexes":
            for outcome in create_indexes(conn):
                print(f"{outcome.name:40} {outcome.action} ({outcome.seconds:.2f} s)")
            report = index_report(conn, settings.db_schema)
            for u in report.unused:
                print(f"unused  {u.name} on {u.table} ({u.size_bytes / 2**20:.1f} MB): never scanned")
            for m in report.missing:
                print(
                    f"missing {m.table}: {m.detail}" + (f"\n        {m.suggestion}" if m.suggestion else "")
                )
            return 0
        if args.action == "explain":
            analysis = analyze_plan(conn, args.sql)
            print(f"planning {analysis.planning_ms:.2f} ms, execution {analysis.execution_ms:.2f} ms")
            for n in analysis.nodes:
                print(
                    f"{'  ' * n.depth}{n.label}: planned {n.plan_rows:,.0f}, actual {n.actual_rows:,.0f} x {n.loops}"
                )
            for r in analysis.recommendations:
                print(f"* {r}")
            return 0
    print(
        f"schema {result.schema}: applied {', '.join(result.applied) or 'nothing'}"
        f" ({len(result.already)} already applied)"
    )
    return 0


def _seed_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--media", type=int, default=5000, help="media items in all (default 5000)")
    parser.add_argument("--users", type=int, default=50, help="users (default 50)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--embedder", help="auto | minilm-onnx-int8 | minilm-onnx | minilm | hashing | openai"
    )
    parser.add_argument(
        "--replace", action="store_true", help="delete media seeded users hold that the seeder did not make"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def seed(settings: Settings, args: argparse.Namespace) -> int:
    """`perflab db seed --media N --users U --seed S`: the synthetic library, reproducibly, idempotently."""
    from perflab.embed import make_embedder

    if args.embedder:
        settings = settings.replace(embedder=args.embedder)
    embedder = make_embedder(settings, threads=os.cpu_count())  # a batch job: every core
    ep = endpoints(settings)
    with connect(settings, ep.database_url) as conn:
        migrate(conn, settings)
        result = seed_library(
            settings,
            conn,
            media=args.media,
            users=args.users,
            seed=args.seed,
            embedder=embedder,
            progress=not args.no_progress,
            replace=args.replace,
        )
    largest = [[seeded_email(i + 1), n] for i, n in enumerate(result.sizes[:5])]
    summary = {
        "schema": settings.db_schema,
        "created": result.created,
        "media": result.media,
        "users": result.users,
        "seed": result.seed,
        "embedder": result.model_name,
        "largest_users": largest,
        "median_user_media": result.sizes[len(result.sizes) // 2] if result.sizes else 0,
        "embed_s": round(result.embed_s, 2),
        "copy_s": round(result.load.copy_s, 2) if result.load else 0.0,
        "index_s": round(result.load.index_s, 2) if result.load else 0.0,
        "elapsed_s": round(result.elapsed_s, 2),
    }
    if args.json:
        print(json.dumps(summary))
    elif result.created:
        print(
            f"seeded {result.media} media for {result.users} users (seed {result.seed}, {result.model_name}) "
            f"into schema {settings.db_schema} in {result.elapsed_s:.1f} s; largest: "
            + ", ".join(f"{e} ({n})" for e, n in largest)
        )
    else:
        print(f"schema {settings.db_schema} already holds this library (seed {result.seed}); nothing to do")
    return 0
