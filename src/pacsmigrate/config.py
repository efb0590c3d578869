"""Settings: one declarative table drives the config file, the environment and the docs.

Like ``datasette/app.py: SETTINGS``: each :class:`Setting` has a dotted name
(``section.key`` in ``pacsmigrate.toml``), a type, a default and a help text.
``pacsmigrate init`` writes the commented file from this table; the loader
refuses unknown keys and suggests the closest valid one.

Precedence, lowest first: defaults, ``pacsmigrate.toml``, environment
(``PACSMIGRATE_SECTION_KEY``), command-line overrides.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pacsmigrate.errors import ConfigError

__all__ = ["CONFIG_FILE", "SETTINGS", "Config", "Setting", "load_config", "render_config"]

CONFIG_FILE = "pacsmigrate.toml"


@dataclass(frozen=True)
class Setting:
    name: str
    type: type
    default: Any
    help: str

    @property
    def env_var(self) -> str:
        return "PACSMIGRATE_" + self.name.upper().replace(".", "_")


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "source.url",
        str,
        "",
        "Source, never written to: dimse://OLDPACS@10.0.0.5:104?calling=PACSMIGRATE"
        " (add &retrieve=get for C-GET), dicomweb+https://host/dicom-web (QIDO-RS),"
        " or file:///path/to/folder (a tree or a DICOMDIR)",
    ),
    Setting(
        "target.url", str, "", "Target PACS, e.g. dimse://NEWPACS@10.0.0.6:104?calling=PACSMIGRATE"
    ),
    Setting(
        "local.ae_title",
        str,
        "PACSMIGRATE",
        "AE title of our embedded Storage SCP: the C-MOVE destination registered on the source",
    ),
    Setting(
        "local.host",
        str,
        "127.0.0.1",
        "Address our Storage SCP listens on (the source connects here); 0.0.0.0 for all",
    ),
    Setting("local.port", int, 11112, "Port our Storage SCP listens on"),
    Setting(
        "ledger.url",
        str,
        "sqlite:///ledger.sqlite",
        "Ledger database: a SQLite file (relative to the project folder) or"
        " postgresql+psycopg://user@host/db",
    ),
    Setting(
        "spool.dir",
        str,
        "spool",
        "Folder for received instances in flight (relative paths are under the project folder)",
    ),
    Setting(
        "inventory.find_cap",
        int,
        0,
        "Most rows the source returns for one query, if known (0 = unknown); answers of"
        " this size, or of round sizes such as 500 or 1000, are split until below it",
    ),
    Setting(
        "inventory.earliest_date",
        str,
        "19000101",
        "Date bisection of capped study queries starts here (YYYYMMDD); older and"
        " undated studies are still found by separate queries",
    ),
    Setting(
        "assess.retention_years",
        int,
        0,
        "Studies older than this many years are reported as past retention (0 = no rule)",
    ),
    Setting(
        "assess.throughput",
        float,
        0.0,
        "Instances per second to estimate the migration's duration with"
        " (0 = use the last migrate run's measured rate)",
    ),
    Setting(
        "migrate.workers", int, 4, "Studies in flight at once (one association each way per study)"
    ),
    Setting(
        "migrate.max_attempts",
        int,
        3,
        "Attempts per study before it is marked failed; transient errors are retried",
    ),
    Setting(
        "migrate.quiet_period",
        float,
        20.0,
        "Seconds to wait after the final C-MOVE response for sub-operations still in flight",
    ),
    Setting("network.connect_timeout", float, 10.0, "TCP connect timeout in seconds"),
    Setting("network.acse_timeout", float, 30.0, "Association negotiation timeout in seconds"),
    Setting("network.dimse_timeout", float, 300.0, "Timeout for one DIMSE response in seconds"),
    Setting("network.max_pdu", int, 0, "Maximum PDU size we receive (0 = no limit)"),
    Setting("report.dir", str, "reports", "Folder for reports (relative to the project folder)"),
    Setting("logging.level", str, "INFO", "Log level: DEBUG, INFO, WARNING, ERROR"),
    Setting(
        "logging.phi",
        bool,
        False,
        "Write patient names, IDs, birth dates and accession numbers to logs in clear"
        " (default: keyed hashes)",
    ),
)
_BY_NAME = {setting.name: setting for setting in SETTINGS}


@dataclass(frozen=True)
class Config:
    """Resolved settings plus the project folder they belong to."""

    project_dir: Path
    values: Mapping[str, Any]

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def path(self, name: str) -> Path:
        """A folder setting resolved against the project folder."""
        value = Path(str(self.values[name]))
        return value if value.is_absolute() else self.project_dir / value

    @property
    def ledger_url(self) -> str:
        url = str(self.values["ledger.url"])
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/"):
            return prefix + str(self.project_dir / url[len(prefix) :])
        return url


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _unknown_key_error(name: str, where: str) -> ConfigError:
    close = difflib.get_close_matches(name, list(_BY_NAME), n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return ConfigError(
        f"unknown setting '{name}' in {where}{hint} (valid settings: 'pacsmigrate init --help'"
        " or the commented pacsmigrate.toml)"
    )


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(setting: Setting, value: Any, where: str) -> Any:
    """Check (and for environment strings, convert) one value to the setting's type."""
    kind = setting.type
    if isinstance(value, bool) or (kind is bool and isinstance(value, str)):
        if kind is bool and (isinstance(value, bool) or value.lower() in _TRUE | _FALSE):
            return value if isinstance(value, bool) else value.lower() in _TRUE
    elif isinstance(value, kind) or (kind is float and isinstance(value, int)):
        return kind(value)
    elif isinstance(value, str) and kind in (int, float):
        with contextlib.suppress(ValueError):
            return kind(value)
    raise ConfigError(f"setting '{setting.name}' in {where} must be {kind.__name__}, got {value!r}")


