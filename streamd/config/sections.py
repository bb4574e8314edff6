"""The sections of the settings tree: one pydantic model each, every default written here.

Every field has a description (``streamd config`` prints them as the reference); unknown
keys are rejected; a model validator checks what one field cannot check alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from streamd.config.topics import check_topic_filter, check_topic_name
from streamd.errors import ConfigError

DEFAULT_HTTP_PORT = 9841  # not in Prometheus' default port allocations list
# The default model ships inside the package (``models/default.onnx`` in a checkout links to
# it): usable from a stream's first samples, whatever its units (per-stream scaling).
PACKAGED_MODEL = Path(__file__).resolve().parents[1] / "models" / "default.onnx"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MqttSettings(Section):
    host: str = Field("127.0.0.1", description="broker host name or address")
    port: int = Field(1883, ge=1, le=65535, description="broker port")
    client_id: str = Field("streamd", min_length=1, description="MQTT client id (the session key)")
    protocol: Literal["3.1.1", "5"] = Field(
        "5",
        description="MQTT protocol version: 5 (session expiry, the fast mqtt5 client) or "
        "3.1.1 (brokers that speak nothing else, such as NATS)",
    )
    client: Literal["auto", "mqtt5", "paho"] = Field(
        "auto",
        description="MQTT client of the receiver: 'mqtt5' (MQTT 5 only; needs Python 3.11+), "
        "'paho', or 'auto': mqtt5 for MQTT 5 where it is installed, else paho",
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

    availability: bool = Field(
        True,
        description="retained 'online' on status_topic at connect, 'offline' as the last will "
        "and at a clean stop (the convention of Home Assistant, zigbee2mqtt, Frigate)",
    )
    status_topic: str = Field(
        "streamd/status", description="availability topic (one per instance when several run)"
    )

    @field_validator("topics")
    @classmethod
    def _filters(cls, topics: list[str]) -> list[str]:
        return [check_topic_filter(t) for t in topics]

    @field_validator("status_topic")
    @classmethod
    def _status(cls, topic: str) -> str:
        return check_topic_name(topic)

    @model_validator(mode="after")
    def _check(self) -> MqttSettings:
        if self.password is not None and self.password_file is not None:
            raise ValueError("set password or password_file, not both")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be >= reconnect_min_s")
        if self.client == "mqtt5" and self.protocol != "5":
            raise ValueError("client mqtt5 speaks MQTT 5 only: set protocol 5 or client paho")
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
    path: Path | None = Field(
        None, description="ONNX model file; unset: the default model that ships with streamd"
    )

    def resolved_path(self) -> Path:
        """The model file to load: the setting, else the packaged default model."""
        return PACKAGED_MODEL if self.path is None else self.path


class InferenceSettings(Section):
    mode: Literal["step", "window"] = Field(
        "step",
        description="'step': one GRU step per sample with the hidden state carried per stream "
        "(a third of the CPU of 'window'); 'window': re-run the last window per sample from a "
        "zero state, as plain training sees it (see docs)",
    )
    batch_max_size: int = Field(512, ge=1, le=65536, description="samples per inference batch")
    batch_max_wait_ms: float = Field(
        1.0,
        ge=0,
        le=10_000,
        description="longest a batch waits to fill (each sample's own wait: it adds to latency)",
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
        description="most samples one stream may have waiting that way; beyond it a stream's "
        "newest QoS 0 samples are dropped (result rate_limited); QoS 1 and 2 ones wait",
    )
    intra_op_threads: int = Field(1, ge=1, le=64, description="ONNX Runtime intra-op threads")


class ScoringSettings(Section):
    threshold: float = Field(
        0.3, gt=0, le=1, description="anomaly score that enters an anomaly (0.3: 1 in 1,000)"
    )
    threshold_low: float = Field(0.3, gt=0, le=1, description="score below which it may leave")
    enter_after: int = Field(2, ge=1, description="consecutive samples above threshold to enter")
    leave_after: int = Field(
        300, ge=1, description="consecutive samples below threshold_low to leave"
    )
    max_anomaly_samples: int = Field(
        1000, ge=1, description="an anomaly this long is resolved and taken as the new normal"
    )
    smoothing_alpha: float = Field(0.3, gt=0, le=1, description="EWMA weight of the newest error")
    history_samples: int = Field(2000, ge=10, description="horizon of each stream's error history")
    prior_samples: int = Field(50, ge=1, description="weight of the card's calibration prior")
    history_warmup: int = Field(
        100, ge=0, description="scored samples a stream learns from before it gives verdicts"
    )
    profile: Literal["off", "day", "week"] = Field(
        "day",
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
        100,
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
    score_topic_prefix: str = Field(
        "streamd/scores", min_length=1, description="scores go to PREFIX/<stream>"
    )

    @field_validator("topic_prefix", "score_topic_prefix")
    @classmethod
    def _names(cls, prefix: str) -> str:
        return check_topic_name(prefix)


class HomeAssistantSettings(Section):
    enabled: bool = Field(
        False,
        description="MQTT discovery: each stream that holds per-stream series appears in Home "
        "Assistant as a binary_sensor (anomaly) and a sensor (score)",
    )
    discovery_prefix: str = Field("homeassistant", description="Home Assistant's discovery prefix")
    state_topic_prefix: str = Field(
        "streamd/state", description="retained JSON state of each such stream: PREFIX/<stream>"
    )
    state_interval_s: float = Field(
        30.0, gt=0, description="a state goes out when an anomaly starts or ends, else this often"
    )

    @field_validator("discovery_prefix", "state_topic_prefix")
    @classmethod
    def _names(cls, prefix: str) -> str:
        return check_topic_name(prefix)


class HttpSettings(Section):
    enabled: bool = True
    host: str = Field("127.0.0.1", description="bind address; loopback unless set on purpose")
    port: int = Field(DEFAULT_HTTP_PORT, ge=0, le=65535, description="0 picks a free port")
    stream_score_cap: int = Field(
        100, ge=0, description="at most this many per-stream score series (cardinality cap)"
    )

    @field_validator("host")
    @classmethod
    def _host(cls, host: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9.:_%-]+", host):
            raise ValueError(f"{host!r} is not a host name or an IP address")
        return host


class StateSettings(Section):
    max_streams: int = Field(10_000, ge=1, description="least recently seen streams are evicted")
    max_gap_s: float = Field(
        3600.0, gt=0, description="a longer silence sends the stream back to warm-up"
    )
    max_clock_skew_s: float = Field(
        300.0,
        ge=0,
        description="a sample stamped further ahead of its arrival is rejected "
        "(future_timestamp); a restored stream whose last sample lies further ahead is reset",
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
