"""The `perflab` command line: every command resolves and has help, errors are one line, and a command
that needs an extra says which before doing anything (simulated by a sitecustomize that refuses the
extra's modules, as a `pip install perflab` without extras would)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from perflab import cli
from perflab.bench.commands import BENCHES
from perflab.db.commands import parser as db_parser
from perflab.extras import EXTRAS

ROOT = Path(__file__).resolve().parents[1]
PERFLAB = [sys.executable, "-m", "perflab.cli"]


def _help(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's --help
        code = int(exc.code or 0)
    assert code == 0, argv
    return capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_every_command_resolves_and_has_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.COMMANDS[name].help.strip()
    out = _help(capsys, [name, "--help"])
    prog = "perflab db seed" if name == "seed" else f"perflab {name}"
    assert out.startswith(f"usage: {prog}"), out[:200]


@pytest.mark.parametrize("name", sorted(BENCHES))
def test_every_benchmark_resolves_and_has_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert BENCHES[name].help.strip()
    assert _help(capsys, ["bench", name, "--help"]).startswith(f"usage: perflab bench {name}")


def test_db_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    actions = next(a for a in db_parser()._actions if a.dest == "action")
    names = list(actions.choices)  # type: ignore[union-attr]
    assert {"migrate", "reset", "indexes", "explain", "seed"} <= set(names)
    out = _help(capsys, ["db", "--help"])
    db_line = next(line for line in _help(capsys, ["--help"]).splitlines() if line.strip().startswith("db "))
    for name in names:
        assert f"    {name} " in out, name
        assert name in db_line, name


def _blocked_env(tmp_path: Path, modules: set[str]) -> dict[str, str]:
    """An environment whose Python cannot import `modules`, as if their extra were not installed."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(
        "import sys\n"
        f"BLOCKED = {sorted(modules)!r}\n"
        "class _Refuse:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in BLOCKED:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "        return None\n"
        "sys.meta_path.insert(0, _Refuse())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT)])
    return env


LAB_ONLY = set(EXTRAS["lab"]) | set(EXTRAS["ml"]) | {"blurhash"}


@pytest.mark.parametrize(
    "argv",
    [
        ["report", "--only", "00"],
        ["loadtest", "--duration", "1s", "--out", "{tmp}/loadtest"],
        ["compare", "{tmp}/a", "{tmp}/b"],
        ["corpus", "--root", "{tmp}/corpus"],
        ["bench", "images", "--json"],
        ["bench", "cdn", "--json"],
        ["lab", "--port", "1"],
    ],
)
def test_lab_command_without_the_extra_says_which_in_one_line(tmp_path: Path, argv: list[str]) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    before = sorted((ROOT / "reports").iterdir()) if (ROOT / "reports").is_dir() else []
    r = subprocess.run(
        [*PERFLAB, *argv], env=_blocked_env(tmp_path, LAB_ONLY), capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "pip install 'perflab[lab]'" in lines[0], lines[0]
    assert r.stdout == ""
    # nothing was done: no output folder, no new report run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]
    assert (sorted((ROOT / "reports").iterdir()) if (ROOT / "reports").is_dir() else []) == before


def test_library_works_without_extras(tmp_path: Path) -> None:
    code = (
        "import io\n"
        "from PIL import Image\n"
        "import perflab, perflab.cache, perflab.db, perflab.images, perflab.config, perflab.cdn\n"
        "from perflab.images import ImagePipeline\n"
        "buf = io.BytesIO(); Image.new('RGB', (64, 48), (200, 30, 30)).save(buf, 'PNG')\n"
        "out = ImagePipeline().process(buf.getvalue(), filename='red.png')\n"
        "assert out.derivatives and out.blurhash\n"
        "print('ok', len(out.derivatives))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        env=_blocked_env(tmp_path, LAB_ONLY),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("ok")


def test_database_error_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    r = subprocess.run(
        [*PERFLAB, "db", "explain", "SELECT * FROM perflab_no_such_table"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert r.returncode == 3, r.stderr
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("perflab db: error:")]
    assert errors == [
        'perflab db: error: PostgreSQL: UndefinedTable [42P01]: relation "perflab_no_such_table" does not exist'
    ]


def test_server_error_line_redacts_passwords() -> None:
    import redis

    line = cli.server_error_line(redis.ConnectionError("cannot reach redis://app:s3cret@db.example:6379/0"))
    assert line == "Redis: ConnectionError: cannot reach redis://app:***@db.example:6379/0"
    assert cli.server_error_line(ValueError("x")) is None


def test_bench_cdn_json_is_one_object_on_one_line(
    image_corpus: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from perflab.bench import cdn
    from perflab.cdn.edge import find_nginx

    if find_nginx() is None:
        pytest.skip("nginx is not installed (make sysdeps)")
    monkeypatch.setattr(cdn, "photo_paths", lambda: [image_corpus / "photos" / "rocket.jpg"])
    assert cdn.main(None, ["--json", "--requests", "40", "--concurrency", "2"]) == 0  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.endswith("\n")
    d = json.loads(out)
    assert d["benchmark"] == "cdn"
    assert set(d["url_minting"]["median"]) == {"minter", "sign_each", "unsigned"}  # beside the old keys
    assert all(d["figures"][f"url_minting_{arm}_ms"]["median"] > 0 for arm in d["url_minting"]["median"])
    assert d["url_minting"]["derivatives_per_item"] > 1  # the corpus's real records: a srcset to mint


def test_sigterm_is_one_line_exit_143_and_cleanup_runs(tmp_path: Path) -> None:
    """`kill` / `timeout` on a command: its finally blocks run (servers stopped, kernels shut down), it
    says so in one line and exits 128 + 15, with no traceback."""
    marker = tmp_path / "cleaned"
    code = f"""
import dataclasses, os, signal, sys, threading, time
from perflab import cli

def slow(settings, argv):
    try:
        time.sleep(60)
    finally:
        open({str(marker)!r}, "w").close()

cli.COMMANDS["status"] = dataclasses.replace(cli.COMMANDS["status"], run=slow)
threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
sys.exit(cli.main(["status"]))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert r.returncode == 143, r.stderr
    assert "Traceback" not in r.stderr and marker.exists()
    assert r.stderr.strip() == "perflab status: terminated (SIGTERM); what it started was stopped"
