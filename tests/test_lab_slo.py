from __future__ import annotations

import json
from pathlib import Path

import pytest

from perflab.config import Settings
from perflab.errors import ConfigError
from perflab.lab import slo
from perflab.lab.report import run_report

SLO_TEXT = """
[[slo]]
check = "search.p95_ms < 2000"
why = "seed target"
[[slo]]
check = "cache.hit_rate >= 0.5"
[[slo]]
check = "load.p95_ms <= 100"
profiles = ["full"]
"""


def test_gate_passes_and_fails() -> None:
    objectives = slo.parse(SLO_TEXT)
    ok = slo.evaluate(objectives, {"search.p95_ms": 150.0, "cache.hit_rate": 0.9}, "smoke")
    assert [v.status for v in ok] == ["pass", "pass"]  # the full-only objective is skipped in smoke
    bad = slo.evaluate(objectives, {"search.p95_ms": 2500, "cache.hit_rate": 0.9}, "smoke")
    assert [v.status for v in bad] == ["fail", "pass"]
    assert bad[0].value == 2500 and not bad[0].passed


def test_missing_figure_fails_the_gate() -> None:
    (v,) = slo.evaluate(slo.parse('[[slo]]\ncheck = "x.y > 1"'), {"x.y": "not a number"})
    assert v.status == "missing" and not v.passed


def test_edge_of_threshold() -> None:
    objectives = slo.parse(
        '[[slo]]\ncheck = "a < 1"\n[[slo]]\ncheck = "b <= 1"\n[[slo]]\ncheck = "c == 1e-3"'
    )
    assert [v.status for v in slo.evaluate(objectives, {"a": 1, "b": 1, "c": 0.001})] == [
        "fail",
        "pass",
        "pass",
    ]


@pytest.mark.parametrize("check", ["x <", "< 3", "x ~ 3", "x > three"])
def test_malformed_check_is_a_config_error(check: str) -> None:
    with pytest.raises(ConfigError, match="is not 'figure OP number'"):
        slo.parse(f'[[slo]]\ncheck = "{check}"')


def _notebook(path: Path, value: float) -> None:
    import nbformat as nbf

    nb = nbf.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbf.v4.new_code_cell("value = 0.0\nrun_dir = ''")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbf.v4.new_code_cell("from perflab.lab import record\nrecord('t.value', value)")]
    nbf.write(nb, path)


@pytest.mark.parametrize(("value", "exit_ok"), [(1.0, True), (5.0, False)])
def test_report_gates_both_ways(tmp_path: Path, base_settings: Settings, value: float, exit_ok: bool) -> None:
    """A real papermill run of a tiny notebook: the same gate passes on 1.0 and fails on 5.0."""
    nbdir = tmp_path / "notebooks"
    (nbdir / "profiles").mkdir(parents=True)
    (nbdir / "profiles" / "smoke.toml").write_text(f"[all]\nvalue = {value}\n")
    (nbdir / "slo.toml").write_text('[[slo]]\ncheck = "t.value < 2"\n')
    _notebook(nbdir / "10_tiny.ipynb", 0.0)
    result = run_report(
        base_settings, "smoke", notebooks_dir=nbdir, reports_dir=tmp_path / "reports", log=lambda *_: None
    )
    assert [n.status for n in result.notebooks] == ["ok"]
    assert result.ok is exit_ok
    figures = json.loads((result.folder / "figures.json").read_text())
    assert figures["t.value"] == value
    assert set(figures["noise"]["10_tiny"]) >= {
        "outsider_share",
        "loadavg",
        "steal_share",
        "cpu_model",
        "noisy",
    }
    verdicts = json.loads((result.folder / "slo.json").read_text())
    assert verdicts[0]["status"] == ("pass" if exit_ok else "fail")
    index = (tmp_path / "reports" / "index.html").read_text()
    assert result.run_id in index and "t.value &lt; 2" in index
    assert (result.folder / "10_tiny.html").exists()
    manifest = json.loads((result.folder / "manifest.json").read_text())
    assert manifest["provenance"]["servers"]["pgvector"]
    assert manifest["parameters"]["10_tiny"]["value"] == value
    assert (
        manifest["calibration"]["index"] > 0 and manifest["calibration"]["start"]["seconds"]["sql_query"] > 0
    )
    assert result.exit_code == (0 if exit_ok else 1)


