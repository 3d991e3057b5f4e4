"""`perflab db migrate | reset`."""

from __future__ import annotations

import argparse

from perflab.config import Settings
from perflab.db.connect import connect
from perflab.db.migrate import drop_schema, migrate
from perflab.services.registry import endpoints


def main(settings: Settings, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="perflab db")
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("migrate", help="apply the schema (idempotent)")
    reset = sub.add_parser("reset", help="drop the schema and everything in it, then migrate")
    reset.add_argument("--yes", action="store_true", help="really drop it")
    args = parser.parse_args(argv)
    ep = endpoints(settings)
    with connect(settings, ep.database_url) as conn:
        if args.action == "reset":
            if not args.yes:
                parser.error(f"reset drops schema {settings.db_schema!r}; pass --yes")
            drop_schema(conn, settings.db_schema)
        result = migrate(conn, settings)
    print(
        f"schema {result.schema}: applied {', '.join(result.applied) or 'nothing'}"
        f" ({len(result.already)} already applied)"
    )
    return 0
