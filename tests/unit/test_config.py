"""Settings table, config file, environment and overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from pacsmigrate.config import SETTINGS, load_config, render_config
from pacsmigrate.endpoints.base import parse_dimse_url
from pacsmigrate.errors import ConfigError


def test_rendered_file_loads_back_with_the_values(tmp_path: Path) -> None:
    text = render_config({"source.url": "dimse://A@h:1", "migrate.workers": 7, "logging.phi": True})
    (tmp_path / "pacsmigrate.toml").write_text(text)
    config = load_config(tmp_path, environ={})
    assert config["source.url"] == "dimse://A@h:1"
    assert config["migrate.workers"] == 7
    assert config["logging.phi"] is True
    assert config["local.port"] == 11112
    # every setting is documented in the file
    for setting in SETTINGS:
        assert setting.help.split("(")[0].strip()[:30] in text


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        ("[migrate]\nworker = 3\n", "did you mean 'migrate.workers'"),
        ("[sourse]\nurl = 'x'\n", "did you mean 'source.url'"),
        ("[migrate]\nworkers = 'many'\n", "must be int"),
        ("[migrate\n", "not valid TOML"),
    ],
    ids=["misspelled-key", "misspelled-section", "wrong-type", "bad-toml"],
)
def test_bad_config_is_refused_with_the_fix(tmp_path: Path, toml: str, needle: str) -> None:
    (tmp_path / "pacsmigrate.toml").write_text(toml)
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        load_config(tmp_path, environ={})


def test_precedence_file_env_override(tmp_path: Path) -> None:
    (tmp_path / "pacsmigrate.toml").write_text("[migrate]\nworkers = 2\nmax_attempts = 5\n")
    env = {"PACSMIGRATE_MIGRATE_WORKERS": "6", "PACSMIGRATE_LOGGING_PHI": "yes"}
    config = load_config(tmp_path, {"migrate.max_attempts": 9}, environ=env)
    assert config["migrate.workers"] == 6
    assert config["migrate.max_attempts"] == 9
    assert config["logging.phi"] is True


def test_relative_paths_resolve_against_the_project(tmp_path: Path) -> None:
    config = load_config(tmp_path, environ={})
    assert config.ledger_url == f"sqlite:///{tmp_path.resolve()}/ledger.sqlite"
    assert config.path("spool.dir") == tmp_path.resolve() / "spool"


def test_missing_file_when_required(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pacsmigrate init"):
        load_config(tmp_path, environ={}, require_file=True)


def test_dimse_url_parts() -> None:
    address = parse_dimse_url("dimse://OLDPACS@10.1.2.3:4242?calling=ME&retrieve=get", "DEFAULT")
    assert (address.called_ae, address.host, address.port) == ("OLDPACS", "10.1.2.3", 4242)
    assert (address.calling_ae, address.retrieve) == ("ME", "get")
    assert parse_dimse_url("dimse://X@h", "DEF").port == 104
    assert parse_dimse_url("dimse://X@h:1", "DEF").calling_ae == "DEF"


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("http://X@h:1", "scheme 'http'"),
        ("dimse://h:1", "called AE title and host"),
        ("dimse://X@h:1?retrieve=push", "retrieve must be"),
        ("dimse://X@h:1?callng=A", "unknown parameter 'callng'"),
        ("dimse://WAY_TOO_LONG_AE_TITLE@h:1", "not a valid AE title"),
        ("dimse://X@h:99999", "invalid port"),
    ],
    ids=["scheme", "no-ae", "retrieve", "param", "long-ae", "port"],
)
def test_bad_dimse_urls(url: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse_dimse_url(url, "PACSMIGRATE")