def _read_file(path: Path) -> dict[str, Any]:
    try:
        return _flatten(tomllib.loads(path.read_text(encoding="utf-8")))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc


def load_config(
    project_dir: Path,
    overrides: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    require_file: bool = False,
) -> Config:
    """Resolve every setting for ``project_dir``; raise :class:`ConfigError` on bad input."""
    project_dir = project_dir.resolve()
    values = {setting.name: setting.default for setting in SETTINGS}
    path = project_dir / CONFIG_FILE
    if path.exists():
        for name, value in _read_file(path).items():
            if name not in _BY_NAME:
                raise _unknown_key_error(name, str(path))
            values[name] = _coerce(_BY_NAME[name], value, str(path))
    elif require_file:
        raise ConfigError(
            f"no {CONFIG_FILE} in {project_dir}: run 'pacsmigrate init {project_dir}"
            " --source URL --target URL' first, or pass --project DIR"
        )
    env = os.environ if environ is None else environ
    for setting in SETTINGS:
        if setting.env_var in env:
            values[setting.name] = _coerce(setting, env[setting.env_var], setting.env_var)
    for name, value in (overrides or {}).items():
        if value is None:
            continue
        if name not in _BY_NAME:
            raise _unknown_key_error(name, "the command line")
        values[name] = _coerce(_BY_NAME[name], value, "the command line")
    return Config(project_dir=project_dir, values=values)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_config(values: Mapping[str, Any]) -> str:
    """The commented ``pacsmigrate.toml`` for ``values`` (missing names take defaults)."""
    lines = [
        "# pacsmigrate project configuration.",
        "# Every setting can also come from the environment (PACSMIGRATE_SECTION_KEY)",
        "# or from command-line options, which win over this file.",
    ]
    section = ""
    for setting in SETTINGS:
        head, key = setting.name.split(".", 1)
        if head != section:
            section = head
            lines += ["", f"[{section}]"]
        value = values.get(setting.name, setting.default)
        lines.append(f"# {setting.help} (default: {_toml_value(setting.default)})")
        lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"
