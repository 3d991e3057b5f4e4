"""One settings object, built from the environment (and an optional perflab.toml), passed explicitly.

Nothing here connects to anything: building a Settings is pure.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from perflab.errors import ConfigError

_ENV_PREFIX = "PERFLAB_"


def project_root() -> Path:
    """The source checkout perflab runs from (notebooks/, reports/, data/ live there), else cwd."""
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file():
        return checkout
    return Path.cwd()


def _default_home() -> Path:
    """The `.perflab/` state folder (server data, media) under the project root."""
    return project_root() / ".perflab"


@dataclass(frozen=True)
class Settings:
    """Every knob of the lab. Field `foo_bar` is read from `PERFLAB_FOO_BAR` or `foo_bar` in perflab.toml."""

    # Servers. None means: use (and if needed start) the embedded servers under `home`.
    redis_url: str | None = None
    database_url: str | None = None
    home: Path = field(default_factory=_default_home)

    # PostgreSQL: everything lives in this schema, so tests and labs can share one server.
    db_schema: str = "perflab"
    db_pool_min: int = 1
    db_pool_max: int = 10
    embedding_dim: int = 384

    # Redis: every key starts with `{key_prefix}:`; socket timeouts bound a slow or dead server.
    # A Redis Cluster is named by `redis+cluster://[user:password@]host1:port1,host2:port2/` (or
    # rediss+cluster:// for TLS): the seed nodes, any of them enough to discover the rest. In embedded
    # mode, `redis_cluster` (PERFLAB_REDIS_CLUSTER=1) picks the lab's embedded 3+3-node cluster.
    redis_cluster: bool = False
    key_prefix: str = "pl"
    redis_socket_timeout: float = 0.25
    redis_connect_timeout: float = 0.25
    redis_max_connections: int = 64
    cache_ttl_s: int = 3600
    embedding_ttl_s: int = 7 * 24 * 3600
    search_ttl_s: int = 3600
    session_ttl_s: int = 24 * 3600
    session_absolute_s: int = 7 * 24 * 3600

    # Embedders: auto = MiniLM when the ml extra is installed, else hashing. The service batches
    # concurrent embeds, waiting up to embed_batch_wait_ms for company (0: no batching).
    embedder: str = "auto"
    embed_batch_wait_ms: float = 2.0
    openai_base_url: str = "https://api.openai.com/v1"
    openai_api_key: str | None = None
    openai_model: str = "text-embedding-3-small"

    # Media and CDN.
    media_root: Path | None = None
    cdn_base_url: str = "http://127.0.0.1:8081/media"  # the origin (and the edge in front) serve /media/{key}
    cdn_signing_key: str | None = None

    # The service: session cookies are HMAC-signed with this (None: a random key kept in `home`, shared
    # by every worker on this machine; staging must set it, the same on every host).
    session_secret: str | None = None
    service_host: str = "127.0.0.1"
    service_port: int = 8000

    @property
    def embedded(self) -> bool:
        """True when perflab runs (and owns) its own servers rather than staging's."""
        return self.redis_url is None and self.database_url is None

    @property
    def media_dir(self) -> Path:
        return self.media_root if self.media_root is not None else self.home / "media"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def to_env(self) -> dict[str, str]:
        """These settings as PERFLAB_* variables, for a child process (`perflab serve`, Locust) that
        must run on exactly them: `Settings.from_env(s.to_env()) == s`. An unset value is written
        empty, so the child does not inherit the parent's variable instead."""
        env: dict[str, str] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            env[_ENV_PREFIX + f.name.upper()] = "" if value is None else str(value)
        return env

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, toml_path: Path | str | None = None
    ) -> Settings:
        """Build settings: defaults, then perflab.toml, then PERFLAB_* variables (which win)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        path = Path(toml_path) if toml_path else Path(env.get("PERFLAB_CONFIG", "perflab.toml"))
        if path.is_file():
            try:
                raw = tomllib.loads(path.read_text())
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
            values.update(raw.get("perflab", raw))
        elif toml_path:
            raise ConfigError(f"config file {path} does not exist")
        for f in dataclasses.fields(cls):
            key = _ENV_PREFIX + f.name.upper()
            if key in env and env[key] != "":
                values[f.name] = env[key]
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
        return cls(**{k: _coerce(k, v) for k, v in values.items()})

    def __post_init__(self) -> None:
        for url, scheme, name in (
            (self.redis_url, _REDIS_SCHEMES, "PERFLAB_REDIS_URL"),
            (self.database_url, ("postgresql://", "postgres://"), "PERFLAB_DATABASE_URL"),
        ):
            if url is not None and not url.startswith(scheme):
                raise ConfigError(f"{name}={redact_url(url)} must start with {' or '.join(scheme)}")
        if self.redis_url is not None and is_cluster_url(self.redis_url):
            parse_cluster_url(self.redis_url)  # a typed error now, not at the first command
        if (self.redis_url is None) != (self.database_url is None):
            raise ConfigError(
                "set both PERFLAB_REDIS_URL and PERFLAB_DATABASE_URL (staging) or neither (embedded servers)"
            )
        if not self.db_schema.isidentifier() or not self.db_schema.islower():
            raise ConfigError(f"db_schema {self.db_schema!r} must be a lower-case identifier")
        if self.embedding_dim <= 0 or self.embedding_dim > 16000:
            raise ConfigError(f"embedding_dim {self.embedding_dim} is out of range 1..16000")
        if not self.key_prefix or any(c in self.key_prefix for c in "{}: \t\n"):
            raise ConfigError(
                f"key_prefix {self.key_prefix!r} must be non-empty without braces, colons or spaces"
            )


_HINTS = get_type_hints(Settings)
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")
_CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class ClusterUrl:
    """A parsed `redis+cluster://` URL: seed nodes and credentials (never printed: see `redact_url`)."""

    nodes: tuple[tuple[str, int], ...]
    ssl: bool
    username: str | None
    password: str | None


def is_cluster_url(url: str) -> bool:
    return url.startswith(_CLUSTER_SCHEMES)


def parse_cluster_url(url: str) -> ClusterUrl:
    """Split `redis+cluster://[user:pw@]h1:p1,h2:p2/` into seed nodes; ConfigError names what is wrong."""
    from urllib.parse import unquote, urlsplit

    shown = redact_url(url)
    if not is_cluster_url(url):
        raise ConfigError(f"{shown} is not a cluster URL: it must start with {' or '.join(_CLUSTER_SCHEMES)}")
    parts = urlsplit(url)
    netloc = parts.netloc
    userinfo, _, hosts = netloc.rpartition("@")
    username = password = None
    if userinfo:
        user, sep, pw = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if sep else None
    if parts.path not in ("", "/", "/0") or parts.query:
        raise ConfigError(f"{shown}: a cluster has only database 0 and takes no options (path or query)")
    nodes = []
    for item in hosts.split(","):
        host, sep, port = item.strip().rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{shown}: seed node {item!r} must be host:port")
        nodes.append((host, int(port)))
    return ClusterUrl(tuple(nodes), parts.scheme == "rediss+cluster", username, password)


def _coerce(name: str, value: Any) -> Any:
    hint = _HINTS[name]
    try:
        if hint in (int, "int"):
            return int(value)
        if hint in (float, "float"):
            return float(value)
        if hint in (bool, "bool"):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text not in _TRUE | _FALSE:
                raise ValueError("expected 1/0, true/false, yes/no or on/off")
            return text in _TRUE
        if hint == Path or hint == Path | None:
            return Path(value).expanduser()
        return str(value) if value is not None else None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name}={value!r}: {exc}") from exc


def redact_url(url: str) -> str:
    """Hide the password in a URL, keeping the user so the reader knows who connects."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
