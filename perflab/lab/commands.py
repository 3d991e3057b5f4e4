"""`perflab report`."""

from __future__ import annotations

import argparse
from pathlib import Path

from perflab.config import Settings
from perflab.lab.report import run_report


def report(settings: Settings, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="perflab report", description="run the notebooks, render reports/")
    parser.add_argument("--profile", default="smoke", help="parameters file notebooks/profiles/NAME.toml")
    parser.add_argument("--only", nargs="*", help="notebook name prefixes to run (default: all)")
    parser.add_argument("--slo", type=Path, help="SLO file (default notebooks/slo.toml)")
    parser.add_argument("--reports", type=Path, help="reports folder (default reports/)")
    parser.add_argument("--run-id", help="folder name under reports/ (default: UTC time + profile)")
    args = parser.parse_args(argv)
    result = run_report(
        settings,
        args.profile,
        only=args.only,
        slo_file=args.slo,
        reports_dir=args.reports,
        run_id=args.run_id,
    )
    failed = [v for v in result.verdicts if not v.passed]
    for v in result.verdicts:
        value = "missing" if v.value is None else f"{v.value:.4g}"
        print(f"  {'PASS' if v.passed else 'FAIL'}  {v.check:<45} {value}")
    print(f"report: {result.folder}/  index: {result.folder.parent / 'index.html'}")
    if not result.ok:
        bad = [n.name for n in result.notebooks if n.status != "ok"]
        print(f"report FAILED: notebooks {bad or 'ok'}; SLOs failed {len(failed)}")
        return 1
    return 0
