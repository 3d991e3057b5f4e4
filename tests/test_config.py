from pathlib import Path

import pytest

from perflab.config import Settings, redact_url
from perflab.errors import ConfigError


def test_defaults_are_embedded() -> None:
    s = Settings.from_env({})
    assert s.embedded and s.redis_url is None and s.embedding_dim == 384
    assert s.home.name == ".perflab"


def test_environment_overrides_toml(tmp_path: Path) -> None:
    toml = tmp_path / "perflab.toml"
    toml.write_text('[perflab]\nembedding_dim = 128\nkey_prefix = "fromtoml"\n')
    s = Settings.from_env({"PERFLAB_KEY_PREFIX": "fromenv"}, toml_path=toml)
    assert s.embedding_dim == 128
    assert s.key_prefix == "fromenv"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PERFLAB_REDIS_URL": "http://x"}, "must start with redis://"),
        ({"PERFLAB_REDIS_URL": "redis://h:1/0"}, "set both"),
        ({"PERFLAB_EMBEDDING_DIM": "abc"}, "embedding_dim"),
        ({"PERFLAB_EMBEDDING_DIM": "0"}, "out of range"),
        ({"PERFLAB_DB_SCHEMA": "Bad-Name"}, "lower-case identifier"),
        ({"PERFLAB_KEY_PREFIX": "a{b}"}, "braces"),
    ],
)
def test_bad_settings_raise_config_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_unknown_toml_key_is_an_error(tmp_path: Path) -> None:
    toml = tmp_path / "perflab.toml"
    toml.write_text("[perflab]\nredis_ur = 'x'\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        Settings.from_env({}, toml_path=toml)


def test_malformed_toml(tmp_path: Path) -> None:
    toml = tmp_path / "perflab.toml"
    toml.write_text("[perflab\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Settings.from_env({}, toml_path=toml)


def test_redact_url_hides_password_only() -> None:
    assert redact_url("postgresql://bob:s3cret@db:5432/x") == "postgresql://bob:***@db:5432/x"
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"
    assert "s3cret" not in redact_url("redis://:s3cret@h:6379/0")


def test_to_env_round_trips_every_setting(tmp_path: Path) -> None:
    s = Settings.from_env({}).replace(
        redis_url="redis://127.0.0.1:7000/0",
        database_url="postgresql://u@127.0.0.1:7001/db",
        db_schema="other",
        redis_socket_timeout=0.125,
        media_root=tmp_path / "m",
        session_secret="s" * 32,
    )
    assert Settings.from_env(s.to_env()) == s
    unset = Settings.from_env({}).to_env()
    assert unset["PERFLAB_REDIS_URL"] == "" and Settings.from_env(unset).embedded  # unset stays unset