def test_noisy_insufficient_or_straddling_figures_are_inconclusive() -> None:
    objectives = slo.parse(
        '[[slo]]\ncheck = "s.p95_ms < 100"\n[[slo]]\ncheck = "s.errors == 0"\n'
        '[[slo]]\ncheck = "s.p99_ms < 100"\n[[slo]]\ncheck = "s.rps > 10"'
    )
    figures = {"s.p95_ms": 50.0, "s.errors": 0, "s.p99_ms": 60.0, "s.p99_ms.status": "insufficient",
               "s.rps": 12.0, "s.rps.ci95": [8.0, 14.0]}  # fmt: skip
    quiet = slo.evaluate(objectives, figures)
    assert [v.status for v in quiet] == ["pass", "pass", "inconclusive", "inconclusive"]
    assert "straddles" in quiet[3].reason and quiet[3].ci95 == (8.0, 14.0)
    noisy = slo.evaluate(objectives, figures, noisy={"s.p95_ms", "s.errors"})
    assert [v.status for v in noisy][:2] == ["inconclusive", "pass"]  # a count is not a timing figure
    assert slo.exit_code(noisy) == 3 and slo.exit_code(noisy[:2][1:]) == 0
    assert slo.exit_code([*noisy, slo.Verdict("x", "x", None, "missing", "")]) == 1
    assert slo.exit_code(noisy[1:2], notebooks_ok=False) == 1
    assert not slo.noise_sensitive("reliability.redis_stop_5xx") and slo.noise_sensitive("x.recovery_s")
    assert slo.noise_sensitive("bench_cache.get_overhead_vs_raw") and slo.noise_sensitive("v.p95_vs_raw")


def test_partial_runs_skip_missing_figures() -> None:
    objectives = slo.parse('[[slo]]\ncheck = "a.b < 1"\n[[slo]]\ncheck = "c.d < 1"')
    verdicts = slo.evaluate(objectives, {"a.b": 0.5}, partial=True)
    assert [(v.figure, v.status) for v in verdicts] == [("a.b", "pass")]


def test_profiles_layer_with_extends(tmp_path: Path) -> None:
    from perflab.lab.report import load_profile

    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "base.toml").write_text("[all]\nseed = 1\n[nb]\na = 1\nb = 2\n")
    (tmp_path / "profiles" / "small.toml").write_text('extends = "base"\n[nb]\nb = 3\n')
    assert load_profile(tmp_path, "small") == {"all": {"seed": 1}, "nb": {"a": 1, "b": 3}}
    (tmp_path / "profiles" / "loop.toml").write_text('extends = "loop"\n')
    with pytest.raises(ConfigError, match="extends itself"):
        load_profile(tmp_path, "loop")


def test_threshold_comes_from_slo_toml(tmp_path: Path) -> None:
    assert slo.threshold("search.p95_ms") == 2000  # the seed's 2 s target, written once
    with pytest.raises(ConfigError, match="no objective"):
        slo.threshold("no.such_figure")


def test_threshold_for_a_profile_prefers_its_own_objective(tmp_path: Path) -> None:
    path = tmp_path / "slo.toml"
    path.write_text(
        '[[slo]]\ncheck = "x.ratio >= 1.0"\n\n[[slo]]\ncheck = "x.ratio >= 1.25"\nprofiles = ["full"]\n'
        '\n[[slo]]\ncheck = "y.ms < 5"\nprofiles = ["full"]\n'
    )
    assert slo.threshold("x.ratio", path) == 1.0
    assert slo.threshold("x.ratio", path, profile="full") == 1.25
    assert slo.threshold("x.ratio", path, profile="smoke") == 1.0
    assert slo.threshold("y.ms", path, profile="full") == 5
    with pytest.raises(ConfigError, match="for profile 'smoke'"):
        slo.threshold("y.ms", path, profile="smoke")


