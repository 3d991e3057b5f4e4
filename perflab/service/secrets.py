"""Server-side secrets (session-cookie and URL signing keys).

Set in the settings for staging (the same value on every host). Embedded, a random key is created once
under `home` with mode 0600, so every worker and every process on this machine signs alike.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from perflab.config import Settings


def load_secret(settings: Settings, name: str, configured: str | None) -> bytes:
    if configured:
        return configured.encode()
    path = Path(settings.home) / f"{name}.key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip().encode()
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    return path.read_text().strip().encode()
