"""Settings: defaults, the environment, the YAML file, and refusals that name the setting."""

from __future__ import annotations

import pytest

from kpiguard.errors import ConfigError
from kpiguard.settings import load_settings


def test_defaults_are_the_documented_ones(monkeypatch):
    """With nothing configured: SQLite file, 127.0.0.1:8000, open API, caps as documented."""
    for key in list(__import__("os").environ):
        if key.startswith("KPIGUARD_"):
            monkeypatch.delenv(key)
    s = load_settings()
    assert s.database_url == "sqlite+aiosqlite:///./kpiguard.db"
    assert (s.host, s.port) == ("127.0.0.1", 8000)
    assert not s.auth_enabled and s.should_auto_migrate
    assert s.max_label_pairs == 1000


def test_environment_overrides_yaml(tmp_path, monkeypatch):
    """KPIGUARD_* variables win over the YAML file, which wins over defaults."""
    cfg = tmp_path / "kpiguard.yaml"
    cfg.write_text("port: 9001\nmax_label_pairs: 7\n")
    monkeypatch.setenv("KPIGUARD_PORT", "9100")
    s = load_settings(cfg)
    assert s.port == 9100 and s.max_label_pairs == 7


def test_token_lists_accept_commas_and_json(monkeypatch):
    """Token lists come as comma-separated text or a JSON list, and never show in a repr."""
    monkeypatch.setenv("KPIGUARD_INGEST_TOKENS", "tok-one, tok-two")
    monkeypatch.setenv("KPIGUARD_ADMIN_TOKENS", '["tok-three"]')
    s = load_settings()
    assert [t.get_secret_value() for t in s.ingest_tokens] == ["tok-one", "tok-two"]
    assert [t.get_secret_value() for t in s.admin_tokens] == ["tok-three"]
    assert "tok-" not in repr(s)


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        ({"port": 70000}, "KPIGUARD_PORT"),
        ({"database_url": "mysql://x"}, "KPIGUARD_DATABASE_URL"),
        ({"max_body_bytes": 10}, "KPIGUARD_MAX_BODY_BYTES"),
        ({"log_level": "LOUD"}, "KPIGUARD_LOG_LEVEL"),
        ({"host": "0.0.0.0"}, "KPIGUARD_HOST"),
        ({"governance_refresh_seconds": 0}, "KPIGUARD_GOVERNANCE_REFRESH_SECONDS"),
        ({"evaluation_read_parts": 0}, "KPIGUARD_EVALUATION_READ_PARTS"),
        ({"evaluation_read_parts": 17}, "KPIGUARD_EVALUATION_READ_PARTS"),
    ],
)
def test_invalid_setting_names_itself(overrides, setting):
    """An invalid value raises ConfigError naming the setting and the reason."""
    with pytest.raises(ConfigError) as info:
        load_settings(**overrides)
    assert info.value.setting == setting
    assert info.value.reason


def test_public_bind_allowed_with_tokens_or_explicit_opt_in():
    """A non-loopback bind needs a token or the explicit opt-in."""
    assert load_settings(host="0.0.0.0", admin_tokens=["t"]).host == "0.0.0.0"
    assert load_settings(host="0.0.0.0", allow_public_without_auth=True).host == "0.0.0.0"
    assert load_settings(host="::1").host == "::1"


def test_unknown_yaml_key_is_refused(tmp_path):
    """A misspelt key in the YAML file stops start-up naming it."""
    cfg = tmp_path / "k.yaml"
    cfg.write_text("prot: 1\n")
    with pytest.raises(ConfigError, match="KPIGUARD_PROT"):
        load_settings(cfg)


def test_missing_config_file_is_refused(tmp_path):
    """A --config path that does not exist is refused."""
    with pytest.raises(ConfigError, match="--config"):
        load_settings(tmp_path / "absent.yaml")


def test_every_setting_is_documented_in_the_readme():
    """Each field of Settings appears in the README's tables as its KPIGUARD_ variable."""
    import re
    from pathlib import Path

    from kpiguard.settings import Settings

    documented: set[str] = set()
    for line in (Path(__file__).resolve().parents[1] / "README.md").read_text().splitlines():
        if not line.startswith("| `KPIGUARD_"):
            continue
        first, *rest = re.findall(r"`(KPIGUARD_[A-Z0-9_]+|_[A-Z0-9_]+)`", line.split("|")[1])
        documented.add(first)
        for suffix in rest:  # "`KPIGUARD_X_LOW` / `_HIGH`": the suffix replaces as many trailing words
            documented.add(suffix if suffix.startswith("KPIGUARD_")
                           else "_".join(first.split("_")[: -suffix.count("_")]) + suffix)
    assert sorted(f"KPIGUARD_{name.upper()}" for name in Settings.model_fields) == sorted(
        n for n in documented if n.removeprefix("KPIGUARD_").lower() in Settings.model_fields)