def test_the_load_and_images_bounds_are_written_once() -> None:
    """The load test's p95 gate and the images bench's targets read slo.toml, not a copy."""
    from perflab.lab import loadtest

    assert loadtest.default_p95_slo_ms() == slo.threshold("load.p95_ms")
    assert slo.threshold("images.throughput_ratio_vs_pyvips", profile="full") == 1.25
    assert slo.threshold("images.ssim") == 0.95


def test_resume_keeps_what_passed_and_runs_what_failed(tmp_path: Path, base_settings: Settings) -> None:
    """A run whose second notebook failed, resumed: the first is not run again, the second is, and
    the run ends ok with both notebooks' figures. The manifest is on disk after every notebook (the
    second notebook reads it), so a run killed part-way can be resumed too."""
    import nbformat as nbf

    nbdir = tmp_path / "notebooks"
    (nbdir / "profiles").mkdir(parents=True)
    runs, ready = tmp_path / "runs.txt", tmp_path / "ready"
    (nbdir / "profiles" / "smoke.toml").write_text(f"[all]\nmark = {str(runs)!r}\ngate = {str(ready)!r}\n")
    (nbdir / "slo.toml").write_text('[[slo]]\ncheck = "a.value < 2"\n[[slo]]\ncheck = "b.value < 2"\n')
    bodies = {
        "10_a": "open(mark, 'a').write('a\\n')\nrecord('a.value', 1.0)",
        "20_b": "import json, os\n"
        "m = json.load(open(os.path.join(run_dir, 'manifest.json')))  # written after every notebook\n"
        "assert m['state'] == 'incomplete' and m['notebooks'][0]['name'] == '10_a', m\n"
        "assert os.path.exists(gate), 'not ready'\nrecord('b.value', 1.0)",
    }
    for name, body in bodies.items():
        nb = nbf.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        params = nbf.v4.new_code_cell("mark = ''\ngate = ''\nrun_dir = ''")
        params.metadata["tags"] = ["parameters"]
        nb.cells = [params, nbf.v4.new_code_cell("from perflab.lab import record\n" + body)]
        nbf.write(nb, nbdir / f"{name}.ipynb")
    quiet = {"notebooks_dir": nbdir, "reports_dir": tmp_path / "reports", "log": lambda *_: None}
    first = run_report(base_settings, "smoke", **quiet)  # type: ignore[arg-type]
    assert [n.status for n in first.notebooks] == ["ok", "failed"] and first.exit_code == 1
    with pytest.raises(ConfigError, match="profile 'smoke', not 'full'"):
        (nbdir / "profiles" / "full.toml").write_text("")
        run_report(base_settings, "full", resume=first.run_id, **quiet)  # type: ignore[arg-type]
    ready.write_text("")
    second = run_report(base_settings, "smoke", resume=first.run_id, **quiet)  # type: ignore[arg-type]
    assert second.folder == first.folder and [n.status for n in second.notebooks] == ["ok", "ok"]
    assert second.exit_code == 0 and runs.read_text() == "a\n"  # 10_a ran once
    figures = json.loads((second.folder / "figures.json").read_text())
    assert figures["a.value"] == figures["b.value"] == 1.0 and set(figures["noise"]) == {"10_a", "20_b"}
    manifest = json.loads((second.folder / "manifest.json").read_text())
    assert len(manifest["resumed"]) == 1 and len(manifest["calibration_before"]) == 1
    assert manifest["state"] == "ok" and set(manifest["parameters"]) == {"10_a", "20_b"}
