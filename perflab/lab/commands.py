"""`perflab report`, `perflab compare`.

Exit codes of `perflab report`: 0 every SLO passed; 1 an SLO failed or its figure is missing, or a
notebook failed; 2 usage error; 3 nothing failed but some SLO is inconclusive (judged on a figure
measured while the machine was noisy, with too few samples, or whose CI straddles the threshold).
"""

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
    failed = [v for v in result.verdicts if v.status in ("fail", "missing")]
    for v in result.verdicts:
        value = "missing" if v.value is None else f"{v.value:.4g}"
        ci = f"  CI [{v.ci95[0]:.4g}, {v.ci95[1]:.4g}]" if v.ci95 else ""
        reason = f"  ({v.reason})" if v.reason else ""
        print(f"  {v.status.upper():<12}  {v.check:<45} {value}{ci}{reason}")
    print(f"report: {result.folder}/  index: {result.folder.parent / 'index.html'}")
    code = result.exit_code
    if code == 1:
        bad = [n.name for n in result.notebooks if n.status != "ok"]
        print(f"report FAILED: notebooks {bad or 'ok'}; SLOs failed {len(failed)}")
    elif code == 3:
        n = sum(v.status == "inconclusive" for v in result.verdicts)
        print(
            f"report INCONCLUSIVE: nothing failed, {n} SLO(s) inconclusive (noisy machine or too few samples)"
        )
    return code


def compare(settings: Settings, argv: list[str]) -> int:
    from perflab.lab.compare import compare_runs, drift_notes, environment_diff, load_run

    parser = argparse.ArgumentParser(
        prog="perflab compare", description="regressions between two report runs"
    )
    parser.add_argument("run_a", type=Path, help="baseline run folder (reports/<run-id>)")
    parser.add_argument("run_b", type=Path, help="candidate run folder")
    parser.add_argument(
        "--tolerance", type=float, default=0.05, help="relative change below which nothing is flagged"
    )
    parser.add_argument(
        "--force", action="store_true", help="compare runs from different environments anyway"
    )
    args = parser.parse_args(argv)
    if args.force:
        diff = environment_diff(load_run(args.run_a)[1], load_run(args.run_b)[1])
        for key, (va, vb) in diff.items():
            print(f"WARNING: ENVIRONMENTS DIFFER: {key}: {va!r} vs {vb!r}; timings are not comparable")
    changes = compare_runs(args.run_a, args.run_b, force=args.force, tolerance=args.tolerance)
    for note in drift_notes(load_run(args.run_a)[1], load_run(args.run_b)[1]):
        print(f"NOTE: {note}")
    print(f"{'figure':<44} {'A':>11} {'B':>11} {'change':>8}  {'95% CI':>17}  {'p':>8}  verdict")
    for c in changes:
        ci = f"[{c.ci_low:+.1%}, {c.ci_high:+.1%}]" if c.ci_low is not None else ""
        p = f"{c.p_value:.2g}" if c.p_value is not None else ""
        print(f"{c.figure:<44} {c.a:>11.4g} {c.b:>11.4g} {c.change:>+8.1%}  {ci:>17}  {p:>8}  {c.verdict}")
    regressions = [c for c in changes if c.verdict == "regression"]
    print(f"{len(regressions)} regression(s) beyond noise")
    return 1 if regressions else 0
