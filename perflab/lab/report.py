"""`perflab report`: run every notebook through papermill under a profile, render HTML, gate on SLOs.

A run folder `reports/<run-id>/` holds: each executed notebook (.ipynb) and its HTML (inputs hidden),
figures.json (every figure the notebooks recorded), manifest.json (provenance + parameters + per-notebook
status and time, the calibration probe at both ends and its speed index, a noise record per notebook),
slo.json (verdicts). `reports/index.html` links every run with its SLO summary (value, CI, pass / fail /
inconclusive) and the history page.

Each notebook runs as a measured phase: the lab's processes are this process's tree (the kernel, the
services and load clients it starts) and the embedded servers; outsiders are everyone else. A timing
figure from a noisy notebook is judged "inconclusive" (perflab.lab.slo).
"""

from __future__ import annotations

import ast
import html
import json
import os
import time
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from perflab.config import Settings, project_root
from perflab.errors import ConfigError
from perflab.lab import calibrate, slo
from perflab.lab.cpu import ProcessTree, Source, server_sources, watching
from perflab.lab.figures import FIGURES_ENV, gather
from perflab.lab.history import write_history
from perflab.lab.phase import Phase
from perflab.lab.provenance import collect


@dataclass
class NotebookRun:
    name: str
    status: str  # "ok" | "failed"
    seconds: float
    error: str = ""


@dataclass
class RunResult:
    run_id: str
    folder: Path
    notebooks: list[NotebookRun] = field(default_factory=list)
    verdicts: list[slo.Verdict] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 pass, 1 fail (a gate failed or is missing, or a notebook failed), 3 inconclusive only."""
        return slo.exit_code(self.verdicts, all(n.status == "ok" for n in self.notebooks))

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def state(self) -> str:
        return {0: "ok", 1: "failed", 3: "inconclusive"}[self.exit_code]


def load_profile(notebooks_dir: Path, profile: str, _seen: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """A profile's parameters; `extends = "other"` at the top layers this file over another profile."""
    path = notebooks_dir / "profiles" / f"{profile}.toml"
    if not path.is_file():
        choices = sorted(p.stem for p in (notebooks_dir / "profiles").glob("*.toml"))
        raise ConfigError(f"no profile {profile!r} ({path} missing); choose from {', '.join(choices)}")
    if profile in _seen:
        raise ConfigError(f"profile {profile!r} extends itself (via {' -> '.join(_seen)})")
    data = tomllib.loads(path.read_text())
    base_name = data.pop("extends", None)
    if base_name is None:
        return data
    merged = load_profile(notebooks_dir, str(base_name), (*_seen, profile))
    for section, params in data.items():
        merged[section] = {**merged.get(section, {}), **params}
    return merged


def parameters_for(profile: dict[str, dict[str, Any]], notebook: str) -> dict[str, Any]:
    params = dict(profile.get("all", {}))
    params.update(profile.get(notebook, {}))
    return params


def declared_parameters(notebook: Path) -> dict[str, Any]:
    """The notebook's parameters cell (the cell tagged `parameters`): each name and its default. The
    defaults are literals, so their types are what a profile or an override must match."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        raise ConfigError(f"{notebook.name} has no cell tagged 'parameters'")
    declared: dict[str, Any] = {}
    for stmt in ast.parse(cells[0].source).body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            try:
                declared[stmt.targets[0].id] = ast.literal_eval(stmt.value)
            except ValueError as exc:
                raise ConfigError(
                    f"{notebook.name}: parameter {stmt.targets[0].id} is not a literal"
                ) from exc
    return declared


def _type_name(value: Any) -> str:
    return type(value).__name__


def _fits(value: Any, default: Any) -> bool:
    """Does `value` have the type of `default`? An int is a float; a list's items match its first."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    if isinstance(default, list):
        return isinstance(value, list) and (not default or all(_fits(v, default[0]) for v in value))
    return isinstance(value, type(default))


