"""Building the settings tree: defaults < TOML file < environment < flags, checked at start.

Precedence: defaults < TOML file (``--config``) < ``STREAMD_…`` environment variables
(nested with ``__``, e.g. ``STREAMD_MQTT__PORT``) < command-line flags. Unknown keys and
invalid values raise :class:`~streamd.errors.ConfigError` naming the field.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from streamd.config.cluster import ClusterSettings
from streamd.config.environment import check_environment

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, before it joined the standard library
    import tomli as tomllib

from streamd.config.sections import (
    AlertSettings,
    HomeAssistantSettings,
    HttpSettings,
    InferenceSettings,
    LoggingSettings,
    ModelSettings,
    MqttSettings,
    ScoringSettings,
    StateSettings,
)
from streamd.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/streamd/streamd.toml")
log = logging.getLogger(__name__)


class Settings(BaseSettings):
    """The whole tree; build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="STREAMD_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    inference: InferenceSettings = Field(default_factory=InferenceSettings)
    scoring: ScoringSettings = Field(default_factory=ScoringSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    homeassistant: HomeAssistantSettings = Field(default_factory=HomeAssistantSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    state: StateSettings = Field(default_factory=StateSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # First wins: flags (init) > environment > TOML file > defaults.
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


def _field_name(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "config"


def load_settings(
    config_path: Path | None,
    overrides: dict[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build the settings tree; raises :class:`ConfigError` naming the first bad field.

    ``config_path`` None means the default path if it exists, else no file. ``overrides`` are
    flags as nested dicts (``{"mqtt": {"port": 1884}}``). Unknown ``STREAMD_`` variables of
    ``environ`` (the process's) are logged as warnings.
    """
    sections: dict[str, type[BaseModel]] = {
        name: f.annotation for name, f in Settings.model_fields.items() if f.annotation
    }
    for warning in check_environment(os.environ if environ is None else environ, sections):
        log.warning("%s", warning)
    path = config_path
    if path is None and DEFAULT_CONFIG_PATH.is_file():
        path = DEFAULT_CONFIG_PATH
    if path is not None:
        if not path.is_file():
            raise ConfigError("--config", f"no such file {path}")
        try:
            tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ConfigError("--config", f"{path} is not valid TOML ({e})") from e
    bound = type(
        "BoundSettings",
        (Settings,),
        {"model_config": SettingsConfigDict(**{**Settings.model_config, "toml_file": path})},
    )
    try:
        validated = bound(**(overrides or {}))
    except SettingsError as e:  # a value the environment source cannot decode
        raise ConfigError("environment", str(e)) from e
    except ValidationError as e:
        err = e.errors()[0]
        msg = err["msg"].removeprefix("Value error, ")
        more = f" (and {len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
        raise ConfigError(_field_name(err["loc"]), msg + more) from e
    # Hand out a plain Settings (the bound subclass only existed to point at the TOML file,
    # and cannot be pickled to worker processes).
    return Settings.model_construct(**{k: getattr(validated, k) for k in Settings.model_fields})


def defaults_as_toml() -> str:
    """The default configuration as TOML with each field's description (``streamd config``)."""
    lines = ["# streamd configuration: every setting with its default.", ""]
    defaults = Settings.model_construct()
    for section_name, section_field in Settings.model_fields.items():
        section = getattr(defaults, section_name)
        lines.append(f"[{section_name}]")
        for name, f in type(section).model_fields.items():
            value = getattr(section, name)
            if f.description:
                lines.append(f"# {f.description}")
            lines.append(f"{'# ' if value is None else ''}{name} = {_toml_value(value)}")
        lines.append("")
        del section_field
    return "\n".join(lines)


def _toml_value(v: Any) -> str:
    if v is None:
        return '""'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
