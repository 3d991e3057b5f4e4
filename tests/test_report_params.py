"""Report parameters are checked against each notebook's parameters cell before any kernel starts:
an unknown or mistyped one (profile or `-p`) is an error naming the known ones; `-p` overrides are
recorded in the manifest. And a notebook's tqdm progress bar leaves no IProgress warning."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from perflab.config import Settings
from perflab.errors import ConfigError
from perflab.lab.report import load_profile, parse_overrides, plan_parameters, run_report

pytest.importorskip("papermill", reason="the lab extra")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def _lab(tmp_path: Path, profile: str) -> Path:
    """A notebooks folder holding 00_environment and one profile, `bad`."""
    folder = tmp_path / "notebooks"
    (folder / "profiles").mkdir(parents=True)
    shutil.copy(NOTEBOOKS / "00_environment.ipynb", folder)
    shutil.copy(NOTEBOOKS / "slo.toml", folder)
    (folder / "profiles" / "bad.toml").write_text(profile)
    return folder


@pytest.mark.parametrize("name", ["smoke", "ci", "full"])
def test_shipped_profiles_match_the_notebooks(name: str) -> None:
    names = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    planned = plan_parameters(NOTEBOOKS, names, load_profile(NOTEBOOKS, name), name, {})
    assert set(planned) == set(names)


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        (
            "[00_environment]\nsed = 1\n",
            r"00_environment has no parameter 'sed'; known parameters: profile, run_dir, seed",
        ),
        (
            '[00_environment]\nseed = "42"\n',
            r"parameter 'seed' is str '42', expected int like its default 42",
        ),
        (
            "[00_enviroment]\nseed = 1\n",
            r"section \[00_enviroment\] names no notebook; notebooks: 00_environment",
        ),
        ("[all]\nseeds = 1\n", r"has no parameter 'seeds'"),
    ],
)
def test_bad_profile_fails_before_any_kernel(
    tmp_path: Path, settings: Settings, profile: str, message: str
) -> None:
    folder = _lab(tmp_path, profile)
    with pytest.raises(ConfigError, match=message):
        run_report(
            settings, "bad", notebooks_dir=folder, reports_dir=tmp_path / "reports", log=lambda *_: None
        )
    assert not (tmp_path / "reports").exists()  # nothing ran, nothing was written


def test_override_is_checked_and_recorded(tmp_path: Path, settings: Settings) -> None:
    folder = _lab(tmp_path, "[all]\nseed = 42\n")
    with pytest.raises(ConfigError, match=r"-p: 00_environment parameter 'seed' is float 1.5"):
        run_report(settings, "bad", notebooks_dir=folder, reports_dir=tmp_path / "r", overrides={"seed": 1.5})
    result = run_report(
        settings, "bad", notebooks_dir=folder, reports_dir=tmp_path / "r", only=["00"],
        overrides=parse_overrides(["seed=7"]), run_id="one", log=lambda *_: None,
    )  # fmt: skip
    assert [n.status for n in result.notebooks] == ["ok"], result.notebooks
    manifest = json.loads((tmp_path / "r" / "one" / "manifest.json").read_text())
    assert manifest["overrides"] == {"seed": 7}
    assert manifest["parameters"]["00_environment"]["seed"] == 7


def test_cli_override_typo_is_one_line(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "perflab.cli", "report", "--only", "00", "-p", "sed=1", "--reports", str(tmp_path)],
        capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines() == [
        "perflab report: error: -p: 00_environment has no parameter 'sed'; known parameters: profile, run_dir, seed"
    ]
    assert list(tmp_path.iterdir()) == []


def test_parse_overrides() -> None:
    assert parse_overrides(["a=200", "b=0.5", "c=[1, 2]", "d=2,8,16", 'e="x y"', "f=true"]) == {
        "a": 200, "b": 0.5, "c": [1, 2], "d": "2,8,16", "e": "x y", "f": True,
    }  # fmt: skip
    with pytest.raises(ConfigError, match="expected name=value"):
        parse_overrides(["novalue"])


def test_progress_bar_in_a_notebook_leaves_no_iprogress_warning(tmp_path: Path) -> None:
    import nbformat
    import papermill

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("from tqdm.auto import tqdm\nfor _ in tqdm(range(3)):\n    pass")]
    source, out = tmp_path / "bar.ipynb", tmp_path / "bar.out.ipynb"
    nbformat.write(nb, source)
    papermill.execute_notebook(str(source), str(out), kernel_name="python3", progress_bar=False)
    text = json.dumps(nbformat.read(out, as_version=4).cells[0].outputs)
    assert "IProgress" not in text and "ipywidgets" not in text, text[:500]


def test_standalone_notebook_records_into_a_scratch_run_folder(tmp_path: Path) -> None:
    code = (
        "from perflab.lab import record\nfrom perflab.lab.figures import run_folder\n"
        "record('demo.value', 3)\nrecord('demo.other', [1, 2])\nprint(run_folder(''))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PERFLAB_FIGURES_FILE"}
    env.update(PYTHONPATH=str(ROOT), JPY_SESSION_NAME=str(tmp_path / "07_demo.ipynb"))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    said, folder = r.stdout.strip().splitlines()
    run = Path(folder)
    try:
        assert said == f"perflab: not run by `perflab report`: figures and files go to {run}/"
        assert run.parent == ROOT / "reports" and run.name.startswith("scratch-")
        assert json.loads((run / "figures" / "07_demo.json").read_text()) == {
            "demo.other": [1, 2],
            "demo.value": 3,
        }
    finally:
        shutil.rmtree(run, ignore_errors=True)
