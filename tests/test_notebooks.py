"""Every notebook through papermill (the smoke profile scaled down: notebooks/profiles/ci.toml), into a
report folder with HTML, figures, provenance and SLO verdicts, on the real servers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perflab.config import Settings, project_root
from perflab.db import connect, drop_schema
from perflab.lab.report import run_report
from perflab.servers import Endpoints

NOTEBOOKS = sorted(p.stem for p in (project_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.slow
@pytest.mark.timeout(900)  # seven notebooks in one test: the suite's 300 s default is per ordinary test
def test_every_notebook_runs_and_records_its_figures(
    base_settings: Settings, servers: Endpoints, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = base_settings.db_schema + "_nb"
    monkeypatch.setenv("PERFLAB_DB_SCHEMA", schema)
    monkeypatch.setenv("PERFLAB_KEY_PREFIX", base_settings.key_prefix + "nb")
    monkeypatch.setenv("PERFLAB_HOME", str(base_settings.home))
    try:
        result = run_report(Settings.from_env(), "ci", reports_dir=tmp_path / "reports", log=print)
    finally:
        with connect(base_settings, servers.database_url) as conn:
            for (name,) in conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (schema.replace("_", r"\_") + "%",)
            ).fetchall():
                drop_schema(conn, name)
    failed = {n.name: n.error for n in result.notebooks if n.status != "ok"}
    assert not failed, failed
    assert [n.name for n in result.notebooks] == NOTEBOOKS
    for name in NOTEBOOKS:
        html = (result.folder / f"{name}.html").read_text()
        assert "<img" in html or name == "00_environment", f"{name} rendered no plot"
        assert "In&nbsp;[" not in html  # inputs hidden
    missing = [v.check for v in result.verdicts if v.status == "missing"]
    assert not missing, f"SLO figures no notebook recorded: {missing}"
    figures = json.loads((result.folder / "figures.json").read_text())
    assert figures["search.errors"] == 0 and figures["load.fail_ratio"] <= 0.01
    manifest = json.loads((result.folder / "manifest.json").read_text())
    assert manifest["provenance"]["git"]["sha"] and manifest["profile"] == "ci"
    assert result.run_id in (tmp_path / "reports" / "index.html").read_text()
