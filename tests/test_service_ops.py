"""Operating the service: its keys on staging, metrics summed over workers, readiness."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from perflab.config import Settings
from perflab.errors import ConfigError
from perflab.service.secrets import check_secrets, load_secret

PERFLAB = [sys.executable, "-m", "perflab.cli"]
STAGING = {"redis_url": "redis://127.0.0.1:1/0", "database_url": "postgresql://u:pw@127.0.0.1:1/x"}


def test_serve_on_staging_without_keys_refuses_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERFLAB_")}
    env.update(PERFLAB_REDIS_URL=STAGING["redis_url"], PERFLAB_DATABASE_URL=STAGING["database_url"])
    res = subprocess.run(
        [*PERFLAB, "serve"], env=env, capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert res.returncode == 2
    line = res.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert "PERFLAB_SESSION_SECRET" in line and "PERFLAB_CDN_SIGNING_KEY" in line
    assert not list(tmp_path.iterdir())  # nothing started, no key made up


def test_staging_keys_are_required_and_never_made_up(tmp_path: Path) -> None:
    staging = Settings(home=tmp_path, **STAGING)
    with pytest.raises(ConfigError, match="PERFLAB_SESSION_SECRET and PERFLAB_CDN_SIGNING_KEY"):
        check_secrets(staging)
    with pytest.raises(ConfigError, match="PERFLAB_CDN_SIGNING_KEY"):
        load_secret(staging, "cdn", None)
    short = staging.replace(session_secret="x" * 40, cdn_signing_key="short")
    with pytest.raises(ConfigError, match="make PERFLAB_CDN_SIGNING_KEY at least 16 bytes"):
        check_secrets(short)
    good = staging.replace(session_secret="s" * 32, cdn_signing_key="c" * 32)
    check_secrets(good)
    assert load_secret(good, "session", good.session_secret) == b"s" * 32
    assert not list(tmp_path.iterdir())


def test_embedded_keys_are_made_once_private_and_shared(tmp_path: Path) -> None:
    embedded = Settings(home=tmp_path)
    check_secrets(embedded)
    first = load_secret(embedded, "session", None)
    assert len(first) == 64 and load_secret(embedded, "session", None) == first
    assert load_secret(embedded, "cdn", None) != first
    assert stat.S_IMODE((tmp_path / "session.key").stat().st_mode) == 0o600
