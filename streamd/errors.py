"""The small exception hierarchy of streamd.

Each error carries the data a user needs (a field name, a path, a reason); the CLI turns
any :class:`StreamdError` into one clear line and a non-zero exit code instead of a traceback.
"""

from __future__ import annotations


class StreamdError(Exception):
    """Base of every error streamd raises on purpose; ``exit_code`` is what the CLI returns."""

    exit_code = 1


class ConfigError(StreamdError):
    """A setting is invalid; ``field`` is its dotted name, e.g. ``mqtt.port``."""

    exit_code = 2

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class DataError(StreamdError):
    """Input data (a CSV file, a column) cannot be used."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


class ModelError(StreamdError):
    """A model file is missing, malformed, or fails its self-test."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"model {path}: {message}")
        self.path = path
        self.message = message


class PayloadError(StreamdError):
    """An MQTT message was rejected; ``reason`` is one of :data:`streamd.core.payload.REASONS`."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
