"""Server-side secrets (session-cookie and URL signing keys).

On staging they must be set in the settings, the same value on every host: a key made up per host
would break cookies and signed URLs across hosts and restarts, so without them `perflab serve`
refuses to start (one line naming the variables). Embedded, a random key is created once under
`home` with mode 0600, so every worker and every process on this machine signs alike.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from perflab.cdn.signing import MIN_SECRET_BYTES
from perflab.config import Settings
from perflab.errors import ConfigError

# name of the key file (embedded) -> the Settings field that configures it
SECRETS = {"session": "session_secret", "cdn": "cdn_signing_key"}


def _variable(name: str) -> str:
    return "PERFLAB_" + SECRETS[name].upper()


def _problem(settings: Settings) -> str | None:
    values = {n: getattr(settings, f) for n, f in SECRETS.items()}
    missing = [_variable(n) for n, v in values.items() if not v]
    short = [_variable(n) for n, v in values.items() if v and len(v.encode()) < MIN_SECRET_BYTES]
    problems = []
    if missing:
        problems.append(f"set {' and '.join(missing)}")
    if short:
        problems.append(f"make {' and '.join(short)} at least {MIN_SECRET_BYTES} bytes")
    if not problems:
        return None
    return (
        f"staging needs the service's signing keys: {'; '.join(problems)}"
        " (the same value on every host, e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)"
    )


def check_secrets(settings: Settings) -> None:
    """Raise ConfigError, one line naming every variable to set, when staging lacks a key (or has
    one too short to sign with). Embedded servers need none: the keys are made under `home`."""
    problem = None if settings.embedded else _problem(settings)
    if problem:
        raise ConfigError(problem)


def load_secret(settings: Settings, name: str, configured: str | None) -> bytes:
    if configured:
        return configured.encode()
    if not settings.embedded:  # never a key of this host's own on staging
        raise ConfigError(_problem(settings) or f"set {_variable(name)}")
    path = Path(settings.home) / f"{name}.key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip().encode()
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    return path.read_text().strip().encode()
