"""The daemon's configuration: one pydantic-settings tree, checked at start.

:mod:`.sections` holds every section and default (:mod:`.cluster` the scale-out one),
:mod:`.topics` the MQTT naming rules the topic settings are checked by, :mod:`.load` the
sources and their precedence.
"""

from streamd.config.cluster import ClusterSettings
from streamd.config.load import DEFAULT_CONFIG_PATH, Settings, defaults_as_toml, load_settings
from streamd.config.sections import (
    DEFAULT_HTTP_PORT,
    PACKAGED_MODEL,
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

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_HTTP_PORT",
    "PACKAGED_MODEL",
    "AlertSettings",
    "ClusterSettings",
    "HomeAssistantSettings",
    "HttpSettings",
    "InferenceSettings",
    "LoggingSettings",
    "ModelSettings",
    "MqttSettings",
    "ScoringSettings",
    "Settings",
    "StateSettings",
    "defaults_as_toml",
    "load_settings",
]