def check_parameters(notebook: str, params: dict[str, Any], declared: dict[str, Any], source: str) -> None:
    """Every parameter must be one the notebook declares, of its default's type; papermill itself would
    only warn, and a typo would be recorded as a real parameter."""
    known = ", ".join(sorted(declared))
    for name, value in params.items():
        if name not in declared:
            raise ConfigError(f"{source}: {notebook} has no parameter {name!r}; known parameters: {known}")
        if not _fits(value, declared[name]):
            raise ConfigError(
                f"{source}: {notebook} parameter {name!r} is {_type_name(value)} {value!r}, expected "
                f"{_type_name(declared[name])} like its default {declared[name]!r}; known parameters: {known}"
            )


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`-p name=value` pairs; a value is read as TOML (200, 0.5, true, [1, 2], "text") or else as text."""
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name.strip().isidentifier():
            raise ConfigError(f"-p {pair!r}: expected name=value")
        try:
            out[name.strip()] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            out[name.strip()] = raw
    return out


def plan_parameters(
    notebooks_dir: Path,
    names: list[str],
    prof: dict[str, dict[str, Any]],
    profile: str,
    overrides: dict[str, Any],
) -> dict[str, dict[str, Any]]:
    """Each selected notebook's parameters (profile, then overrides), all checked before any kernel
    starts. A profile section must name a notebook (or be `all`)."""
    every = sorted(p.stem for p in notebooks_dir.glob("[0-9][0-9]_*.ipynb"))
    for section in prof:
        if section != "all" and section not in every:
            raise ConfigError(
                f"profile {profile}: section [{section}] names no notebook; notebooks: {', '.join(every)}"
            )
    planned: dict[str, dict[str, Any]] = {}
    for name in names:
        declared = declared_parameters(notebooks_dir / f"{name}.ipynb")
        params = parameters_for(prof, name)
        check_parameters(name, params, declared, f"profile {profile}")
        given = {k: str(v) if isinstance(declared.get(k), str) and not isinstance(v, str) else v
                 for k, v in overrides.items()}  # fmt: skip
        check_parameters(name, given, declared, "-p")
        planned[name] = params | given
    return planned


def _render_html(executed: Path, target: Path) -> None:
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nbformat.read(executed, as_version=4))
    target.write_text(body)


def run_report(
    settings: Settings,
    profile: str = "smoke",
    *,
    notebooks_dir: Path | None = None,
    reports_dir: Path | None = None,
    only: list[str] | None = None,
    slo_file: Path | None = None,
    run_id: str | None = None,
    overrides: dict[str, Any] | None = None,
    resume: str | None = None,
    log: Any = print,
) -> RunResult:
    """Run the notebooks into reports/<run_id>/. `resume` names an earlier run of the same profile:
    its notebooks that finished ok are kept (figures, noise, parameters, time) and the others run
    again into the same folder; a long run that failed late costs only what failed (the seeded
    libraries are reused in any case: seeding finds its fingerprint and does nothing)."""
    import papermill

    root = project_root()
    notebooks_dir = notebooks_dir or root / "notebooks"
    reports_dir = reports_dir or root / "reports"
    slo_file = slo_file or notebooks_dir / "slo.toml"
    prof = load_profile(notebooks_dir, profile)
    objectives = slo.load(slo_file)
    names = sorted(p.stem for p in notebooks_dir.glob("[0-9][0-9]_*.ipynb"))
    if only:
        names = [n for n in names if any(n.startswith(o) for o in only)]
        if not names:
            raise ConfigError(f"--only {' '.join(only)} selects no notebook in {notebooks_dir}")
    planned = plan_parameters(notebooks_dir, names, prof, profile, overrides or {})
    kept: list[NotebookRun] = []
    if resume and run_id and run_id != resume:
        raise ConfigError(f"--run-id {run_id} and --resume {resume}: a resumed run keeps its own id")
    if resume:
        run_id, manifest, kept = _resumable(reports_dir, resume, profile, names)
        log(f"resuming {run_id}: keeping {', '.join(k.name for k in kept) or 'nothing'}")
    else:
        run_id = run_id or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + f"-{profile}"
        manifest = {"run_id": run_id, "profile": profile, "parameters": {}, "noise": {}}
    folder = reports_dir / run_id
    (folder / "figures").mkdir(parents=True, exist_ok=True)
    manifest["provenance"] = collect(settings)
    manifest["overrides"] = overrides or {}
    log("calibration probe (start)")
    cal_start = calibrate.probe(settings)
    sources: dict[str, Source] = {"lab": ProcessTree(os.getpid()), **server_sources(settings)}
    noisy_figures: set[str] = set()
    result = RunResult(run_id, folder, notebooks=list(kept))
    for run in kept:
        if manifest["noise"].get(run.name, {}).get("noisy"):
            nb_figures = folder / "figures" / f"{run.name}.json"
            noisy_figures.update(json.loads(nb_figures.read_text()) if nb_figures.exists() else {})
    manifest["state"] = "incomplete"  # until the run ends; on disk from the start, and after every notebook
    manifest["notebooks"] = [n.__dict__ for n in kept]
    _write_manifest(folder, manifest)
    for name in [n for n in names if n not in {k.name for k in kept}]:
        params = planned[name] | {"run_dir": str(folder), "profile": profile}
        manifest["parameters"][name] = params
        executed = folder / f"{name}.ipynb"
        os.environ[FIGURES_ENV] = str(folder / "figures" / f"{name}.json")
        log(f"[{name}] running ({profile})")
        started = time.perf_counter()
        phase = Phase(name, sources)
        try:
            with watching(sources), phase:  # sampled: a notebook's backends come and go inside it
                papermill.execute_notebook(
                    str(notebooks_dir / f"{name}.ipynb"), str(executed), parameters=params,
                    kernel_name="python3", cwd=str(notebooks_dir), progress_bar=False,
                )  # fmt: skip
            run = NotebookRun(name, "ok", time.perf_counter() - started)
        except Exception as exc:  # a failed notebook is reported, and the others still run
            run = NotebookRun(name, "failed", time.perf_counter() - started, " ".join(str(exc).split())[:500])
        finally:
            os.environ.pop(FIGURES_ENV, None)
        noise = phase.finish(1).noise
        manifest["noise"][name] = noise.as_dict()
        if noise.noisy:
            nb_figures = folder / "figures" / f"{name}.json"
            noisy_figures.update(json.loads(nb_figures.read_text()) if nb_figures.exists() else {})
        if executed.exists():
            _render_html(executed, folder / f"{name}.html")
        log(f"[{name}] {run.status} in {run.seconds:.1f}s" + (f": {run.error[:200]}" if run.error else ""))
        result.notebooks.append(run)
        # after every notebook: a run killed or crashed later can still be resumed from what it did
        manifest["notebooks"] = [n.__dict__ for n in sorted(result.notebooks, key=lambda n: n.name)]
        _write_manifest(folder, manifest)
    log("calibration probe (end)")
    manifest["calibration"] = calibrate.summarize(cal_start, calibrate.probe(settings))
    figures = gather(folder / "figures")
    figures["noise"] = manifest["noise"]
    figures["calibration.index"] = manifest["calibration"]["index"]
    result.verdicts = slo.evaluate(objectives, figures, profile, partial=bool(only), noisy=noisy_figures)
    result.notebooks.sort(key=lambda n: n.name)
    manifest["notebooks"] = [n.__dict__ for n in result.notebooks]
    manifest["ok"] = result.ok
    manifest["state"] = result.state
    manifest["exit_code"] = result.exit_code
    (folder / "figures.json").write_text(json.dumps(figures, indent=1, sort_keys=True))
    (folder / "slo.json").write_text(json.dumps(slo.as_rows(result.verdicts), indent=1))
    _write_manifest(folder, manifest)
    write_index(reports_dir)
    write_history(reports_dir)
    return result


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))


def _resumable(
    reports_dir: Path, run_id: str, profile: str, names: list[str]
) -> tuple[str, dict[str, Any], list[NotebookRun]]:
    """An earlier run's id, manifest and the selected notebooks it finished ok (kept on resume)."""
    folder = reports_dir / run_id
    manifest = _load(folder / "manifest.json")
    if not isinstance(manifest, dict):
        raise ConfigError(f"--resume {run_id}: no readable {folder / 'manifest.json'}")
    if manifest.get("profile") != profile:
        raise ConfigError(
            f"--resume {run_id}: that run is profile {manifest.get('profile')!r}, not {profile!r}"
        )
    kept = [
        NotebookRun(**nb)
        for nb in manifest.get("notebooks", [])
        if nb.get("status") == "ok" and nb.get("name") in names
        and (folder / "figures" / f"{nb['name']}.json").exists()
    ]  # fmt: skip
    manifest.setdefault("parameters", {})
    manifest.setdefault("noise", {})
    manifest.setdefault("resumed", []).append(datetime.now(UTC).isoformat(timespec="seconds"))
    if "calibration" in manifest:  # the probes of the attempt before, beside this attempt's own
        manifest.setdefault("calibration_before", []).append(manifest.pop("calibration"))
    return run_id, manifest, kept


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_index(reports_dir: Path) -> Path:
    """reports/index.html: every run, newest first, with its notebooks and SLO table."""
    runs = []
    for manifest_path in sorted(reports_dir.glob("*/manifest.json"), reverse=True):
        manifest = _load(manifest_path)
        if manifest:
            runs.append((manifest_path.parent, manifest, _load(manifest_path.parent / "slo.json") or []))
    esc = html.escape
    parts = [
        "<!doctype html><meta charset=utf-8><title>perflab reports</title>",
        "<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:70em}"
        "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em}"
        ".pass{background:#dfd}.fail,.failed,.missing{background:#fdd}.ok{background:#dfd}"
        ".inconclusive,.noisy{background:#ffd}</style>",
        "<h1>perflab reports</h1>",
        "<p><a href='history.html'>History: every headline figure across runs, with change points</a>"
        " (<code>perflab history</code>)</p>",
    ]
    for folder, manifest, verdicts in runs:
        prov = manifest.get("provenance", {})
        sha = (prov.get("git", {}).get("sha") or "?")[:10]
        state = str(manifest.get("state") or ("ok" if manifest.get("ok") else "failed"))
        parts.append(
            f"<h2 id='{esc(folder.name)}'>{esc(folder.name)} <small class={state}>{state}</small></h2>"
            f"<p>profile <b>{esc(str(manifest.get('profile')))}</b>, git {esc(sha)}, "
            f"{esc(str(prov.get('machine', {}).get('cpu_model', '')))} × {prov.get('machine', {}).get('cpus')}, "
            f"PostgreSQL {esc(str(prov.get('servers', {}).get('postgres')))}, "
            f"pgvector {esc(str(prov.get('servers', {}).get('pgvector')))}, "
            f"Redis {esc(str(prov.get('servers', {}).get('redis')))}</p>"
        )
        cal = manifest.get("calibration") or {}
        if cal:
            drift = cal.get("drift")
            parts.append(
                f"<p>machine speed index <b>{cal.get('index')}</b> (calibration probe, start "
                f"{(cal.get('start') or {}).get('index')}, end {(cal.get('end') or {}).get('index')}; drift "
                f"{'—' if drift is None else f'{drift:+.1%}'}{' <b>DRIFTED</b>' if cal.get('drifted') else ''})</p>"
            )
        noise = manifest.get("noise") or {}
        parts.append(
            "<table><tr><th>notebook</th><th>status</th><th>seconds</th><th>outsiders' CPU</th>"
            "<th>load avg</th><th>steal</th></tr>"
        )
        for nb in manifest.get("notebooks", []):
            link = f"{folder.name}/{nb['name']}.html"
            n = noise.get(nb["name"], {})
            share, steal = n.get("outsider_share"), n.get("steal_share")
            parts.append(
                f"<tr><td><a href='{esc(link)}'>{esc(nb['name'])}</a></td>"
                f"<td class={esc(nb['status'])}>{esc(nb['status'])}</td><td>{nb['seconds']:.1f}</td>"
                f"<td class={'noisy' if n.get('noisy') else 'ok'}>"
                f"{'—' if share is None else f'{share:.0%}'}{' noisy' if n.get('noisy') else ''}</td>"
                f"<td>{esc(str((n.get('loadavg') or ['—'])[0]))}</td>"
                f"<td>{'—' if steal is None else f'{steal:.1%}'}</td></tr>"
            )
        parts.append(
            "</table><table><tr><th>SLO</th><th>value</th><th>95% CI</th><th>status</th><th>why</th></tr>"
        )
        for v in verdicts:
            value = "—" if v["value"] is None else f"{v['value']:.4g}"
            ci = v.get("ci95")
            ci_text = f"[{ci[0]:.4g}, {ci[1]:.4g}]" if ci and None not in ci else "—"
            reason = f" ({v['reason']})" if v.get("reason") else ""
            parts.append(
                f"<tr><td><code>{esc(v['check'])}</code></td><td>{value}</td><td>{ci_text}</td>"
                f"<td class={esc(v['status'])}>{esc(v['status'])}{esc(reason)}</td><td>{esc(v['why'])}</td></tr>"
            )
        parts.append("</table>")
    if not runs:
        parts.append("<p>No runs yet: <code>make report</code>.</p>")
    index = reports_dir / "index.html"
    index.write_text("\n".join(parts))
    return index
