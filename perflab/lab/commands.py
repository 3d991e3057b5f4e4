"""`perflab report`, `perflab compare`, `perflab loadtest`: the lab's commands.

Exit codes of `perflab report`: 0 every SLO passed; 1 an SLO failed or its figure is missing, or a
notebook failed; 2 usage error; 3 nothing failed but some SLO is inconclusive (judged on a figure
measured while the machine was noisy, with too few samples, or whose CI straddles the threshold).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from perflab.config import Settings, project_root
from perflab.errors import PerflabError
from perflab.lab.loadtest import run_locust
from perflab.lab.report import parse_overrides, run_report


def report(settings: Settings, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="perflab report", description="run the notebooks, render reports/")
    parser.add_argument("--profile", default="smoke", help="parameters file notebooks/profiles/NAME.toml")
    parser.add_argument("--only", nargs="*", help="notebook name prefixes to run (default: all)")
    parser.add_argument("--slo", type=Path, help="SLO file (default notebooks/slo.toml)")
    parser.add_argument("--reports", type=Path, help="reports folder (default reports/)")
    parser.add_argument("--run-id", help="folder name under reports/ (default: UTC time + profile)")
    parser.add_argument(
        "--resume", metavar="RUN_ID",
        help="finish an earlier run of this profile: keep its notebooks that passed, run the others again",
    )  # fmt: skip
    parser.add_argument(
        "-p", "--param", action="append", default=[], metavar="NAME=VALUE",
        help="override a parameter of every selected notebook (use with --only); recorded in the manifest",
    )  # fmt: skip
    args = parser.parse_args(argv)
    result = run_report(
        settings,
        args.profile,
        only=args.only,
        slo_file=args.slo,
        reports_dir=args.reports,
        run_id=args.run_id,
        overrides=parse_overrides(args.param),
        resume=args.resume,
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


def loadtest(settings: Settings, argv: list[str]) -> int:
    from perflab.lab.harness import ServiceProcess

    parser = argparse.ArgumentParser(
        prog="perflab loadtest", description="Locust, headless, into a report folder"
    )
    parser.add_argument("--host", help="service URL (default: start a local `perflab serve` for the run)")
    parser.add_argument("--users", type=int, default=8, help="concurrent Locust users")
    parser.add_argument("--spawn-rate", type=float, help="users started per second (default: all at once)")
    parser.add_argument("--duration", default="30s", help="run time, e.g. 30s, 5m")
    parser.add_argument("--workers", type=int, default=0, help="distributed: 1 master + N worker processes")
    parser.add_argument("--steps", help="step through concurrency levels, e.g. 1,8,32 (LoadTestShape)")
    parser.add_argument("--step-seconds", type=float, default=20.0)
    parser.add_argument("--open-rate", type=float, default=0.0, help="open model: requests/s per user")
    parser.add_argument("--p95-slo-ms", type=float, help="search p95 gate (default: slo.toml's load.p95_ms)")
    parser.add_argument("--seeded-users", type=int, default=20, help="sign in as user1..userN@example.com")
    parser.add_argument("--serve-workers", type=int, default=2, help="uvicorn workers of the local service")
    parser.add_argument("--out", type=Path, help="output folder (default reports/loadtest-<time>)")
    args = parser.parse_args(argv)
    out = args.out or project_root() / "reports" / (
        "loadtest-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    )
    kwargs = dict(
        users=args.users, duration=args.duration, spawn_rate=args.spawn_rate, workers=args.workers,
        steps=args.steps, step_seconds=args.step_seconds, open_rate=args.open_rate,
        p95_slo_ms=args.p95_slo_ms, seeded_users=args.seeded_users,
    )  # fmt: skip
    if args.host:
        result = run_locust(args.host, out, **kwargs)
    else:
        out.mkdir(parents=True, exist_ok=True)
        with ServiceProcess(settings, workers=args.serve_workers, log=out / "serve.log") as svc:
            result = run_locust(svc.url, out, **kwargs)
    if not result.summary:
        lines = (out / "locust.log").read_text(errors="replace").strip().splitlines()
        raise PerflabError(
            f"locust exited with {result.exit_code} and wrote no summary: "
            + (lines[-1][:300] if lines else "locust.log is empty")
            + f" (see {out / 'locust.log'})"
        )
    total = result.summary.get("hdr_total", {})
    print(
        f"requests {result.summary.get('requests')}, failures {result.summary.get('failures')}, "
        f"rps {result.summary.get('rps', 0):.1f}, p50 {total.get('p50_ms')} ms, p95 {total.get('p95_ms')} ms "
        f"(HDR); breaches: {result.summary.get('breaches') or 'none'}"
    )
    for scenario, row in result.summary.get("scenarios", {}).items():
        print(f"  {scenario:<18} {row['users']:>4} users {row['requests']:>8} requests")
    print(f"loadtest: {out}/ (locust.html, locust_stats*.csv, locust_summary.json)")
    return result.exit_code
