"""The daemon's configuration: one pydantic-settings tree, checked at start.

Precedence: defaults < TOML file (``--config``) < ``STREAMD_…`` environment variables
(nested with ``__``, e.g. ``STREAMD_MQTT__PORT``) < command-line flags. Unknown keys and
invalid values raise :class:`~streamd.errors.ConfigError` naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import tomllib
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from streamd.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/streamd/streamd.toml")
DEFAULT_HTTP_PORT = 9841  # not in Prometheus' default port allocations list


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MqttSettings(Section):
    host: str = Field("127.0.0.1", description="broker host name or address")
    port: int = Field(1883, ge=1, le=65535, description="broker port")
    client_id: str = Field("streamd", min_length=1, description="MQTT client id (the session key)")
    protocol: Literal["3.1.1", "5"] = Field(
        "3.1.1",
        description="MQTT protocol version: 3.1.1 (faster to receive, docs/performance.md) "
        "or 5 (session expiry)",
    )
    topics: list[str] = Field(
        default_factory=lambda: ["sensors/#"], min_length=1, description="topic filters to read"
    )
    qos: int = Field(1, ge=0, le=2, description="subscription QoS (0, 1 or 2)")
    clean_start: bool = Field(False, description="start a new session instead of resuming")
    session_expiry_s: int = Field(
        3600,
        ge=0,
        description="MQTT 5: how long the broker keeps the session while streamd is away "
        "(3.1.1: the broker's own setting, e.g. persistent_client_expiration)",
    )
    keepalive_s: int = Field(30, ge=5, le=65535)
    reconnect_min_s: float = Field(1.0, gt=0, description="first reconnect delay")
    reconnect_max_s: float = Field(60.0, gt=0, description="longest reconnect delay (backoff cap)")
    username: str | None = Field(None, description="user name, if the broker asks for one")
    password: str | None = Field(None, description="password inline (prefer password_file)")
    password_file: Path | None = Field(
        None, description="file holding the password (systemd LoadCredential=)"
    )
    tls_ca_file: Path | None = Field(None, description="CA bundle: enables TLS")
    tls_cert_file: Path | None = Field(None, description="client certificate (PEM)")
    tls_key_file: Path | None = Field(None, description="client private key (PEM)")
    stream_id: str = Field(
        "topic",
        pattern=r"^(topic|segment:-?\d+|field:[A-Za-z0-9_.-]+)$",
        description="stream id: 'topic', 'segment:N' (topic level N, negative from the end) "
        "or 'field:NAME' (a payload field)",
    )
    max_payload_bytes: int = Field(4096, ge=16, description="larger messages are rejected")
    receiver: Literal["process", "thread"] = Field(
        "process",
        description="where paho runs: 'process' (a core of its own: the daemon keeps up with "
        "the broker) or 'thread' (one process: less memory, lower throughput; "
        "docs/performance.md)",
    )
    ack_after_scoring: bool = Field(
        True,
        description="acknowledge QoS 1/2 messages only once scored, so a crash loses none "
        "(the broker redelivers); the broker's max_inflight_messages then bounds throughput",
    )

    @model_validator(mode="after")
    def _check(self) -> MqttSettings:
        if self.password is not None and self.password_file is not None:
            raise ValueError("set password or password_file, not both")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be >= reconnect_min_s")
        return self

    def read_password(self) -> str | None:
        if self.password_file is None:
            return self.password
        try:
            return self.password_file.read_text().rstrip("\r\n")
        except OSError as e:
            raise ConfigError(
                "mqtt.password_file", f"cannot read {self.password_file}: {e.strerror}"
            ) from e


class ModelSettings(Section):
    path: Path = Field(Path("/usr/share/streamd/default.onnx"), description="ONNX model file")


class InferenceSettings(Section):
    mode: Literal["step", "window"] = Field(
        "window",
        description="'window': re-run the full window per sample (matches training); "
        "'step': one GRU step per sample with carried hidden state (cheaper, see docs)",
    )
    batch_max_size: int = Field(512, ge=1, le=65536, description="samples per inference batch")
    batch_max_wait_ms: float = Field(
        5.0, ge=0, le=10_000, description="longest wait to fill a batch"
    )
    queue_max: int = Field(100_000, ge=1, description="bounded queue between MQTT and the worker")
    max_rounds_per_batch: int = Field(
        8,
        ge=1,
        description="a stream's samples beyond this many in one batch wait for the next "
        "batches (each costs a model call), so one fast stream cannot slow every other",
    )
    stream_backlog_max: int = Field(
        1_000,
        ge=1,
        description="most samples one stream may have waiting that way; a stream that keeps "
        "sending faster has its newest dropped (result rate_limited)",
    )
    intra_op_threads: int = Field(1, ge=1, le=64, description="ONNX Runtime intra-op threads")


class ScoringSettings(Section):
    threshold: float = Field(0.5, gt=0, le=1, description="anomaly score that enters an anomaly")
    threshold_low: float = Field(0.3, gt=0, le=1, description="score below which it may leave")
    enter_after: int = Field(2, ge=1, description="consecutive samples above threshold to enter")
    leave_after: int = Field(
        12, ge=1, description="consecutive samples below threshold_low to leave"
    )
    max_anomaly_samples: int = Field(
        1000, ge=1, description="an anomaly this long is resolved and taken as the new normal"
    )
    smoothing_alpha: float = Field(0.3, gt=0, le=1, description="EWMA weight of the newest error")
    history_samples: int = Field(2000, ge=10, description="horizon of each stream's error history")
    prior_samples: int = Field(50, ge=1, description="weight of the card's calibration prior")
    history_warmup: int = Field(
        300, ge=0, description="scored samples a stream learns from before it gives verdicts"
    )
    profile: Literal["off", "day", "week"] = Field(
        "off",
        description="also score each sample against its stream's average for this time of "
        "day (or week): a second error history beside the forecast error's",
    )
    profile_bins: int = Field(48, ge=2, le=2016, description="phase bins of the profile's period")
    profile_periods: float = Field(
        3.0, gt=0, description="memory of the profile, in periods (its averages decay in time)"
    )
    scaling_horizon: int = Field(
        5000, ge=10, description="horizon of per-stream scaling (models with per-stream scaling)"
    )
    scaling_warmup: int = Field(
        288,
        ge=1,
        description="samples a stream's scaling must see before it is scored "
        "(models with per-stream scaling)",
    )

    @model_validator(mode="after")
    def _check(self) -> ScoringSettings:
        if self.threshold_low > self.threshold:
            raise ValueError("threshold_low must be <= threshold")
        return self


class AlertSettings(Section):
    topic_prefix: str = Field(
        "streamd/alerts", min_length=1, description="alerts go to PREFIX/<stream>"
    )
    qos: int = Field(1, ge=0, le=2, description="alert QoS (0, 1 or 2)")
    publish_scores: bool = Field(False, description="also publish every sample's score")
    score_topic_prefix: str = Field("streamd/scores", min_length=1)


class HttpSettings(Section):
    enabled: bool = True
    host: str = Field("127.0.0.1", description="bind address; loopback unless set on purpose")
    port: int = Field(DEFAULT_HTTP_PORT, ge=0, le=65535, description="0 picks a free port")
    stream_score_cap: int = Field(
        100, ge=0, description="at most this many per-stream score series (cardinality cap)"
    )


class StateSettings(Section):
    max_streams: int = Field(10_000, ge=1, description="least recently seen streams are evicted")
    max_gap_s: float = Field(
        3600.0, gt=0, description="a longer silence sends the stream back to warm-up"
    )
    reorder_window_ms: float = Field(
        0.0,
        ge=0,
        le=60_000,
        description="hold each sample this long, so a sample arriving up to this much after "
        "a newer one of its stream is still scored, in order; adds as much to alert latency "
        "and, at QoS 1, to acknowledgements (see docs/deploy.md); 0 turns it off",
    )
    snapshot_path: Path | None = Field(
        None,
        description="state snapshot file; unset means $STATE_DIRECTORY/state.npz under "
        "systemd (StateDirectory=), else no snapshots",
    )
    snapshot_interval_s: float = Field(
        60.0, gt=0, description="how often the snapshot is written (and always at shutdown)"
    )
    stop_timeout_s: float = Field(
        10.0, gt=0, description="longest SIGTERM drain before streamd exits anyway"
    )

    def resolved_snapshot_path(self, environ: Mapping[str, str]) -> Path | None:
        """The snapshot file: the setting, else systemd's state directory, else none."""
        if self.snapshot_path is not None:
            return self.snapshot_path
        state_dir = environ.get("STATE_DIRECTORY", "").split(":")[0]
        return Path(state_dir) / "state.npz" if state_dir else None


class LoggingSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"
    per_message_interval_s: float = Field(
        10.0, ge=0, description="at most one log line per kind of message problem this often"
    )


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
    http: HttpSettings = Field(default_factory=HttpSettings)
    state: StateSettings = Field(default_factory=StateSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)

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


def load_settings(config_path: Path | None, overrides: dict[str, Any] | None = None) -> Settings:
    """Build the settings tree; raises :class:`ConfigError` naming the first bad field.

    ``config_path`` None means the default path if it exists, else no file. ``overrides`` are
    flags as nested dicts (``{"mqtt": {"port": 1884}}``).
    """
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
